"""sweep: hyperparameter sweeps for cloudseg on Optuna — study specs, workers, export, dashboard.

Public API (imported lazily, so `sweep --help` and `sweep status` never load torch):

    spec = load_spec("loss-search")                       # studies/loss-search.yaml
    run_study(spec, trials=40, storage="sqlite:///sweeps.db", data="/data/38-Cloud")
    best_trials("loss-search")                            # FrozenTrials, best first
    export_best("loss-search", "exports/loss-search")     # config.yaml, model.safetensors, ...
    serve_dashboard("sqlite:///sweeps.db")                # optuna-dashboard + artifacts
    work("loss-search", "postgresql+psycopg://...")       # join a study as one more worker
    sweep.record.load(frozen_trial)                       # TrialRecord: what a trial stored
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "StudySpec": "sweep.study.spec",
    "load_spec": "sweep.study.spec",
    "parse_spec": "sweep.study.spec",
    "available_studies": "sweep.study.spec",
    "run_study": "sweep.execution.runner",
    "RunSummary": "sweep.execution.runner",
    "work": "sweep.execution.workers",
    "best_trials": "sweep.api",
    "export_best": "sweep.api",
    "serve_dashboard": "sweep.api",
    "open_storage": "sweep.storage",
    "redact": "sweep.storage",
    "DEFAULT_STORAGE": "sweep.storage",
    "SAMPLERS": "sweep.study.samplers",
    "PRUNERS": "sweep.study.pruners",
    "HOOKS": "sweep.hooks",
    "TrialRecord": "sweep.record",
    "FailureKind": "sweep.record",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'sweep' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
