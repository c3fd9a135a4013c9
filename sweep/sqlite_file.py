"""A SQLite storage file as a file: is it one, is it whole, can it be read (or written)?

Asked before Optuna or SQLAlchemy touch it, so that a folder, a foreign file, a truncated or
overwritten database is one line naming the file (exit code 2), never a traceback from deep
inside a transaction, and so that nothing is written into a file that is not a sound database.
Also: which SQLite errors mean "the disk is full" (an environment fault, not an outage to wait
out) and "the file is damaged" (found only while reading it).
"""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path

from sweep.errors import DiskFullError, StorageError

HEADER = b"SQLite format 3\x00"
_DAMAGE_MARKERS = ("malformed", "file is not a database", "not a database", "file is encrypted")
_FULL_MARKERS = ("database or disk is full", "disk is full", "no space left")


def check_sqlite_file(path: Path, shown: str, *, writable: bool = True,
                      busy_timeout: float = 60.0) -> None:
    """Raise StorageError when `path` is a folder, not an SQLite database, damaged, or (with
    `writable`) cannot be written; a missing file is fine (it is created later).
    """
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise StorageError(f"storage {shown!r}: folder {folder} does not exist")
    if path.is_dir():
        raise StorageError(f"storage {shown!r}: {path} is a folder, not an SQLite database")
    if not path.exists():
        if writable and not os.access(folder, os.W_OK):
            raise StorageError(f"storage {shown!r}: {folder} is not writable")
        return
    if not path.is_file():
        raise StorageError(f"storage {shown!r}: {path} is not a regular file (an SQLite database)")
    if not os.access(path, os.R_OK):
        raise StorageError(f"storage {shown!r}: {path} is not readable")
    size = path.stat().st_size
    if size == 0:  # an empty file is a new database to SQLite
        if writable and not os.access(path, os.W_OK):
            raise StorageError(f"storage {shown!r}: {path} is not writable")
        return
    with open(path, "rb") as fh:
        head = fh.read(100)
    if head[:16] != HEADER:
        raise StorageError(f"storage {shown!r}: {path} is not an SQLite database")
    problem = _header_problem(head, size) or _quick_check(path, busy_timeout)
    if problem:
        raise StorageError(f"storage {shown!r}: {path} is damaged (not a readable SQLite "
                           f"database: {problem}); restore it from a copy or use another file")
    if writable and not os.access(path, os.W_OK):
        raise StorageError(f"storage {shown!r}: {path} is not writable")
    if writable and not os.access(folder, os.W_OK):
        raise StorageError(f"storage {shown!r}: {folder} is not writable (SQLite writes its "
                           "journal next to the database)")


def is_read_only(path: Path) -> bool:
    """Whether this process cannot write `path` or its folder (permissions, a read-only mount):
    readers then open it read-only (`read_only_uri`).
    """
    folder = path.parent if str(path.parent) else Path(".")
    try:
        mounted_ro = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        mounted_ro = False
    return mounted_ro or not os.access(path, os.W_OK) or not os.access(folder, os.W_OK)


def read_only_uri(path: Path) -> str:
    """An SQLite URI that opens `path` without writing anything: `mode=ro`, and `immutable=1`
    where the folder cannot be written (SQLite could not make the WAL index there; and no one
    can be writing the database).
    """
    folder = path.parent if str(path.parent) else Path(".")
    try:
        frozen = bool(os.statvfs(folder).f_flag & os.ST_RDONLY) or not os.access(folder, os.W_OK)
    except OSError:
        frozen = True
    return f"file:{path.resolve()}?mode=ro" + ("&immutable=1" if frozen else "")


def _header_problem(head: bytes, size: int) -> str | None:
    """A file shorter than its header says (truncated): cheap, without opening it."""
    if len(head) < 100:
        return f"{size} bytes, shorter than an SQLite header"
    page_size = int.from_bytes(head[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(head[28:32], "big")
    valid = head[24:28] == head[92:96]  # the header's page count is current
    if valid and pages and size < pages * page_size:
        return f"{size} bytes, its header says {pages * page_size} (truncated)"
    return None


def _quick_check(path: Path, busy_timeout: float) -> str | None:
    """SQLite's own quick_check (every page read once; read-only): None when sound."""
    uri = f"{path.resolve().as_uri()}?mode=ro"
    try:
        con = sqlite3.connect(uri, uri=True, timeout=busy_timeout)
    except sqlite3.Error as err:
        return str(err)
    try:
        rows = con.execute("PRAGMA quick_check(1)").fetchall()
    except sqlite3.OperationalError as err:
        if "unable to open" in str(err) or "readonly" in str(err) or "locked" in str(err):
            return None  # cannot look (a read-only WAL file, a lock): the open will tell
        return str(err)
    except sqlite3.DatabaseError as err:
        return str(err)
    finally:
        con.close()
    first = str(rows[0][0]) if rows else "ok"
    return None if first == "ok" else first.replace("\n", " ")


_OPENED: dict[str, Path] = {}  # the SQLite file this process opened last (errors name it)


def remember(path: Path) -> None:
    """Note the SQLite file a storage was opened on, for `fault_error`."""
    _OPENED["path"] = path


def fault_error(err: BaseException) -> StorageError | DiskFullError | None:
    """The one-line error for a damaged database file or a full disk met anywhere (the CLI's
    last resort before calling an error a bug); None for any other error.
    """
    path = _OPENED.get("path")
    for seen in _chain(err):  # Optuna wraps SQLAlchemy's error (StorageInternalError)
        if is_disk_full(seen):
            if isinstance(seen, OSError) and seen.filename:
                return disk_full_error(seen, seen.filename)
            return disk_full_error(seen, path)
        damaged = damage_error(seen, path)
        if damaged is not None:
            return damaged
    return None


def _chain(err: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    seen: BaseException | None = err
    while seen is not None and seen not in out and len(out) < 20:
        out.append(seen)
        seen = seen.__cause__ or seen.__context__
    return out


def damage_error(err: BaseException, path: Path | None) -> StorageError | None:
    """A StorageError naming `path` when `err` (SQLAlchemy's or sqlite3's) says the database
    file is damaged; None for any other error.
    """
    cause = getattr(err, "orig", None) or err
    if not isinstance(cause, sqlite3.DatabaseError) or isinstance(cause, sqlite3.OperationalError):
        return None
    text = str(cause)
    if not any(marker in text for marker in _DAMAGE_MARKERS):
        return None
    where = path if path is not None else "the SQLite database"
    return StorageError(f"storage {where}: damaged (not a readable SQLite database: {text}); "
                        "restore it from a copy or use another file")


def is_disk_full(err: BaseException) -> bool:
    """Whether `err` (an OSError, sqlite3's or SQLAlchemy's error) is a full disk or quota."""
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    cause = getattr(err, "orig", None) or err
    if isinstance(cause, sqlite3.Error) and getattr(cause, "sqlite_errorcode", None) == 13:
        return True  # SQLITE_FULL
    text = str(cause).lower()
    return isinstance(cause, sqlite3.Error | OSError) and any(m in text for m in _FULL_MARKERS)


def disk_full_error(err: BaseException | None, path: Path | str | None,
                    then: str = "free some space and rerun (a study resumes where it stopped)"
                    ) -> DiskFullError:
    """The one line for a full disk: what could not be written, where, and what to do."""
    where = path if path is not None else getattr(err, "filename", None) or "a file"
    return DiskFullError(f"{where}: no space left on the device; {then}")
