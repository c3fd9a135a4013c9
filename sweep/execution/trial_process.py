"""Run one training in a fresh child process, so no GPU memory, CUDA context, allocator cache or
global state can leak from one trial into the next, and a hung or crashing trial cannot take the
worker (and its heartbeat) down with it.

Children are forked from a `forkserver` that has torch and cloudseg imported already: a trial
starts in milliseconds, not the seconds a `spawn` re-import costs, and the server is a clean,
single-threaded process (the worker's heartbeat thread and database connections are never
forked). A worker starts the next trial's process as soon as a trial has its result, so that
fork overlaps the storage writes and the sampler. The worker keeps every storage write; the
child only trains and talks over a pipe:

    worker → (config, out_dir, environment, artifacts)
    child → ("epoch", n, record)      worker → True (stop: pruned) / False (go on)
    child → ("result", payload), then ("files", images)
          | ("error", failure_class, message, traceback)

The worker stores the result while the child draws the images.
"""

from __future__ import annotations

import atexit
import contextlib
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
import traceback
import types
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from multiprocessing.connection import Connection
    from multiprocessing.context import ForkServerContext
    from multiprocessing.process import BaseProcess

    from cloudseg import EpochRecord, FitResult, RunConfig

from sweep.record import FailureKind

# Everything a trial imports, loaded once in the forkserver rather than in every trial: a
# trial imports no module itself (a test holds it to that). torch._dynamo: every torch
# optimizer imports it, a second. numpy.ma, numpy.ctypeslib and cp437: numpy and safetensors
# import them lazily (np.unique, saving a bundle, reading moments.npz), 20 ms a trial. Not
# matplotlib: only the learning curve uses it, drawn by the worker. Not smp: its encoders
# import timm and torchvision (two seconds more) and only smp models need them (`warm_up` adds
# what the study's models import; cloudseg's losses load without them).
PRELOAD = [
    "torch", "torch._dynamo", "numpy.random", "numpy.ma", "numpy.ctypeslib", "encodings.cp437",
    "safetensors.torch", "PIL.PngImagePlugin", "PIL.ImageDraw",
    "cloudseg.training.build", "cloudseg.training.loop", "cloudseg.models", "cloudseg.nets",
    "cloudseg.losses", "cloudseg.smp_loss_classes", "cloudseg.training.checkpoint", "cloudseg.data",
    "cloudseg.data.dataset", "cloudseg.data.device_batches", "cloudseg.data.panel",
    "cloudseg.data.stats", "cloudseg.scenes.histograms", "cloudseg.scenes.inference",
    "cloudseg.normalisation", "sweep.artifacts", "sweep.execution._warm",
]
_CONTEXT: ForkServerContext | None = None


class TrialFailure(Exception):
    """A classified trial failure: kind oom, diverged, data, timeout, killed or bug (a
    `FailureKind`; its value, a plain string, is what crosses the pipe).

    "killed": the trial process was ended by a signal it did not send itself (the kernel's
    out-of-memory killer sends SIGKILL); sweep.execution.target retries such a trial once.
    """

    def __init__(self, kind: FailureKind | str, message: str,
                 traceback: str | None = None) -> None:
        self.kind, self.message, self.traceback = FailureKind(kind), message, traceback
        super().__init__(f"{self.kind.value}: {message}")


def classify(err: BaseException) -> FailureKind:
    """Failure class of an exception raised by a training run."""
    from cloudseg import CacheError, DivergedError, LayoutError, OutOfMemoryError

    if isinstance(err, OutOfMemoryError) or type(err).__name__ == "OutOfMemoryError":
        return FailureKind.OOM  # cloudseg's, or torch.cuda.OutOfMemoryError raised outside fit
    if isinstance(err, DivergedError):
        return FailureKind.DIVERGED
    if isinstance(err, LayoutError | CacheError):
        return FailureKind.DATA
    return FailureKind.BUG


def preload_for(models: Iterable[str]) -> list[str]:
    """What the forkserver imports for trials that build `models`: PRELOAD, then the packages
    those models need (smp for smp's architectures).
    """
    from cloudseg import MODELS, model_imports

    extra = {m for name in models if name in MODELS for m in model_imports(name)}
    return [*PRELOAD, *sorted(extra)]


def _context(preload: list[str] | None = None) -> ForkServerContext:
    """The forkserver context; `preload` (default PRELOAD) applies when it is made here: the
    server is one per process, and the first call decides.
    """
    global _CONTEXT
    if _CONTEXT is None:
        _CONTEXT = mp.get_context("forkserver")
        _CONTEXT.set_forkserver_preload(PRELOAD if preload is None else preload)
    return _CONTEXT


def warm_up(models: Iterable[str] = ()) -> None:
    """Start the forkserver now: it imports torch (seconds) while this process goes on with
    the study's bookkeeping, instead of when the first trial starts. `models`: the names a
    trial may build; the packages they import are preloaded too.
    """
    from multiprocessing import forkserver

    _context(preload_for(models))
    with _without_main():
        forkserver.ensure_running()


