"""The worker: join a study in its storage and run trials until the study-wide target is met.

Everything a worker needs is in the storage (the study's user attrs: spec, target, data root,
artifact dir, measured pos_weight), so the same `work()` serves `sweep run` (in-process for one
worker, subprocesses for `--workers K`) and a worker joining from another machine. Optuna is the
scheduler: `study.optimize` with heartbeats (stale trials are retried with the same params),
wrapped by `target.run_to_target` for an exact study-wide target of COMPLETE + PRUNED trials
across all workers.

Run as a process: `python -m sweep.execution.workers --study NAME --storage URL [--data DIR] ...`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cloudseg import CloudsegError, ConfigError, one_line
from sweep.execution.share import TrialShare, environment_for
from sweep.hooks import decode_hooks, encode_hooks

STORAGE_ENV = "SWEEP_STORAGE"  # also what `sweep worker` reads

if TYPE_CHECKING:
    from collections.abc import Callable

    import optuna
    from optuna.trial import FrozenTrial, TrialState

    from sweep.study.spec import Confirm, StopSearch, StudySpec

FINISHED_STATES = ("COMPLETE", "PRUNED")


def finished_states() -> tuple[TrialState, ...]:
    """The states that count toward a study's target (complete and pruned)."""
    from optuna.trial import TrialState

    return tuple(TrialState[s] for s in FINISHED_STATES)


SPEC_WAIT_S = 60.0  # how long a joining worker waits for another worker to finish creating


def load_study_attrs(study_name: str, storage_url: str) -> dict[str, Any]:
    """The study's user attrs once its creator has written them all (`spec` comes last)."""
    import optuna

    from sweep.storage import open_storage, redact, stored_attrs
    from sweep.study.spec import available_studies

    storage = open_storage(storage_url)
    deadline = time.monotonic() + SPEC_WAIT_S
    while True:
        attrs = stored_attrs(storage, study_name)
        if attrs is None:
            names = ", ".join(optuna.get_all_study_names(storage)) or "none"
            specs = ", ".join(available_studies()) or "none"
            raise ConfigError(
                f"no study {study_name!r} in {redact(storage_url)} (studies there: {names}) and "
                f"no spec of that name to create it from (specs: {specs}; or give a spec path)"
            )
        if "spec" in attrs:
            return attrs
        if time.monotonic() > deadline:
            raise ConfigError(
                f"study {study_name!r} in {redact(storage_url)} has no spec: its creation did "
                f"not finish; rerun with --study <spec name or path> --trials N to complete it"
            )
        time.sleep(0.5)


def study_done(study: optuna.Study, target: int, confirm: Confirm | None = None,
               stop_rule: StopSearch | None = None) -> bool:
    """The search has `target` finished trials (or was stopped as settled) and, with `confirm`,
    the race of its top configs is settled with no run left to do.
    """
    from sweep.execution.confirm import confirmations_done, search_trials
    from sweep.execution.settle import stored_stop

    finished = search_trials(study.get_trials(deepcopy=False, states=finished_states()))
    if len(finished) < target and (stop_rule is None or stored_stop(study) is None):
        return False
    return confirm is None or confirmations_done(study, confirm.settings())


def work(
    study_name: str,
    storage_url: str,
    *,
    data: str | Path | None = None,
    target: int | None = None,
    timeout: float | None = None,
    hooks: Mapping[str, Any] | None = None,
    worker_index: int = 0,
    artifact_dir: str | Path | None = None,
    confirm: Confirm | None = None,
) -> None:
    """Run trials of `study_name` until `target` finished trials exist (or `timeout` seconds),
    then race its top configs: `confirm`, else the spec's `confirm`.
    """
    import optuna

    from sweep.artifacts import artifact_store
    from sweep.execution.objective import Objective
    from sweep.execution.target import run_to_target
    from sweep.execution.trial_log import LoggedObjective
    from sweep.execution.trial_process import TrialFailure, close_spare, warm_up
    from sweep.hooks import build_hooks, close_hooks
    from sweep.storage import open_storage, redact
    from sweep.study.spec import StudySpec

    attrs = load_study_attrs(study_name, storage_url)
    spec = StudySpec.from_stored(attrs["spec"], f"study {study_name}")  # checked at creation
    target = int(target or attrs["target"])
    confirm = confirm or spec.confirm
    if study_done(optuna.load_study(study_name=study_name, storage=open_storage(storage_url)),
                  target, confirm, spec.stop_search):
        return  # nothing to do: exit 0 (compose does not restart it)
    warm_up(spec.model_names)
    ex = spec.execution
    storage = open_storage(
        storage_url,
        heartbeat_interval=ex.heartbeat_interval,
        grace_period=ex.grace_period,
        max_retry=ex.max_retry,
    )
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # failures show in status and the view
    study = optuna.load_study(
        study_name=study_name,
        storage=storage,
        sampler=spec.build_sampler(),  # seeded per trial number: workers never draw alike
        pruner=spec.build_pruner(),
    )
    share = TrialShare.of_worker(ex.trial_threads)
    if (note := share.note(spec.fixed.train.num_workers)) is not None:
        print(note, file=sys.stderr)  # once per worker, not a warning per trial or batch
    objective = Objective(
        spec,
        Path(data or attrs["data_root"]),
        artifact_store(artifact_dir or attrs["artifact_dir"]),
        {"measured_pos_weight": float(attrs.get("measured_pos_weight") or 1.0)},
        storage,
        share,
    )
    # Exact study-wide target across workers and machines, and storage-outage tolerance
    # (sweep.execution.target); Optuna's optimize loop with heartbeats runs underneath.
    post_trial = [*build_hooks(study, hooks, storage_url), _ranking_note(spec)]
    try:
        run_to_target(
            study, LoggedObjective.for_stdout(objective), target,
            poll_s=min(5.0, float(ex.heartbeat_interval)), shown_storage=redact(storage_url),
            timeout=timeout, catch=(TrialFailure,),
            callbacks=post_trial, log=lambda line: print(line, file=sys.stderr),
            confirm=confirm, stop_rule=spec.stop_search, halt_after=ex.max_consecutive_failures,
            artifact_dir=str(artifact_dir or attrs["artifact_dir"]),
        )
    finally:
        close_hooks(post_trial)
        close_spare()  # the trial process started ahead for a next trial


