"""One error family for the library. Messages name the file, field or value at fault, so the
CLIs can print them as one line (exit code 2) instead of a traceback.
"""

from __future__ import annotations


class CloudsegError(Exception):
    """Base of every error the library raises on purpose; `exit_code` is what a CLI exits with
    (2: bad input; an error caused by the environment or the run itself says otherwise).
    """

    exit_code: int = 2


class ConfigError(CloudsegError, ValueError):
    """A configuration value is invalid: the message names the field and the value."""


class LayoutError(CloudsegError):
    """A data tree is not a valid 38-Cloud/95-Cloud tree: lists every problem with its file."""

    def __init__(self, root: object, problems: list[str], cap: int = 20) -> None:
        self.root = root
        self.problems = list(problems)
        shown = self.problems[:cap]
        more = len(self.problems) - len(shown)
        lines = [f"{root}: {len(self.problems)} problem(s) in the data tree:"]
        lines += [f"  - {p}" for p in shown]
        if more > 0:
            lines.append(f"  ... and {more} more")
        super().__init__("\n".join(lines))


class CacheError(CloudsegError):
    """The packed patch cache is missing, stale or unusable."""


class EnvironmentFault(CloudsegError):
    """The machine, not the input, stopped the command (a full disk): exit code 4."""

    exit_code = 4


class DiskFullError(EnvironmentFault):
    """No space left on the device that a file was being written to; the message names it."""


class TrainingError(CloudsegError):
    """Base for failures during fit that a sweep classifies."""


class DivergedError(TrainingError):
    """The loss became non-finite."""

    def __init__(self, epoch: int, step: int, loss: float) -> None:
        self.epoch, self.step, self.loss = epoch, step, loss
        super().__init__(f"training diverged: loss={loss} at epoch {epoch}, step {step}")


class OutOfMemoryError(TrainingError):
    """The accelerator ran out of memory; GPU memory has been released before raising."""

    def __init__(self, batch_size: int, detail: str = "") -> None:
        self.batch_size = batch_size
        super().__init__(
            f"out of memory at batch size {batch_size}" + (f": {detail}" if detail else "")
        )


DEBUG_ENV = "CLOUDSWEEP_DEBUG"  # set to 1 (or pass --debug) to see tracebacks of bugs


def one_line(err: BaseException) -> str:
    """The message of `err` as one line, for a CLI's `error: ...` (a tree's problems joined)."""
    if isinstance(err, LayoutError) and "\n" in str(err):  # not a one-line NotADatasetError
        shown = err.problems[:20]
        more = len(err.problems) - len(shown)
        tail = f"; ... and {more} more" if more > 0 else ""
        return f"{err.root}: {len(err.problems)} problem(s) in the data tree: " + "; ".join(
            shown) + tail
    return " ".join(line.strip() for line in str(err).splitlines() if line.strip())


def bug_line(err: BaseException, debug_flag: str) -> str:
    """One line for an error no one anticipated: it is a bug, and how to see its traceback."""
    what = f"{type(err).__name__}: {one_line(err)}" if str(err) else type(err).__name__
    return (f"internal error (a bug, please report it): {what}; rerun with {debug_flag} or "
            f"{DEBUG_ENV}=1 for the traceback")


def debug_enabled() -> bool:
    """Whether the CLIs should show a traceback for an unexpected error (`CLOUDSWEEP_DEBUG`)."""
    import os

    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")
