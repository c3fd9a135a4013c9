"""The sweep API behind the CLI: best trials, export and the dashboard, by study name + URL."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sweep.storage import DEFAULT_STORAGE, artifact_dir_for, read_storage, redact


def _study(name: str, storage: str):
    from sweep.status import load

    return load(read_storage(storage), name)


def _store(study, storage: str, artifact_dir: str | Path | None = None):
    from sweep.artifacts import artifact_store

    folder = artifact_dir or study.user_attrs.get("artifact_dir") or artifact_dir_for(storage)
    return artifact_store(folder)


def best_trials(study: str, *, storage: str = DEFAULT_STORAGE, top: int | None = 5) -> list:
    """Completed, non-failed trials of `study`, best first (FrozenTrial objects)."""
    from sweep.export import ranked_trials

    return ranked_trials(_study(study, storage), top)


def export_best(
    study: str,
    dest: str | Path,
    *,
    storage: str = DEFAULT_STORAGE,
    trial: int | None = None,
    artifact_dir: str | Path | None = None,
) -> Path:
    """Export the best trial (or trial number `trial`) of `study` as a bundle at `dest`."""
    from cloudseg.errors import ConfigError
    from sweep.export import export_trial, ranked_trials

    s = _study(study, storage)
    ranked = ranked_trials(s)
    if trial is not None:
        ranked = [t for t in ranked if t.number == trial]
        if not ranked:
            raise ConfigError(f"study {study!r}: trial {trial} cannot be exported: "
                              f"{_why_not(s, trial)}")
    if not ranked:
        raise ConfigError(f"study {study!r} has no completed trial to export")
    return export_trial(s, ranked[0], Path(dest), _store(s, storage, artifact_dir))


def _why_not(study, number: int) -> str:
    """Why trial `number` has no bundle: it does not exist, or did not complete cleanly."""
    trials = study.get_trials(deepcopy=False)
    found = [t for t in trials if t.number == number]
    if not found:
        return f"no such trial (trials 0 to {len(trials) - 1})" if trials else "no trials yet"
    t = found[0]
    if t.user_attrs.get("failure"):
        return f"it ended with failure {t.user_attrs['failure']!r}: no checkpoint"
    return f"it is {t.state.name}; only COMPLETE trials keep a checkpoint"


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
        page = f"/dashboard/studies/{_study(study, storage)._study_id}"
    folder = artifact_dir or artifact_dir_for(storage)
    echo(f"optuna-dashboard on {redact(storage)} (artifacts: {folder}): http://{host}:{port}{page}")
    run_server(st, host=host, port=port, artifact_store=artifact_store(folder))
