"""The sweep layer's errors: one family, so the CLI maps every one of them to one line and an
exit code in one place (sweep.cli.app.errors: 2 bad input, 3 a halted run, 4 the environment).
Messages name the file, field or value at fault.

    SweepError    the base: something the sweep layer refuses or cannot do
    SpecError     a study spec (or a value it leads to) is invalid; also a cloudseg ConfigError,
                  since a spec is configuration
    StorageError  the storage URL cannot be opened or used, or stayed unreachable
    WorkerError   a worker process, or the workers of a run, ended without finishing
    ExportError   a trial cannot be exported, or the export cannot be written
    EnvironmentFault  the machine stopped the command, not the input (exit code 4)
    DiskFullError     no space left where a file was being written (names the path)
"""

from __future__ import annotations

from cloudseg import CloudsegError, ConfigError
from cloudseg import DiskFullError as _CloudsegDiskFull


class SweepError(CloudsegError):
    """Something the sweep layer refuses or cannot do; the message says what and where."""


class SpecError(SweepError, ConfigError):
    """A study spec is invalid: `studies/x.yaml: pruner.reduction_factor: ...`."""


class StorageError(SweepError):
    """The storage URL cannot be opened or used (message has the password redacted)."""


class WorkerError(SweepError):
    """Workers ended without finishing the study (exit codes, a lost storage)."""


class ExportError(SweepError):
    """A trial cannot be exported, or its bundle cannot be written where asked."""


class EnvironmentFault(SweepError):
    """The machine, not the input, stopped the command (a full disk): exit code 4."""

    exit_code = 4


class DiskFullError(EnvironmentFault, _CloudsegDiskFull):
    """No space left on the device of the file named in the message."""


class StorageUnreachable(StorageError, EnvironmentFault):
    """The database server gave no answer within the connect timeout: exit code 4."""
