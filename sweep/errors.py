"""The sweep layer's errors: one family, so the CLI maps every one of them to one line and exit
code 2 in one place (sweep.cli.errors). Messages name the file, field or value at fault.

    SweepError    the base: something the sweep layer refuses or cannot do
    SpecError     a study spec (or a value it leads to) is invalid; also a cloudseg ConfigError,
                  since a spec is configuration
    StorageError  the storage URL cannot be opened or used, or stayed unreachable
    WorkerError   a worker process, or the workers of a run, ended without finishing
    ExportError   a trial cannot be exported, or the export cannot be written
"""

from __future__ import annotations

from cloudseg import CloudsegError, ConfigError


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
