"""Storage URLs: passwords never shown, SQLite in WAL mode with the artifact folder beside it,
and a URL is checked without creating anything."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from sweep.storage import (
    StorageError,
    artifact_dir_for,
    check_storage_url,
    open_storage,
    read_storage,
    redact,
)


def test_redact_hides_the_password():
    shown = redact("postgresql+psycopg://alice:hunter2@db.example:5432/sweeps")
    assert "hunter2" not in shown and "alice" in shown and "db.example" in shown
    assert redact("sqlite:///sweeps.db") == "sqlite:///sweeps.db"


def test_sqlite_storage_is_wal_with_artifacts_beside_it(tmp_path):
    url = f"sqlite:///{tmp_path / 'sub.db'}"
    check_storage_url(url)
    assert not (tmp_path / "sub.db").exists()  # checking creates nothing
    storage = open_storage(url, heartbeat_interval=1, grace_period=2)
    assert storage.get_heartbeat_interval() == 1
    with sqlite3.connect(tmp_path / "sub.db") as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert artifact_dir_for(url) == tmp_path / "artifacts"
    assert artifact_dir_for("postgresql+psycopg://u@h/db").name == "artifacts"


def test_readers_never_create_a_database(tmp_path):
    with pytest.raises(StorageError, match="no such database"):
        read_storage(f"sqlite:///{tmp_path / 'absent.db'}")
    assert not (tmp_path / "absent.db").exists()
    with pytest.raises(StorageError, match="in-memory SQLite"):
        check_storage_url("sqlite://")
    check_storage_url(f"sqlite+pysqlite:///{tmp_path / 'driver.db'}")  # a file, with a driver


@pytest.mark.parametrize("url", [
    "sqlite:///sweeps.db", "sqlite:////tmp/a b/x.db", "sqlite:///rel/dir/x.db",
    "sqlite:///x.db?timeout=3", "sqlite:///a%20b.db", "sqlite:///C:/x.db",
    "sqlite+pysqlite:///x.db", "sqlite+pysqlite:////tmp/y.db",
])
def test_sqlite_path_reads_a_url_as_sqlalchemy_does(url):
    """Plain sqlite:/// URLs are read without SQLAlchemy (its import delays `sweep run`'s trial
    forkserver); the file named must be the one SQLAlchemy would open.
    """
    from sqlalchemy.engine import make_url

    from sweep.storage import sqlite_path

    assert sqlite_path(url) == Path(make_url(url).database)


def test_a_database_read_in_rollback_mode_opens_without_wal_and_works(tmp_path, monkeypatch):
    """A study made by plain Optuna is in rollback-journal mode; while another connection
    reads it, SQLite refuses the switch to WAL at once ("database is locked"). Opening it must
    not fail on that: the W&B mirror's thread once did, mid-sweep.
    """
    import optuna

    import sweep.storage
    from sweep.storage import open_storage

    monkeypatch.setattr(sweep.storage, "WAL_PATIENCE_S", 0.2)
    path = tmp_path / "plain.db"
    url = f"sqlite:///{path}"
    optuna.create_study(storage=url, study_name="made-by-optuna")
    reader = sqlite3.connect(path, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM studies").fetchall()  # holds its read lock
    storage = open_storage(url)
    reader.execute("COMMIT")
    reader.close()
    assert [s.study_name for s in storage.get_all_studies()] == ["made-by-optuna"]
    storage.create_new_study([optuna.study.StudyDirection.MAXIMIZE], "written-after")
    with sqlite3.connect(path) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "delete"

    open_storage(url)  # nobody reads it now: switched
    with sqlite3.connect(path) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
