"""Storage URL → Optuna RDBStorage, configured for many workers on one file or one server.

SQLite (the embedded default): WAL so readers (status, dashboard, live view) never block the
writers; a 60 s busy timeout; and `BEGIN IMMEDIATE` for every transaction, because in WAL mode a
deferred transaction that reads and then writes fails at once with "database is locked" when
another worker committed in between — the busy handler is not consulted for that case.
Every backend: heartbeats + RetryHeartbeatStaleTrialCallback, so a killed worker's trial is
failed after `grace_period` and queued again with the same parameters.

A database server: see sweep.connections (no idle pool, connect timeout, full-server backoff).
"""

from __future__ import annotations

import re
import sqlite3
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from optuna.storages import BaseStorage, RDBStorage
    from sqlalchemy import Connection, Engine

from sweep.connections import CONNECT_TIMEOUT_ENV, connect_timeout, server_engine_kwargs
from sweep.errors import StorageError, StorageUnreachable
from sweep.sqlite_file import check_sqlite_file, is_read_only, read_only_uri, remember

DEFAULT_STORAGE = "sqlite:///sweeps.db"
BUSY_TIMEOUT_S = 60
WAL_PATIENCE_S = 5.0  # how long a switch to WAL is retried while others hold the file


def redact(url: str) -> str:
    """The URL with any password replaced by ***, for logs, status lines and errors."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1] if "@" in url else url


def sqlite_path(url: str) -> Path | None:
    """The database file of a sqlite URL, `sqlite:///` or with a driver (`sqlite+pysqlite:///`);
    None for other backends or :memory:.
    """
    if url.split(":", 1)[0].split("+", 1)[0] != "sqlite":
        return None
    plain = re.fullmatch(r"sqlite:///([^?#%:]+)", url)  # read without importing SQLAlchemy
    if plain:  # (0.2 s), which `sweep run` asks before it starts the trial forkserver
        return Path(plain[1])
    from sqlalchemy.engine import make_url

    database = make_url(url).database
    return None if not database or database == ":memory:" else Path(database)


def artifact_dir_for(url: str) -> Path:
    """Default artifact directory: `artifacts/` next to the SQLite file, else ./artifacts."""
    path = sqlite_path(url)
    return (path.parent if path else Path(".")) / "artifacts"


def check_storage_url(url: str, *, writable: bool = True) -> None:
    """Raise StorageError if the URL cannot work, without creating or changing anything: for
    SQLite, a folder, a foreign or damaged file, or (with `writable`) one that cannot be written.
    """
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    shown = redact(url)
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StorageError(
            f"storage {shown!r}: not a database URL (e.g. sqlite:///sweeps.db)"
        ) from None
    path = sqlite_path(url)
    if parsed.get_backend_name() == "sqlite":
        if path is None:
            raise StorageError(f"storage {shown!r}: in-memory SQLite cannot be shared; use a file")
        check_sqlite_file(path, shown, writable=writable, busy_timeout=BUSY_TIMEOUT_S)
        return
    try:
        engine = create_engine(url, **server_engine_kwargs(url))
    except (NoSuchModuleError, ImportError) as err:
        raise StorageError(f"storage {shown!r}: no driver for this URL ({err})") from None
    try:
        with engine.connect():
            pass
    except Exception as err:
        cause = getattr(err, "orig", None) or err  # without SQLAlchemy's "(module.Class)"
        first = str(cause).strip().splitlines()[0] if str(cause).strip() else type(err).__name__
        if "timeout" in first.lower():
            first += (f" (no answer from {parsed.host}:{parsed.port or 'default port'} within "
                      f"{connect_timeout():g} s; set {CONNECT_TIMEOUT_ENV} to wait longer)")
            raise StorageUnreachable(f"storage {shown!r}: cannot connect: {first}") from None
        raise StorageError(f"storage {shown!r}: cannot connect: {first}") from None
    finally:
        engine.dispose()


def _sqlite_setup(engine: Engine) -> None:
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (below)
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_S * 1000}")
        cur.execute("PRAGMA synchronous = NORMAL")  # WAL: a property of the file (_enable_wal)
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def open_storage(
    url: str = DEFAULT_STORAGE,
    *,
    heartbeat_interval: int = 10,
    grace_period: int = 60,
    max_retry: int = 2,
) -> RDBStorage:
    """An RDBStorage with heartbeats and stale-trial retry; SQLite tuned as described above."""
    import optuna
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    engine_kwargs: dict[str, Any] = server_engine_kwargs(url)
    path = sqlite_path(url)
    if path is not None:
        engine_kwargs["connect_args"] = {"timeout": BUSY_TIMEOUT_S, "check_same_thread": False}
        remember(path)
        _enable_wal(path)
    from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

    for attempt in range(6):  # processes creating one new database race on its schema
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                storage = RDBStorage(
                    url,
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=heartbeat_interval,
                    grace_period=grace_period,
                    heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(
                        max_retry=max_retry, inherit_intermediate_values=False
                    ),
                    skip_compatibility_check=True,  # done below, one connection at a time
                )
            _check_schema(storage, url)
            break
        except (IntegrityError, OperationalError, ProgrammingError) as err:
            if attempt == 5 or not _lost_schema_race(err):
                raise
            time.sleep(0.2 * (attempt + 1))
    if path is not None:
        _sqlite_setup(storage.engine)
        storage.engine.dispose()  # pooled connections made before the listeners existed
    return storage


# PostgreSQL's answers to two processes creating the same table at once: the loser's CREATE
# fails as duplicate_table / duplicate_object (a ProgrammingError), or as unique_violation on
# the catalogue (an IntegrityError). SQLite's is "locked" or "already exists" (OperationalError).
_DUPLICATE_SQLSTATES = frozenset({"42P07", "42710", "23505"})


def _lost_schema_race(err: Exception) -> bool:
    """Whether `err` is another process winning the race to create the schema (retry) rather
    than a real error (a typo'd database, no permission: raise).
    """
    from sqlalchemy.exc import ProgrammingError

    if not isinstance(err, ProgrammingError):
        return True  # IntegrityError / OperationalError: retried as before
    return getattr(err.orig, "sqlstate", None) in _DUPLICATE_SQLSTATES


def _check_schema(storage: RDBStorage, url: str) -> None:
    """Optuna's own check holds one connection while it opens a second: on a full server, many
    workers starting at once each hold one and wait for another, forever. Same check, serial.
    """
    current, head = storage.get_current_version(), storage.get_head_version()
    if current != head:
        raise StorageError(
            f"storage {redact(url)!r}: its tables are schema {current}, this optuna needs {head}; "
            "run `optuna storage upgrade --storage URL` (or install the optuna that made it)"
        )


def _enable_wal(path: Path) -> None:
    """WAL is a property of the file: set it once, before the engine's first connection."""
    con = sqlite3.connect(path, timeout=0.1)  # each refusal is retried (`switch_to_wal`)
    try:
        switch_to_wal(con, patience=WAL_PATIENCE_S)
    finally:
        con.close()


def switch_to_wal(con: sqlite3.Connection, patience: float) -> bool:
    """Put the database in WAL mode unless it is already; whether it is now.

    A database that another connection reads in rollback-journal mode (one made by plain
    Optuna, say) refuses the switch at once with "database is locked": SQLite does not wait
    for that. The switch is retried for `patience` seconds, then the database stays as it is:
    still correct (every transaction here is BEGIN IMMEDIATE, with the busy timeout), only
    its readers and writers wait for each other.
    """
    deadline = time.monotonic() + patience
    while True:
        mode = con.execute("PRAGMA journal_mode").fetchone()[0]
        if str(mode).lower() == "wal":
            return True
        try:
            con.execute("PRAGMA journal_mode = WAL")
        except sqlite3.OperationalError as err:
            if "locked" not in str(err):
                raise
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)


