"""`sweep finalize`: queue the final fits of a study's top configs, run them (with any other
worker), then score each on the test split and write the report and the bundles.

Output folder (default `exports/<study>.final/`): `model-rank-K/` (the bundle of the rank-K
config's final fit, its metrics.json and card with the test figures), `predictions/rank-K/`
(`cloudseg predict`'s scene GeoTIFFs of the test split), `report.md` + its PNGs,
`report.html` (self-contained) and `final.json` (every figure of the report). The report is
also attached to the final-fit study (an Optuna artifact the dashboard lists), and `sweep
mirror --study <study>.final` mirrors the final fits to W&B like any study's trials.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cloudseg import ConfigError
from sweep.errors import WorkerError
from sweep.final.queue import (
    enqueue_final_fits,
    failed_fits,
    final_study_name,
    finished_fits,
    open_final_study,
)
from sweep.final.scoring import SPLIT_DIR, FitScore, rank_correlation, score_fit, test_metrics


class FinalFitFailed(WorkerError):
    """A final fit ended without a model: rerun `sweep finalize` to try it again."""

    exit_code = 3


@dataclass(frozen=True)
class FinalizeResult:
    """What `finalize` wrote."""

    study: str
    final_study: str
    queued: int
    scores: tuple[FitScore, ...]
    correlation: dict[str, Any] | None
    out: Path
    report_md: Path
    report_html: Path


def _failure_line(trials: list[Any]) -> str:
    from sweep.record import load

    last = load(trials[-1], ("failure", "failure_message"))
    kind = last.failure.value if last.failure is not None else "failed"
    return f"{kind}: {last.failure_message or 'no message'}"


def attach_report(final: Any, store: Any, page: Path, summary: dict[str, Any]) -> None:
    """Record the answer with the final-fit study: report.html as a study artifact (the
    dashboard lists it) and the headline figures as the study attr `test_summary`.
    """
    from optuna.artifacts import upload_artifact

    upload_artifact(artifact_store=store, file_path=str(page), study_or_trial=final)
    final.set_user_attr("test_summary", [
        {"search_trial": f["final_fit"]["search_trial"], "final_trial": f["final_fit"][
            "study_trial"], "test_jaccard_per_scene_mean": f["official"][
            "per_scene_mean_percent"]["Jaccard"], "test_jaccard_pooled": f["official"][
            "pooled_percent"]["Jaccard"]} for f in summary["fits"]])


def finalize(study: str, *, storage: str, top: int = 1, epochs: int | None = None,
             data: str | Path | None = None, out: str | Path | None = None,
             overrides: Sequence[str] = (), device: str = "auto") -> FinalizeResult:
    """Final fits of the `top` best configs of `study` (sweep.api.ranked_configs order), run
    to completion here and on any worker, then scored on the test split; see the module doc.
    """
    from sweep.api import _store, _study_rw, ranked_configs
    from sweep.final.report import write_report
    from sweep.final.run import run_final_fits

    configs, _ = ranked_configs(study, storage=storage)
    if not configs:
        raise ConfigError(f"study {study!r} has no completed trial to finalize")
    parent = _study_rw(study, storage)
    root = Path(data or parent.user_attrs.get("data_root") or ".")
    if not (root / SPLIT_DIR).is_dir():
        raise ConfigError(f"{root}: no {SPLIT_DIR}/ folder: the final fits are scored on the "
                          "test split; point --data at a 38-Cloud root that has it")
    final = open_final_study(parent, storage, epochs, overrides)
    chosen = configs[:top]
    queued = enqueue_final_fits(final, chosen)
    run_final_fits(final.study_name, storage, data=root)
    final = _study_rw(final.study_name, storage)
    done, failed = finished_fits(final), failed_fits(final)
    missing = [c.origin.number for c in chosen if c.origin.number not in done]
    if missing:
        why = "; ".join(f"trial {n}: {_failure_line(failed[n])}" if n in failed else
                        f"trial {n}: not run" for n in missing)
        raise FinalFitFailed(f"study {final.study_name!r}: no final model for {why}; rerun "
                             "`sweep finalize` to try again")
    dest = Path(out or Path("exports") / final_study_name(study)).expanduser().absolute()
    dest.mkdir(parents=True, exist_ok=True)
    store = _store(final, storage)
    fits = sorted((done[c.origin.number] for c in chosen),
                  key=lambda t: int(t.user_attrs.get("final_rank", 0)))
    scores = [score_fit(final, t, store, dest, root, device=device) for t in fits]
    correlation = rank_correlation(scores)
    fit_epochs = int(final.user_attrs["spec"]["budget"]["epochs"])
    md, page = write_report(dest, study, scores, correlation, root / SPLIT_DIR, fit_epochs)
    summary = {"study": study, "final_study": final.study_name, "epochs": fit_epochs,
               "fits": [test_metrics(s) for s in scores], "rank_correlation": correlation}
    (dest / "final.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    attach_report(final, store, page, summary)
    return FinalizeResult(study, final.study_name, queued, tuple(scores), correlation, dest,
                          md, page)
