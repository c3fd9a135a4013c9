"""The wandb side of the mirror: open a run with a stable id, write one trial or the study table.

Only this module talks to wandb, and only inside functions (never at import). Runs are opened
with `reinit="create_new"` and always finished, so several can be written one after another in
one process; `resume="allow"` makes a second upload of the same trial continue its run.
"""

from __future__ import annotations

import netrc
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlparse

from optuna.trial import FrozenTrial

from sweep.mirror.media import overlay_media
from sweep.mirror.payload import TrialPayload, study_run_id, trials_table_rows

if TYPE_CHECKING:
    import wandb
    from optuna.artifacts import FileSystemArtifactStore
    from wandb.sdk.wandb_run import Run

Mode = Literal["online", "offline", "off", "auto"]
RunMode = Literal["online", "offline"]  # what a run is opened with ("off" opens none)


def has_credentials() -> bool:
    """Whether wandb could log in without a prompt (env key or netrc entry). Never reads out
    or returns the key itself.
    """
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or ""
    path = os.environ.get("NETRC") or str(Path.home() / ".netrc")
    try:
        return netrc.netrc(path).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def resolve_mode(mode: Mode) -> Literal["online", "offline", "off"]:
    """`auto` and `online` fall back to offline without credentials, or when the environment
    says WANDB_MODE=offline/disabled (a CI or an air-gapped node).
    """
    if mode not in ("online", "offline", "off", "auto"):
        raise ValueError(f"W&B mode must be online, offline, off or auto; got {mode!r}")
    env = os.environ.get("WANDB_MODE", "").lower()
    if mode == "off" or env == "disabled":
        return "off"
    if mode == "offline" or env in ("offline", "dryrun"):
        return "offline"
    return "online" if has_credentials() else "offline"


def _settings() -> wandb.Settings:
    import wandb

    # No console capture (the sweep's own output), no system metrics, git or code scans: the
    # run holds exactly what the trial stored, and init stays fast.
    return wandb.Settings(
        console="off",
        silent=True,
        disable_git=True,
        disable_code=True,
        save_code=False,
        x_disable_stats=True,
        x_disable_machine_info=True,
        x_disable_meta=True,
        x_save_requirements=False,
        init_timeout=60,
    )


def _init(
    run_id: str,
    mode: RunMode,
    *,
    project: str,
    entity: str | None,
    wandb_dir: Path | None,
    **kwargs: Any,
) -> Run:
    import wandb

    if wandb_dir is not None:
        Path(wandb_dir).mkdir(parents=True, exist_ok=True)
    return wandb.init(
        id=run_id,
        project=project,
        entity=entity,
        mode=mode,
        resume="allow",
        reinit="create_new",
        dir=str(wandb_dir) if wandb_dir else None,
        settings=_settings(),
        **kwargs,
    )


def _run_path(run: Run, project: str) -> str:
    entity = getattr(run, "entity", "") or ""
    return f"{entity}/{project}/{run.id}" if entity else f"{project}/{run.id}"


def with_media(rows: list[tuple[int, dict]], media: dict[str, Any], step: int | None,
               first: int) -> list[tuple[int, dict]]:
    """`rows` with `media` added to the row of `step` (clamped to the steps still open)."""
    if not rows:
        return [(max(first, step or 0), media)]
    steps = [s for s, _ in rows]
    target = step if step in steps else next((s for s in steps if step is None or s >= step),
                                              steps[-1])
    return [(s, {**values, **media}) if s == target else (s, values) for s, values in rows]


def upload_trial(
    payload: TrialPayload,
    mode: RunMode,
    *,
    project: str,
    entity: str | None = None,
    wandb_dir: Path | None = None,
    artifact_store: FileSystemArtifactStore | None = None,
) -> tuple[str, str | None]:
    """Write one trial's run; return (run path, local run folder)."""
    run = _init(
        payload.run_id,
        mode,
        project=project,
        entity=entity,
        wandb_dir=wandb_dir,
        name=payload.name,
        group=payload.group,
        job_type="trial",
        config=payload.config,
        tags=payload.tags,
    )
    exit_code = 1
    try:
        # A resumed online run already holds steps < run.step: W&B would drop them anyway.
        first = run.step if run.resumed else 0
        rows = [(step, values) for step, values in payload.history if step >= first]
        # The overlay shows the best epoch's model: it is logged at that epoch's step (or the
        # first step still open on a resumed run).
        if media := overlay_media(payload.artifacts, artifact_store):
            rows = with_media(rows, media, payload.media_step, first)
        for step, values in rows:
            run.log(values, step=step, commit=True)  # flushed now: the summary below wins
        run.summary.update(payload.summary)
        present = set(run.summary.keys())  # wandb's Summary has no `in` of its own
        for key in payload.summary_drop:
            if key in present:
                del run.summary[key]
        exit_code = payload.exit_code
        return _run_path(run, project), getattr(run.settings, "sync_dir", None)
    finally:
        run.finish(exit_code=exit_code)


def upload_study_summary(
    study_name: str,
    salt: str,
    trials: list[FrozenTrial],
    mode: RunMode,
    *,
    project: str,
    entity: str | None = None,
    wandb_dir: Path | None = None,
) -> tuple[str, str | None]:
    """One `job_type="study"` run with a table of every finished trial (params + best metrics)."""
    import wandb

    columns, rows = trials_table_rows(trials, salt, study_name)
    run = _init(
        study_run_id(study_name, salt),
        mode,
        project=project,
        entity=entity,
        wandb_dir=wandb_dir,
        name=f"{study_name} (study)",
        group=study_name,
        job_type="study",
        tags=["study"],
    )
    exit_code = 1
    try:
        run.log({"trials": wandb.Table(columns=columns, data=rows, allow_mixed_types=True)})
        counts = {s: sum(r[1] == s for r in rows) for s in ("complete", "pruned", "failed")}
        run.summary.update({"trials": len(rows), **{f"trials_{k}": v for k, v in counts.items()}})
        exit_code = 0
        return _run_path(run, project), getattr(run.settings, "sync_dir", None)
    finally:
        run.finish(exit_code=exit_code)