def _ranking_note(spec: StudySpec) -> Callable[[optuna.Study, FrozenTrial], None]:
    """After each confirmation run: the study's dashboard note shows the confirmed ranking."""
    from sweep.execution.confirm import confirms
    from sweep.records import record_ranking

    def callback(study: optuna.Study, trial: FrozenTrial) -> None:
        if confirms(trial) is not None:
            record_ranking(study, spec)

    return callback


def visible_gpus() -> list[str]:
    """GPU ids to hand out, without importing torch: CUDA_VISIBLE_DEVICES, else nvidia-smi."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g for g in env.split(",") if g.strip() and g.strip() != "-1"]
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [str(i) for i, line in enumerate(out.stdout.splitlines()) if line.startswith("GPU")]


def gpu_for(index: int, gpus: list[str], per_gpu: int = 1) -> str | None:
    """The GPU of local worker `index`: `per_gpu` consecutive workers share one, round robin;
    None when there is at most one GPU (every worker sees it).
    """
    if len(gpus) <= 1:
        return None
    return gpus[(index // per_gpu) % len(gpus)]


def default_worker_count(per_gpu: int = 1) -> int:
    """`sweep run` without --workers: `per_gpu` workers on every visible GPU, else one."""
    return max(1, len(visible_gpus()) * per_gpu)


def launch(
    count: int,
    study_name: str,
    storage_url: str,
    *,
    data: Path,
    timeout: float | None,
    hooks: Mapping[str, Any] | None,
    per_gpu: int = 1,
) -> list[subprocess.Popen]:
    """Start `count` worker processes; `per_gpu` of them share each GPU (`gpu_for`)."""
    gpus = visible_gpus()
    procs = []
    for i in range(count):
        # The storage URL travels in the environment, not argv: `ps` shows argv (passwords).
        cmd = [
            sys.executable, "-m", "sweep.execution.workers", "--study", study_name,
            "--data", str(data), "--worker-index", str(i),
        ]
        if timeout is not None:
            cmd += ["--timeout", str(timeout)]
        if hooks:
            cmd += ["--hooks", encode_hooks(hooks)]
        env = {**os.environ, STORAGE_ENV: storage_url}
        if (gpu := gpu_for(i, gpus, per_gpu)) is not None:
            env["CUDA_VISIBLE_DEVICES"] = gpu
        env.update(environment_for(count, cpu_only=not gpus, env=env))  # its share of cores
        procs.append(subprocess.Popen(cmd, env=env))
    return procs


def main(argv: list[str] | None = None) -> int:
    """One worker process of `sweep run` (see the module docstring); returns its exit code."""
    p = argparse.ArgumentParser(prog="python -m sweep.execution.workers",
                                description=__doc__.split("\n")[0])
    p.add_argument("--study", required=True)
    p.add_argument("--storage", default=os.environ.get(STORAGE_ENV),
                   help=f"Optuna RDB URL (default: ${STORAGE_ENV})")
    p.add_argument("--data")
    p.add_argument("--target", type=int)
    p.add_argument("--timeout", type=float)
    p.add_argument("--hooks", type=decode_hooks)
    p.add_argument("--worker-index", type=int, default=0)
    p.add_argument("--artifact-dir")
    a = p.parse_args(argv)
    if not a.storage:
        p.error(f"--storage or ${STORAGE_ENV} is required")
    try:
        work(
            a.study, a.storage, data=a.data, target=a.target, timeout=a.timeout, hooks=a.hooks,
            worker_index=a.worker_index, artifact_dir=a.artifact_dir,
        )
    except CloudsegError as err:
        print(f"error: {one_line(err)}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
