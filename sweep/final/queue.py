"""The final-fit study: the search study's top configs, trained again on the full training set
for a full budget, as enqueued trials of a sibling study `<study>.final` in the same storage.

Why a sibling study and not more trials in the search study: nothing that ranks, counts or
plots the search (its target, `sweep best`, the confirmation ranking, the dashboard's
importances) can ever mix a final fit with a search trial, and a final fit uses a different
budget (epochs, training fraction, no pruning), which a study stores once, in its spec. The
sibling study records its origin (`final_of_study`) and each fit the search trial whose
config it trains (user attribute `final_of`), its rank there (`final_rank`) and the search's
value for it (`search_value`: `ConfigRuns.mean`, its confirmed score when confirmed).

No choice looks at the test set: the final fit keeps the study's validation scenes out of
training (`data.train_fraction` 1.0 is every *training* scene's patch; the split is the
study's), picks its epoch on them and the bundle's threshold by the study's rule on them.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from cloudseg import ConfigError

if TYPE_CHECKING:
    import optuna

    from sweep.ranking import ConfigRuns

FINAL_SUFFIX = ".final"
FINAL_OF = "final_of"  # trial attr: the search trial whose config this final fit trains
HOLDING = ("COMPLETE", "RUNNING", "WAITING")  # states in which a fit holds its origin
MAX_ATTEMPTS = 3  # a config whose final fit failed this many times is not queued again


def final_study_name(study: str) -> str:
    """The final-fit study of search study `study`."""
    return f"{study}{FINAL_SUFFIX}"


def final_of(trial: Any) -> int | None:
    """The search trial a final fit trains again, or None (not a final fit)."""
    value = trial.user_attrs.get(FINAL_OF)
    return int(value) if isinstance(value, int) else None


def final_spec(spec: dict[str, Any], epochs: int) -> dict[str, Any]:
    """The search spec as a final fit runs it: the full training set (its validation scenes
    still held out), `epochs` epochs, never pruned, no confirmation runs, no trial timeout.
    """
    out = copy.deepcopy(spec)
    out["name"] = final_study_name(spec["name"])
    out["budget"] = {**out.get("budget", {}), "epochs": epochs, "train_fraction": 1.0,
                     "trial_timeout": None}
    out["pruner"] = {"name": "none"}
    out["confirm"] = None
    return out


def default_epochs(spec: dict[str, Any]) -> int:
    """Twice the search budget's epochs (a full fit trains longer than a search trial)."""
    return 2 * int(spec.get("budget", {}).get("epochs", 10))


def open_final_study(parent: optuna.Study, storage_url: str, epochs: int | None,
                     overrides: Sequence[str] = ()) -> optuna.Study:
    """The final-fit study of `parent`, created on first use with the parent's data root,
    artifact folder and measured pos_weight; `epochs` must agree with an existing one's.
    """
    import optuna

    from sweep.storage import open_storage
    from sweep.study.overrides import apply_overrides
    from sweep.study.spec import StudySpec

    stored = parent.user_attrs.get("spec")
    if stored is None:
        raise ConfigError(f"study {parent.study_name!r} has no stored spec: cannot finalize it")
    name = final_study_name(parent.study_name)
    study = optuna.create_study(study_name=name, storage=open_storage(storage_url),
                                direction=parent.direction, load_if_exists=True)
    have = study.user_attrs.get("spec")
    if have is not None:
        if epochs is not None and have["budget"]["epochs"] != epochs:
            raise ConfigError(f"study {name!r} already trains final fits for "
                              f"{have['budget']['epochs']} epochs, not --epochs {epochs}; "
                              "drop --epochs to resume it, or delete that study")
        return study
    spec = final_spec(stored, epochs or default_epochs(stored))
    if overrides:
        spec = apply_overrides(spec, overrides)
    StudySpec.from_stored(spec, f"study {name}")  # a bad --set fails here, before any write
    for key in ("data_root", "artifact_dir", "measured_pos_weight"):
        if key in parent.user_attrs:
            study.set_user_attr(key, parent.user_attrs[key])
    study.set_user_attr("final_of_study", parent.study_name)
    study.set_user_attr("target", 0)
    study.set_user_attr("spec", spec)  # last: its presence means "ready"
    return study


def _by_origin(study: optuna.Study, states: Sequence[str]) -> dict[int, list[Any]]:
    from optuna.trial import TrialState

    out: dict[int, list[Any]] = {}
    for t in study.get_trials(deepcopy=False, states=tuple(TrialState[s] for s in states)):
        if (origin := final_of(t)) is not None:
            out.setdefault(origin, []).append(t)
    return {k: sorted(v, key=lambda t: t.number) for k, v in out.items()}


def enqueue_final_fits(study: optuna.Study, configs: Sequence[ConfigRuns]) -> int:
    """Queue a final fit of each config (best first) that has none complete, running or
    waiting, and has failed fewer than MAX_ATTEMPTS times; returns how many were queued.
    An interrupted fit (Ctrl-C, a killed worker) is thereby queued again on the next call.
    """
    held, failed = _by_origin(study, HOLDING), _by_origin(study, ("FAIL",))
    queued = 0
    for rank, config in enumerate(configs, 1):
        origin = config.origin.number
        if origin in held or len(failed.get(origin, [])) >= MAX_ATTEMPTS:
            continue
        study.enqueue_trial(config.origin.params, user_attrs={
            FINAL_OF: origin, "final_rank": rank, "search_value": config.mean,
            "search_runs": len(config.runs)})  # confirmation runs behind it (0: none)
        queued += 1
    return queued


def holder(trial: Any) -> int | None:
    """The lowest-numbered trial holding this fit's origin when it is not `trial` (two
    workers queued the same fit at once), else None.
    """
    origin = final_of(trial)
    if origin is None:
        return None
    holders = _by_origin(trial.study, HOLDING).get(origin, [])
    first = holders[0].number if holders else trial.number
    return first if first < trial.number else None


def finished_fits(study: optuna.Study) -> dict[int, Any]:
    """Origin → its complete final fit (the lowest-numbered), for the fits that finished."""
    from sweep.record import failure_of

    return {o: ts[0] for o, ts in _by_origin(study, ("COMPLETE",)).items()
            if failure_of(ts[0]) is None}


def failed_fits(study: optuna.Study) -> dict[int, list[Any]]:
    """Origin → its failed final fits."""
    return _by_origin(study, ("FAIL",))


def pending(study: optuna.Study) -> tuple[int, int]:
    """(waiting, running) trials of the final-fit study."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False, states=(TrialState.WAITING, TrialState.RUNNING))
    return (sum(t.state == TrialState.WAITING for t in trials),
            sum(t.state == TrialState.RUNNING for t in trials))
