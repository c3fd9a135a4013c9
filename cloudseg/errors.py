"""One error family for the library. Messages name the file, field or value at fault, so the
CLIs can print them as one line (exit code 2) instead of a traceback."""

from __future__ import annotations


class CloudsegError(Exception):
    """Base of every error the library raises on purpose."""


class ConfigError(CloudsegError, ValueError):
    """A configuration value is invalid: the message names the field and the value."""


class LayoutError(CloudsegError):
    """A data tree is not a valid 38-Cloud/95-Cloud tree: lists every problem with its file."""

    def __init__(self, root: object, problems: list[str], cap: int = 20):
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


class TrainingError(CloudsegError):
    """Base for failures during fit that a sweep classifies."""


class DivergedError(TrainingError):
    """The loss became non-finite."""

    def __init__(self, epoch: int, step: int, loss: float):
        self.epoch, self.step, self.loss = epoch, step, loss
        super().__init__(f"training diverged: loss={loss} at epoch {epoch}, step {step}")


class OutOfMemoryError(TrainingError):
    """The accelerator ran out of memory; GPU memory has been released before raising."""

    def __init__(self, batch_size: int, detail: str = ""):
        self.batch_size = batch_size
        super().__init__(
            f"out of memory at batch size {batch_size}" + (f": {detail}" if detail else "")
        )