def read_storage(url: str) -> RDBStorage:
    """A plain storage for readers (status, best, export): no heartbeat, nothing created.

    Raises StorageError when there is no database at a SQLite URL rather than creating one.
    """
    path = sqlite_path(url)
    if path is not None and not path.exists():
        raise StorageError(
            f"storage {redact(url)!r}: no such database {path}; run `sweep run` first"
        )
    check_storage_url(url, writable=False)
    if not _has_optuna_schema(url):  # opening it would write the whole schema into it
        raise StorageError(
            f"storage {redact(url)!r}: holds no studies (an empty database); run `sweep run` first"
        )
    if path is not None and is_read_only(path):  # a read-only file, folder or mount
        return _open_read_only(path)
    return open_storage(url)


def _open_read_only(path: Path) -> RDBStorage:
    import optuna
    from optuna.storages import RDBStorage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    remember(path)
    return RDBStorage(f"sqlite:///{read_only_uri(path)}&uri=true", skip_compatibility_check=True,
                      engine_kwargs={"connect_args": {"timeout": BUSY_TIMEOUT_S}})


def _has_optuna_schema(url: str) -> bool:
    """Whether the database already holds Optuna's tables, asked without creating anything."""
    path = sqlite_path(url)
    if path is not None:  # the file exists: nothing is made
        con = (sqlite3.connect(read_only_uri(path), uri=True, timeout=BUSY_TIMEOUT_S)
               if is_read_only(path) else sqlite3.connect(path, timeout=BUSY_TIMEOUT_S))
        try:
            return con.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
                               "name = 'version_info'").fetchone() is not None
        finally:
            con.close()
    from sqlalchemy import create_engine, inspect

    engine = create_engine(url)
    try:
        return inspect(engine).has_table("version_info")
    finally:
        engine.dispose()


def stored_attrs(storage: BaseStorage, name: str) -> dict[str, Any] | None:
    """The user attrs of study `name`, or None when the storage has no such study."""
    try:
        return storage.get_study_user_attrs(storage.get_study_id_from_name(name))
    except KeyError:
        return None