@contextlib.contextmanager
def _without_main() -> Iterator[None]:
    """Start children without re-running the parent's `__main__` in them: multiprocessing
    would re-import the main script in every trial (the `sweep` console script, pytest, or a
    user's unguarded script, which would recurse). The child's target lives in this module.
    """
    main = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")  # no __file__, no __spec__
    try:
        yield
    finally:
        if main is not None:
            sys.modules["__main__"] = main


def _watch_parent(parent_pid: int) -> None:
    """Exit when the worker is gone (kill -9): the trial is retried elsewhere anyway."""
    while True:
        time.sleep(0.5)
        try:
            os.kill(parent_pid, 0)
        except ProcessLookupError:
            os._exit(3)


class _PipeCallback:
    """The cloudseg callback in the child: send each epoch, stop when the worker says so."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def on_epoch_end(self, epoch: int, record: EpochRecord) -> bool:
        """Send the epoch's record; the worker's answer says whether to stop."""
        self.conn.send(("epoch", epoch, record.as_dict()))
        return bool(self.conn.recv())


def _child(conn: Connection, parent_pid: int) -> None:
    """A trial process: started ahead of its trial (see `run_isolated`'s `spare`), it waits
    for its job, (config, out_dir, environment, artifacts), and leaves quietly if none comes.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the worker's to handle
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # so is a scheduler's SIGTERM (preemption)
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()
    try:
        config, out_dir, env, artifacts = conn.recv()
    except (EOFError, OSError):  # a spare the worker no longer needs
        return
    os.environ.clear()
    os.environ.update(env)  # the forkserver's environment may predate the worker's
    try:  # (torch threads and loader workers: the config's train.threads and num_workers)
        files = run_trial(config, Path(out_dir), [_PipeCallback(conn)], artifacts,
                          lambda result: conn.send(("result", _payload(result))))
        conn.send(("files", files))
    except BaseException as err:  # noqa: BLE001 - everything is reported, nothing escapes
        detail = "".join(traceback.format_exception_only(type(err), err)).strip()
        full = "".join(traceback.format_exception(err))
        with contextlib.suppress(BrokenPipeError, EOFError, OSError):
            conn.send(("error", classify(err).value, detail.splitlines()[-1][:500], full))
    finally:
        conn.close()


def run_trial(config: RunConfig, out_dir: Path, callbacks: list, artifacts: bool,
              on_result: Callable[[FitResult], None]) -> dict[str, str]:
    """A trial process's work: open the data once (training and the overlay share it: its
    fingerprint and index grow with the data set), train, hand the result on (the worker
    stores it while the images are drawn), then draw them; returns the image files.
    """
    from cloudseg import open_run_cache, run_training

    cache = open_run_cache(config)
    result = run_training(config, callbacks=callbacks, out_dir=out_dir, cache=cache)
    on_result(result)
    if not artifacts:
        return {}
    from sweep.artifacts import render_trial_images

    return render_trial_images(result, out_dir, cache)


def _payload(result: FitResult) -> dict[str, Any]:
    return {
        "config": result.config.to_dict(),
        "history": [r.as_dict() for r in result.history],
        "best_epoch": result.best_epoch,
        "metrics": result.best_record.metrics(),  # + scene_iou when measured
        "fit_seconds": result.fit_seconds,
        "fit_started_at": result.extras.get("fit_started_at"),
        "peak_memory_mb": result.peak_memory_mb,
        "images_per_s": result.images_per_s,
        "stopped_early": result.stopped_early,
        "best_checkpoint": str(result.best_checkpoint) if result.best_checkpoint else None,
        "data": {k: v for k, v in result.extras.items()
                 if k in ("n_train", "n_val", "pos_weight", "scenes", "data_on_device",
                          "compiled")},
    }


def _died(proc: BaseProcess) -> TrialFailure:
    """The failure of a child that ended without a word: killed by a signal, or crashed."""
    proc.join(5)
    code = proc.exitcode
    if TERMINATING.is_set():  # killed by the worker; the exit code may be unknown (255)
        return TrialFailure(FailureKind.KILLED, "trial process killed: the worker got SIGTERM "
                            "(scancel, preemption or time limit)")
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (what the kernel's out-of-memory killer sends)" if -code == signal.SIGKILL else ""
        return TrialFailure(FailureKind.KILLED, f"trial process killed by {name} ({-code}){hint}")
    return TrialFailure(FailureKind.BUG, f"trial process died (exit code {code})")


_RUNNING: list[BaseProcess] = []  # the process of the trial running now (at most one)
TERMINATING = threading.Event()  # the worker got SIGTERM (sweep.execution.preemption)
_SPARE: list[tuple[Any, Any]] = []  # (process, pipe) started ahead for the next trial
_LAUNCHING: list[threading.Thread] = []  # spares being started (a fork takes ~20 ms)
_CLOSE_AT_EXIT = False  # close_spare is registered with atexit


def _launch() -> tuple[Any, Any]:
    """A trial process from the forkserver, waiting for its job on the pipe returned."""
    global _CLOSE_AT_EXIT
    if not _CLOSE_AT_EXIT:  # registered after multiprocessing's own exit handler, so it runs
        atexit.register(close_spare)  # first: a spare left waiting would hang that handler's
        _CLOSE_AT_EXIT = True  # join of its (non-daemonic) children
    ctx = _context()
    here, there = ctx.Pipe()
    # Not daemonic: a daemonic process may not start children, and a trial's DataLoader
    # workers are its children. Its lifetime is ours to manage instead: it exits when the
    # worker dies (`_watch_parent`), a spare sees EOF at `close_spare` (also at exit, before
    # multiprocessing joins its children), and `run_isolated` kills a trial it gives up on.
    proc = ctx.Process(target=_child, args=(there, os.getpid()), daemon=False)
    with _without_main():
        proc.start()
    there.close()
    return proc, here


def _launch_spare() -> None:
    """Start the next trial's process from a thread: the worker does not wait for the fork
    while it stores this trial and samples the next.
    """
    def launch() -> None:
        with contextlib.suppress(OSError, EOFError):  # then the next trial starts one itself
            _SPARE.append(_launch())

    thread = threading.Thread(target=launch, name="spare-trial-process", daemon=True)
    thread.start()
    _LAUNCHING.append(thread)


def _spares_started() -> None:
    while _LAUNCHING:
        _LAUNCHING.pop().join()


def _start(job: tuple) -> tuple[Any, Any]:
    """Hand `job` to the spare when there is a live one, else to a new process."""
    _spares_started()
    while _SPARE:
        proc, here = _SPARE.pop()
        try:
            here.send(job)
            return proc, here
        except OSError:  # it died while it waited (killed from outside): not this trial's
            here.close()
    proc, here = _launch()
    here.send(job)
    return proc, here


def kill_running() -> bool:
    """SIGKILL the running trial's process (the worker is stopping); False when none runs."""
    for proc in _RUNNING:
        if proc.pid is not None and proc.is_alive():
            os.kill(proc.pid, signal.SIGKILL)  # `run_isolated` sees EOF: failure "killed"
            return True
    return False


def close_spare() -> None:
    """End the process started ahead for a next trial that will not come."""
    _spares_started()
    while _SPARE:
        proc, here = _SPARE.pop()
        here.close()  # it sees EOF and returns
        proc.join(5)
        if proc.is_alive():
            proc.kill()
            proc.join()


def run_isolated(
    config: RunConfig,
    out_dir: Path,
    on_epoch: Callable[[int, dict[str, Any]], bool],
    *,
    timeout: float | None = None,
    artifacts: bool = True,
    spare: bool = False,
    on_result: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Train `config` in a child process (it travels as the typed, validated model);
    `on_epoch(epoch, record)` returns True to stop it; `on_result(payload)` gets the result
    as soon as training ends, while the child still draws the trial's images.

    With `spare`, the process for the next trial is started as soon as this one has its
    result, so the next trial does not wait for a fork (a worker runs trial after trial; it
    calls `close_spare` when done). Returns the result payload with its image `files`; raises
    TrialFailure (classified) or KeyboardInterrupt (after killing the child).
    """
    proc, here = _start((config, str(out_dir), dict(os.environ), artifacts))
    _RUNNING[:] = [proc]
    deadline = None if timeout is None else time.monotonic() + timeout
    payload: dict[str, Any] = {}
    try:
        while True:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not here.poll(wait):
                raise TrialFailure(FailureKind.TIMEOUT,
                                   f"trial exceeded trial_timeout={timeout:g}s")
            try:
                message = here.recv()
            except (EOFError, ConnectionResetError):  # a socketpair killed mid-message resets
                raise _died(proc) from None
            if message[0] == "epoch":
                stop = bool(on_epoch(message[1], message[2]))
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    here.send(stop)  # a child killed meanwhile: the next recv says how
            elif message[0] == "result":
                payload = message[1]
                if spare:  # forks while the worker stores this trial and samples the next
                    _launch_spare()
                if on_result is not None:
                    on_result(payload)
            elif message[0] == "files":
                # It exits right after sending; not waiting for that (tearing down a torch
                # process takes ~0.1 s) lets the next trial start. multiprocessing reaps it at
                # the next start or at exit.
                proc = None
                return {**payload, "files": message[1]}
            else:
                raise TrialFailure(*message[1:])
    finally:
        _RUNNING.clear()
        here.close()
        if proc is not None and proc.is_alive():  # timeout, Ctrl-C, an error in on_epoch
            proc.kill()
            proc.join()
