"""Faults at the edges (issue 29), part two: exports that died half-way or ran out of space,
full disks under the database, the artifacts and the cache (an injected OSError(ENOSPC), or a
real one on a small tmpfs where mounting works), a worker thawed after its trial was taken
over, a read-only database, a silent database host. Each is one line naming the file or value,
exit code 2 for bad input and 4 for the environment, with nothing half-written.
"""

from __future__ import annotations

import errno
import shutil
import sqlite3
from pathlib import Path

import optuna
import pytest

from tests.fault_helpers import STUDY, one_error_line, sweep_main
from tests.sweep_helpers import tiny_spec_dict, write_spec


@pytest.fixture(autouse=True)
def _in_tmp(monkeypatch, tmp_path):
    monkeypatch.delenv("CLOUDSWEEP_DEBUG", raising=False)
    monkeypatch.chdir(tmp_path)


def test_the_next_export_removes_stale_temporary_folders_and_keeps_a_live_one(tmp_path):
    import fcntl
    import os

    from sweep.export_swap import clean_stale

    dest = tmp_path / "bundle"
    dest.mkdir()
    dead = tmp_path / ".bundle.export-dead1"
    dead.mkdir()
    (dead / "model.safetensors").write_bytes(b"x" * 1000)
    live = tmp_path / ".bundle.export-live1"
    live.mkdir()
    fd = os.open(live, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # an export in progress in another process
        assert clean_stale(dest) == [dead]
        assert live.is_dir() and dest.is_dir() and not dead.exists()
    finally:
        os.close(fd)


def test_a_death_between_the_two_renames_is_repaired_by_the_next_export(tmp_path):
    from sweep.export_swap import clean_stale

    dest = tmp_path / "bundle"
    old = tmp_path / ".bundle.old-1234abcd"  # the fallback's DIR -> .DIR.old-X happened
    old.mkdir()
    (old / "model.safetensors").write_text("old")
    clean_stale(dest)
    assert (dest / "model.safetensors").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


def test_the_fallback_swap_never_leaves_the_folder_missing_when_the_rename_fails(
        tmp_path, monkeypatch):
    import os

    import sweep.export_swap as swap
    from sweep.errors import ExportError

    monkeypatch.setattr(swap, "_exchange", lambda a, b: False)
    real_rename = os.rename

    def rename(src, dst):
        if ".export-" in str(src):
            raise OSError(errno.EEXIST, "File exists", str(dst))
        return real_rename(src, dst)

    monkeypatch.setattr(swap.os, "rename", rename)
    dest, tmp = tmp_path / "bundle", tmp_path / ".bundle.export-1"
    dest.mkdir()
    tmp.mkdir()
    (dest / "model.safetensors").write_text("old")
    with pytest.raises(ExportError, match="could not be replaced"):
        swap.swap_into_place(tmp, dest)
    assert (dest / "model.safetensors").read_text() == "old"


class _OneFileStore:
    def open_reader(self, artifact_id):
        import io

        return io.BytesIO(b"weights")


class _Trial:
    number = 1
    value = 0.5
    params: dict = {}
    user_attrs = {"artifacts": {"checkpoint": "ckpt"}, "config": {}}


class _Study:
    study_name = "s"
    user_attrs: dict = {}


def test_an_export_out_of_space_names_the_destination_and_keeps_the_old_bundle(
        tmp_path, monkeypatch):
    import optuna.artifacts

    import sweep.export as export
    from sweep.errors import DiskFullError

    def full(*, artifact_store, artifact_id, file_path):
        Path(file_path).write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(optuna.artifacts, "download_artifact", full)
    dest = tmp_path / "out" / "bundle"
    dest.mkdir(parents=True)
    (dest / "model.safetensors").write_text("old")
    with pytest.raises(DiskFullError) as failure:
        export.export_trial(_Study(), _Trial(), dest, store=_OneFileStore())
    assert failure.value.exit_code == 4
    assert str(failure.value).startswith(f"{dest}: no space left on the device; nothing was "
                                         "replaced")
    assert "artifact store" not in str(failure.value)
    assert sorted(p.name for p in dest.parent.iterdir()) == ["bundle"]  # no temporary left
    assert (dest / "model.safetensors").read_text() == "old"


# ---- full disks -------------------------------------------------------------------------------
@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs at tmp_path/disk (root only); skips where mounting is impossible."""
    import subprocess

    disk = tmp_path / "disk"
    disk.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)],
                          capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_full_database_disk_is_an_environment_fault_not_an_outage(small_disk):
    from sweep.execution.target import is_storage_outage
    from sweep.sqlite_file import fault_error
    from sweep.storage import open_storage

    path = small_disk / "sweeps.db"
    study = optuna.create_study(study_name="full", storage=open_storage(f"sqlite:///{path}"))
    with pytest.raises(Exception) as full:  # noqa: PT011 - whatever Optuna wraps it in
        for i in range(10_000):
            study.set_user_attr(f"k{i}", "x" * 30_000)
    assert not is_storage_outage(full.value)  # no 300 s of "unreachable" retries
    fault = fault_error(full.value)
    assert fault is not None and fault.exit_code == 4
    assert str(fault).startswith(f"{path}: no space left on the device")


def test_a_full_artifact_disk_stops_the_trial_with_one_line(small_disk, tmp_path):
    from sweep.artifacts import artifact_store, upload_trial_files
    from sweep.errors import DiskFullError

    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'a.db'}")
    trial = study.ask()
    big = tmp_path / "checkpoint.bin"
    big.write_bytes(b"\1" * (2 * 2**20))
    store = artifact_store(small_disk / "artifacts")
    with pytest.raises(DiskFullError, match=r"artifact folder .*disk/artifacts: no space left"):
        upload_trial_files(trial, store, {"checkpoint": str(big)})


def test_prepare_on_a_full_cache_disk_refuses_before_writing(small_disk, synthetic_root):
    from cloudseg import DiskFullError
    from cloudseg.data import prepare_cache

    with pytest.raises(DiskFullError, match=r"cache folder .*: no space left .* it needs 20 MiB"):
        prepare_cache(synthetic_root, small_disk / "cache")
    assert [p.name for p in (small_disk / "cache").iterdir()] == [".lock"]


def test_prepare_that_fills_the_disk_while_reserving_leaves_no_partial_build(
        small_disk, synthetic_root, monkeypatch):
    """The free-space check passed (another writer filled the disk after it): the arrays'
    blocks are reserved before a byte goes through the memmap, so ENOSPC, not SIGBUS."""
    import collections

    import cloudseg.data.cache as cache_mod
    from cloudseg import DiskFullError

    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(cache_mod.shutil, "disk_usage", lambda _p: usage(2**40, 0, 2**40))
    with pytest.raises(DiskFullError, match="while reserving the cache"):
        cache_mod.prepare_cache(synthetic_root, small_disk / "cache")
    assert [p.name for p in (small_disk / "cache").iterdir()] == [".lock"]


def test_prepare_through_sweep_run_is_exit_4(monkeypatch, capsys, tmp_path, synthetic_root):
    import cloudseg.data.cache as cache_mod

    def full(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cache_mod.os, "posix_fallocate", full)
    spec = write_spec(tmp_path, tiny_spec_dict("fullcache", data=str(synthetic_root)))
    monkeypatch.setenv("CLOUDSEG_CACHE_DIR", str(tmp_path / "cache"))
    code, err = sweep_main(monkeypatch, capsys, "run", "--study", str(spec), "--trials", "2",
                           "--workers", "2", "--no-progress")
    assert code == 4
    assert "no space left on the device while reserving the cache" in one_error_line(err)
    assert not (tmp_path / "sweeps.db").exists()


def test_an_injected_full_database_is_not_an_outage_either():
    """The same decision where no small filesystem can be mounted (CI without root)."""
    from optuna.exceptions import StorageInternalError
    from sqlalchemy.exc import OperationalError

    from sweep.execution.target import is_storage_outage
    from sweep.sqlite_file import fault_error

    try:
        try:
            raise OperationalError("COMMIT", {}, sqlite3.OperationalError(
                "database or disk is full"))
        except OperationalError as err:
            raise StorageInternalError("An exception is raised during the commit.") from err
    except StorageInternalError as wrapped:
        assert not is_storage_outage(wrapped)
        fault = fault_error(wrapped)
    assert fault is not None and fault.exit_code == 4
    assert is_storage_outage(OperationalError("SELECT", {}, sqlite3.OperationalError(
        "unable to open database file")))


# ---- a worker thawed after its trial was taken over -------------------------------------------
def test_a_thawed_worker_whose_trial_was_failed_as_stale_logs_one_line_and_goes_on(tmp_path):
    from optuna.trial import TrialState

    from sweep.execution.target import run_to_target
    from sweep.storage import open_storage

    study = optuna.create_study(study_name="thaw",
                                storage=open_storage(f"sqlite:///{tmp_path / 't.db'}"))
    frozen_once = []

    def objective(trial):
        x = trial.suggest_float("x", 0, 1)
        if not frozen_once:  # SIGSTOP past the grace period: another worker fails it as stale
            frozen_once.append(trial.number)
            study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        return x

    lines: list[str] = []
    run_to_target(study, objective, 2, poll_s=0.01, shown_storage="t.db", log=lines.append)
    assert lines == ["this worker was stopped past the heartbeat grace period and its trial was "
                     "failed as stale (and retried) by another worker; going on"]
    states = [t.state for t in study.get_trials(deepcopy=False)]
    assert states.count(TrialState.COMPLETE) == 2 and states[0] == TrialState.FAIL


# ---- read-only databases, silent hosts ----------------------------------------------------------
def test_status_and_best_read_a_database_on_a_read_only_mount(monkeypatch, capsys, small_disk,
                                                              sound_db):
    import subprocess

    shutil.copyfile(sound_db, small_disk / "sweeps.db")
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    monkeypatch.chdir(small_disk)
    for args in (["status"], ["best"]):
        code, err = sweep_main(monkeypatch, capsys, *args)
        assert code == 0, err
    assert [p.name for p in small_disk.iterdir()] == ["sweeps.db"]
    code, err = sweep_main(monkeypatch, capsys, "worker", "--study", STUDY)
    assert code == 2 and "is not writable" in one_error_line(err)


@pytest.fixture
def counting_silent_host():
    """A port that accepts connections and never answers; yields (port, accepted list)."""
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except (TimeoutError, OSError):
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1], held
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


def test_a_one_worker_run_against_a_silent_host_waits_one_timeout_like_status(
        monkeypatch, capsys, tmp_path, synthetic_root, counting_silent_host):
    pytest.importorskip("psycopg")
    port, held = counting_silent_host
    monkeypatch.setenv("SWEEP_CONNECT_TIMEOUT", "1")
    url = f"postgresql+psycopg://u@127.0.0.1:{port}/optuna"
    code, err = sweep_main(monkeypatch, capsys, "status", "--storage", url)
    assert code == 4 and "within 1 s" in one_error_line(err)
    by_status = len(held)
    spec = write_spec(tmp_path, tiny_spec_dict(STUDY, data=str(synthetic_root)))
    code, err = sweep_main(monkeypatch, capsys, "run", "--study", str(spec), "--trials", "2",
                           "--workers", "1", "--no-progress", "--storage", url)
    assert code == 4 and "within 1 s" in one_error_line(err)
    assert len(held) - by_status == by_status  # one connect attempt, not two
