"""The sweep API behind the CLI: best trials, export and the dashboard, by study name + URL."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from sweep.record import failure_of
from sweep.storage import DEFAULT_STORAGE, artifact_dir_for, read_storage, redact

if TYPE_CHECKING:
    import optuna
    from optuna.artifacts import FileSystemArtifactStore

    from sweep.ranking import Comparison, ConfigRuns
    from sweep.study.spec import Confirm

def _study(name: str, storage: str) -> optuna.Study:
    from sweep.status import load

    return load(read_storage(storage), name)


def _store(
    study: optuna.Study, storage: str, artifact_dir: str | Path | None = None
) -> FileSystemArtifactStore:
    from sweep.artifacts import artifact_store

    folder = artifact_dir or study.user_attrs.get("artifact_dir") or artifact_dir_for(storage)
    return artifact_store(folder)


def best_trials(study: str, *, storage: str = DEFAULT_STORAGE, top: int | None = 5) -> list:
    """Completed, non-failed trials of `study`, best first (FrozenTrial objects)."""
    from sweep.export import ranked_trials

    return ranked_trials(_study(study, storage), top)


def ranked_configs(
    study: str, *, storage: str = DEFAULT_STORAGE
) -> tuple[list[ConfigRuns], Comparison | None]:
    """Configs of `study` best first (sweep.ranking: confirmed ones by the mean of their
    confirmation runs) and #1 against #2 (None unless both are confirmed), with the race's
    verdict once it is settled.
    """
    from sweep.ranking import rank_configs, study_comparison

    s = _study(study, storage)
    configs = rank_configs(s)
    comparison = study_comparison(s, configs)
    return configs, comparison


def confirm_study(
    study: str,
    *,
    storage: str = DEFAULT_STORAGE,
    top: int | None = None,
    repeats: int | None = None,
    data: str | Path | None = None,
) -> Confirm:
    """Race `study`'s top configs (the spec's `confirm`, else 3 configs × rounds of 3 runs; `top`
    and `repeats` override) here, alongside any other worker, until the race is settled;
    returns the settings it ran. The study's search is left where it is.
    """
    from optuna.trial import TrialState

    from cloudseg import ConfigError
    from sweep.execution.confirm import enqueue_confirmations, search_trials, top_trials
    from sweep.execution.workers import work
    from sweep.study.spec import Confirm, stored_confirm

    s = _study(study, storage)
    chosen = stored_confirm(s.user_attrs) or Confirm()
    confirm = chosen.model_copy(update={k: v for k, v in (("top", top), ("repeats", repeats))
                                        if v is not None})
    confirm = Confirm.model_validate(confirm.model_dump())  # the overrides checked
    if not top_trials(s, confirm.top):
        raise ConfigError(f"study {study!r} has no completed trial to confirm")
    writable = _study_rw(study, storage)
    enqueue_confirmations(writable, confirm.settings())
    states = (TrialState.COMPLETE, TrialState.PRUNED)
    finished = len(search_trials(s.get_trials(deepcopy=False, states=states)))
    work(study, storage, data=data, target=max(finished, 1), confirm=confirm)
    return confirm


def compare_configs(
    study: str, out: str | Path, *, storage: str = DEFAULT_STORAGE, top: int = 3,
    artifact_dir: str | Path | None = None,
) -> Path:
    """Draw the top configs' predictions on the study's hard-case panel to `out` (PNG) and
    attach the grid to the study.
    """
    from cloudseg import ConfigError
    from sweep.compare import attach, compare_grid

    out = Path(out)
    if out.suffix.lower() != ".png":
        raise ConfigError(f"--out {out}: the grid is a PNG; name the file *.png")
    configs, test = ranked_configs(study, storage=storage)
    if not configs:
        raise ConfigError(f"study {study!r} has no completed trial to compare")
    s = _study_rw(study, storage)
    store = _store(s, storage, artifact_dir)
    note = "" if test is None else test.line()
    compare_grid(s, store, configs[:top], out, note)
    attach(s, store, out)
    return out


def _study_rw(name: str, storage: str) -> optuna.Study:
    import optuna

    from sweep.storage import open_storage

    return optuna.load_study(study_name=name, storage=open_storage(storage))


def export_best(
    study: str,
    dest: str | Path,
    *,
    storage: str = DEFAULT_STORAGE,
    trial: int | None = None,
    artifact_dir: str | Path | None = None,
) -> Path:
    """Export the best trial (or trial number `trial`) of `study` as a bundle at `dest`."""
    from sweep.errors import ExportError
    from sweep.export import export_trial, ranked_trials

    s = _study(study, storage)
    ranked = ranked_trials(s)
    configs, test = ranked_configs(study, storage=storage)
    if trial is None and configs and configs[0].confirmed:  # the best confirmed config's best run
        top = configs[0]
        best = top.best_run(maximize=s.direction.name == "MAXIMIZE")
        ci = top.interval()
        confirmation = {
            "config_trial": top.origin.number, "rank": 1, "search_value": top.search_value,
            "runs": [t.number for t in top.runs], "values": top.values, "mean": top.mean,
            "sd": top.sd, "interval": None if ci is None else list(ci),
            "comparison": None if test is None else test.as_dict(),
        }
        return export_trial(s, best, Path(dest), _store(s, storage, artifact_dir), confirmation)
    if trial is not None:
        ranked = [t for t in ranked if t.number == trial]
        if not ranked:
            raise ExportError(f"study {study!r}: trial {trial} cannot be exported: "
                              f"{_why_not(s, trial)}")
    if not ranked:
        raise ExportError(f"study {study!r} has no completed trial to export")
    return export_trial(s, ranked[0], Path(dest), _store(s, storage, artifact_dir))


def _why_not(study: optuna.Study, number: int) -> str:
    """Why trial `number` has no bundle: it does not exist, or did not complete cleanly."""
    trials = study.get_trials(deepcopy=False)
    found = [t for t in trials if t.number == number]
    if not found:
        return f"no such trial (trials 0 to {len(trials) - 1})" if trials else "no trials yet"
    failure = failure_of(found[0])
    if failure is not None:
        return f"it ended with failure {failure.value!r}: no checkpoint"
    return f"it is {found[0].state.name}; only COMPLETE trials keep a checkpoint"


def serve_dashboard(
    storage: str = DEFAULT_STORAGE,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    study: str | None = None,
    artifact_dir: str | Path | None = None,
    echo: Callable[[str], None] = print,
) -> None:
    """Run optuna-dashboard on `storage` + its artifact directory until interrupted."""
    from optuna_dashboard import run_server

    from sweep.artifacts import artifact_store

    st = read_storage(storage)
    page = ""
    if study is not None:
        page = f"/dashboard/studies/{st.get_study_id_from_name(_study(study, storage).study_name)}"
    folder = artifact_dir or artifact_dir_for(storage)
    echo(f"optuna-dashboard on {redact(storage)} (artifacts: {folder}): http://{host}:{port}{page}")
    run_server(st, host=host, port=port, artifact_store=artifact_store(folder))
