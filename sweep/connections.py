"""How a worker talks to a database server (PostgreSQL), so that many workers share one.

- No idle pool (SQLAlchemy NullPool): a worker holds a connection only while it talks to the
  server, none while a trial trains, at most two at once (trial bookkeeping and heartbeat).
- A connection attempt gives up after a connect timeout (`SWEEP_CONNECT_TIMEOUT`, default 10 s):
  a host that accepts and never answers must not hang a command. TCP keepalives and
  tcp_user_timeout notice a peer that vanished in the middle of a statement.
- A full or (re)starting server ("too many clients") is waited out with jittered backoff for up
  to `SWEEP_CONNECT_RETRY` seconds (default 300) instead of killing the worker.
"""

from __future__ import annotations

import os
import random
import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.engine.interfaces import DBAPIConnection, Dialect
    from sqlalchemy.pool import ConnectionPoolEntry

CONNECT_TIMEOUT_ENV, CONNECT_TIMEOUT_S = "SWEEP_CONNECT_TIMEOUT", 10.0
CONNECT_RETRY_ENV, CONNECT_RETRY_S = "SWEEP_CONNECT_RETRY", 300.0
LIBPQ_DRIVERS = ("psycopg", "psycopg2", "psycopg2cffi")
# Refusals that pass: the server is full or (re)starting. Anything else fails at once.
TRANSIENT_REFUSALS = (
    "too many clients", "remaining connection slots are reserved", "53300",
    "the database system is starting up", "the database system is shutting down",
)


def _seconds_from_env(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        from sweep.errors import StorageError

        raise StorageError(f"{name}={raw!r}: expected a number of seconds > 0")
    return value


def connect_timeout() -> float:
    """Seconds a connection attempt may take ($SWEEP_CONNECT_TIMEOUT, default 10)."""
    return _seconds_from_env(CONNECT_TIMEOUT_ENV, CONNECT_TIMEOUT_S)


def server_engine_kwargs(url: str) -> dict[str, Any]:
    """Engine settings for a database server: no idle pool, bounded connects, keepalives.

    Options the URL already carries (`?connect_timeout=3`) win over these defaults.
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.pool import NullPool

    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return {}
    args: dict[str, Any] = {}
    if parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() in LIBPQ_DRIVERS:
        _retry_full_server()
        args = {
            "connect_timeout": max(1, round(connect_timeout())),
            # A peer that vanished mid-statement is noticed in about a minute, not never.
            "keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10,
            "keepalives_count": 3, "tcp_user_timeout": 60_000,
        }
    elif parsed.get_backend_name() == "mysql":
        args = {"connect_timeout": max(1, round(connect_timeout()))}
    for key in parsed.query:
        args.pop(key, None)
    return {"poolclass": NullPool, "connect_args": args}


def is_transient_refusal(err: BaseException) -> bool:
    """Whether a connection error is a server refusing clients for now (full, restarting)."""
    text = str(err).lower()
    return any(marker in text for marker in TRANSIENT_REFUSALS)


_last_told = -1e9


def _connect_with_backoff(
    dialect: Dialect, _conn_rec: ConnectionPoolEntry, cargs: list[Any], cparams: dict[str, Any]
) -> DBAPIConnection:
    """A full or restarting server refuses new clients for a while: wait it out with jittered
    exponential backoff (so many workers do not retry in step) instead of failing the worker.
    """
    global _last_told
    deadline = time.monotonic() + _seconds_from_env(CONNECT_RETRY_ENV, CONNECT_RETRY_S)
    delay = 0.2
    while True:
        try:
            return dialect.connect(*cargs, **cparams)
        except dialect.loaded_dbapi.OperationalError as err:
            if not is_transient_refusal(err) or time.monotonic() + delay > deadline:
                raise
            if time.monotonic() - _last_told > 60:  # one line a minute, not one per attempt
                reason = str(err).strip().splitlines()[-1].split("FATAL:")[-1].strip()
                print(f"database {cparams.get('host', '')}: {reason}; waiting for a free "
                      "connection", file=sys.stderr)
                _last_told = time.monotonic()
            time.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, 5.0)


def _retry_full_server() -> None:
    """Install the backoff for every PostgreSQL engine, including the one RDBStorage makes (it
    connects inside its constructor, before a per-engine listener could be added).
    """
    from sqlalchemy import event
    from sqlalchemy.dialects.postgresql.base import PGDialect

    if not event.contains(PGDialect, "do_connect", _connect_with_backoff):
        event.listen(PGDialect, "do_connect", _connect_with_backoff)
