"""The sweep layer's errors. `SweepError` is a `cloudseg.ConfigError`, so every command maps it,
like every library error, to one line and exit 2."""

from __future__ import annotations

from cloudseg.errors import ConfigError


class SweepError(ConfigError):
    """Something the sweep layer refuses or cannot do; the message says what and where."""


class StorageError(SweepError):
    """The storage URL cannot be opened or used (message has the password redacted)."""
