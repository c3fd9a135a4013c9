"""Faults at the edges (issue 29), through the `sweep` commands a user runs, in this process:
damaged storage, a spec changed between runs, values that mean nothing, hostile study names,
full disks (an injected OSError(ENOSPC), or a real one on a small tmpfs where mounting works),
exports that died half-way. Each is one line naming the file or value, exit code 2 for bad input
and 4 for the environment, with nothing half-written. No trial trains here: the storages are
real SQLite files written with Optuna directly.
"""

from __future__ import annotations

import errno
import shutil
import sqlite3
import sys
from pathlib import Path

import optuna
import pytest

import sweep.cli as sweep_cli
from tests.sweep_helpers import tiny_spec_dict, write_spec

STUDY = "tiny"


def sweep_main(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["sweep", *args])
    monkeypatch.setitem(sweep_cli._DEBUG, "on", False)
    with pytest.raises(SystemExit) as done:
        sweep_cli.main()
    return done.value.code, capsys.readouterr().err.strip()


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    assert "internal error" not in lines[0]
    return lines[0]


@pytest.fixture(autouse=True)
def _in_tmp(monkeypatch, tmp_path):
    monkeypatch.delenv("CLOUDSWEEP_DEBUG", raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def sound_db(tmp_path_factory) -> Path:
    """A sound sweeps.db (WAL, checkpointed) holding study `tiny` with a spec and 3 trials."""
    from sweep.storage import open_storage
    from sweep.study.spec import StudySpec

    folder = tmp_path_factory.mktemp("sound")
    path = folder / "sweeps.db"
    storage = open_storage(f"sqlite:///{path}")
    study = optuna.create_study(study_name=STUDY, storage=storage, direction="maximize")
    spec = StudySpec.model_validate(tiny_spec_dict(STUDY))
    study.set_user_attr("target", 3)
    study.set_user_attr("spec", spec.to_dict())
    for i in range(3):
        study.add_trial(optuna.trial.create_trial(
            params={"optim.lr": 0.01 + i / 1000},
            distributions={"optim.lr": optuna.distributions.FloatDistribution(0.003, 0.03,
                                                                              log=True)},
            value=0.5 + i / 10))
    storage.engine.dispose()
    con = sqlite3.connect(path)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    return path


def _truncated(data: bytes) -> bytes:
    return data[:8192]


def _overwritten(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:4096] + b"\x5a" * (middle - 4096) + data[middle:]


def _foreign(data: bytes) -> bytes:
    return b"name,value\n" + b"x,1\n" * (len(data) // 4)


COMMANDS = [
    ["status"], ["best"], ["best", "--export"],
    ["run", "--study", "spec.yaml", "--trials", "4", "--workers", "2", "--no-progress"],
    ["worker", "--study", STUDY, "--trials", "4"],
    ["mirror", "--study", STUDY, "--wandb", "offline"],
]


@pytest.mark.parametrize("damage", [_truncated, _overwritten, _foreign],
                         ids=["truncated", "overwritten", "foreign"])
def test_a_damaged_database_is_one_line_exit_2_on_every_command(
        monkeypatch, capsys, tmp_path, sound_db, synthetic_root, damage):
    write_spec(tmp_path, {**tiny_spec_dict(STUDY, data=str(synthetic_root)), "name": STUDY})
    (tmp_path / f"{STUDY}.yaml").rename(tmp_path / "spec.yaml")
    broken = damage(sound_db.read_bytes())
    (tmp_path / "sweeps.db").write_bytes(broken)
    for args in COMMANDS:
        code, err = sweep_main(monkeypatch, capsys, *args)
        line = one_error_line(err)
        assert code == 2, (args, err)
        assert "sweeps.db" in line and ("damaged" in line or "not an SQLite" in line), line
    assert (tmp_path / "sweeps.db").read_bytes() == broken  # nothing written into it
    assert not (tmp_path / "exports").exists()


def test_a_database_that_is_a_folder_is_named_as_one(monkeypatch, capsys, tmp_path,
                                                      synthetic_root):
    write_spec(tmp_path, tiny_spec_dict(STUDY, data=str(synthetic_root)))
    (tmp_path / f"{STUDY}.yaml").rename(tmp_path / "spec.yaml")
    (tmp_path / "sweeps.db").mkdir()
    for args in COMMANDS:
        code, err = sweep_main(monkeypatch, capsys, *args)
        assert code == 2, (args, err)
        assert "sweeps.db is a folder, not an SQLite database" in one_error_line(err)
    assert list((tmp_path / "sweeps.db").iterdir()) == []


def test_damage_met_while_reading_is_one_line_not_a_bug(monkeypatch, capsys, tmp_path,
                                                       sound_db):
    """Damage that the checks before opening cannot see (a page read later) is still a
    StorageError line naming the file."""
    shutil.copyfile(sound_db, tmp_path / "sweeps.db")

    def malformed(*_args, **_kwargs):
        raise sqlite3.DatabaseError("database disk image is malformed")

    monkeypatch.setattr("sweep.status.describe", malformed)
    code, err = sweep_main(monkeypatch, capsys, "status")
    assert code == 2
    assert "sweeps.db: damaged" in one_error_line(err)


def test_an_injected_enospc_is_one_line_exit_4(monkeypatch, capsys, tmp_path, sound_db):
    shutil.copyfile(sound_db, tmp_path / "sweeps.db")

    def full(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x.bin"))

    monkeypatch.setattr("sweep.status.describe", full)
    code, err = sweep_main(monkeypatch, capsys, "status")
    assert code == 4
    assert f"{tmp_path / 'x.bin'}: no space left on the device" in one_error_line(err)


def _stored(path: Path) -> dict:
    from sweep.storage import read_storage, stored_attrs

    return stored_attrs(read_storage(f"sqlite:///{path}"), STUDY) or {}


def test_a_changed_space_on_resume_is_refused_naming_it_before_anything_is_written(
        tmp_path, sound_db, synthetic_root):
    from sweep.errors import SpecError
    from sweep.execution.runner import create_study
    from sweep.study.spec import StudySpec

    shutil.copyfile(sound_db, tmp_path / "sweeps.db")
    before = _stored(tmp_path / "sweeps.db")
    changed = tiny_spec_dict(STUDY)
    changed["space"]["loss.name"] = {"type": "categorical", "choices": ["bce", "weighted-bce"]}
    changed["budget"] = {**changed["budget"], "epochs": 5}
    spec = StudySpec.from_stored(changed, "tiny.yaml")
    with pytest.raises(SpecError) as refused:
        create_study(spec, 9, "sqlite:///sweeps.db", synthetic_root)
    message = str(refused.value)
    assert "space.loss.name.choices: ['bce', 'dice', 'weighted-bce'] -> ['bce', 'weighted-bce']" \
        in message
    assert "budget.epochs: 2 -> 5" in message and "\n" not in message
    assert _stored(tmp_path / "sweeps.db") == before  # neither spec nor target rewritten


def test_sampler_pruner_execution_and_trial_timeout_may_change_on_resume():
    from sweep.study.resume import spec_conflicts
    from sweep.study.spec import StudySpec

    old = StudySpec.from_stored(tiny_spec_dict(STUDY), "a").to_dict()
    new = tiny_spec_dict(STUDY, sampler={"name": "tpe", "seed": 3},
                         pruner={"name": "none"}, description="again")
    new["budget"] = {**new["budget"], "trial_timeout": 999}
    new["execution"] = {**new["execution"], "grace_period": 30}
    assert spec_conflicts(old, StudySpec.from_stored(new, "b").to_dict()) == []
    new["metric"] = "dice"
    assert spec_conflicts(old, StudySpec.from_stored(new, "b").to_dict()) == [
        "metric: 'iou' -> 'dice'"]


@pytest.mark.parametrize("value", ["-5", "nan", "inf", "0"])
def test_a_worker_refuses_a_meaningless_timeout_and_changes_nothing(
        monkeypatch, capsys, tmp_path, sound_db, value):
    shutil.copyfile(sound_db, tmp_path / "sweeps.db")
    before = (tmp_path / "sweeps.db").read_bytes()
    code, err = sweep_main(monkeypatch, capsys, "worker", "--study", STUDY, f"--timeout={value}")
    assert code == 2
    assert f"--timeout {float(value)}: expected a number of seconds > 0" in one_error_line(err)
    assert (tmp_path / "sweeps.db").read_bytes() == before


def test_run_refuses_a_meaningless_timeout_first():
    from cloudseg import ConfigError
    from sweep.execution.runner import run_study
    from sweep.study.spec import StudySpec

    spec = StudySpec.from_stored(tiny_spec_dict(STUDY), "tiny.yaml")
    with pytest.raises(ConfigError, match=r"--timeout -5.0: expected a number of seconds > 0"):
        run_study(spec, 3, storage="sqlite:///never.db", timeout=-5.0, workers=2)
    assert not Path("never.db").exists()


def test_a_grid_smaller_than_the_target_is_refused_in_one_line(monkeypatch, capsys, tmp_path,
                                                              synthetic_root):
    spec = tiny_spec_dict("grid2", data=str(synthetic_root), sampler={"name": "grid", "seed": 0})
    spec["space"] = {"loss.name": {"type": "categorical", "choices": ["dice", "bce"]}}
    path = write_spec(tmp_path, spec)
    code, err = sweep_main(monkeypatch, capsys, "run", "--study", str(path), "--trials", "4",
                           "--workers", "2", "--no-progress")
    assert code == 2
    assert "--trials 4: the grid of" in one_error_line(err) and "has 2 point(s)" in err
    assert not (tmp_path / "sweeps.db").exists()


def test_an_empty_space_is_a_spec_error(tmp_path):
    from sweep.errors import SpecError
    from sweep.study.spec import load_spec

    path = write_spec(tmp_path, tiny_spec_dict("empty", space={}))
    with pytest.raises(SpecError, match=r"empty\.yaml: space: empty; a study searches"):
        load_spec(str(path))


# ---- hostile study names --------------------------------------------------------------------
@pytest.mark.parametrize("name", ["../../escaped-study", "/tmp/abs", ".hidden", "a/b", ""])
def test_a_study_name_that_is_no_safe_folder_gets_no_default_export_dir(name):
    from sweep.errors import ExportError
    from sweep.export import default_destination

    with pytest.raises(ExportError, match="not a safe folder name"):
        default_destination(name)


def test_best_export_of_a_hostile_study_name_writes_nothing_outside(monkeypatch, capsys,
                                                                     tmp_path):
    url = f"sqlite:///{tmp_path / 'sweeps.db'}"
    study = optuna.create_study(study_name="../../escaped-study", storage=url,
                                direction="maximize")
    study.add_trial(optuna.trial.create_trial(value=0.5))
    before = sorted(p.name for p in tmp_path.parent.iterdir())
    code, err = sweep_main(monkeypatch, capsys, "best", "--study", "../../escaped-study",
                           "--export")
    assert code == 2
    assert "'../../escaped-study': its name is not a safe folder name" in one_error_line(err)
    assert sorted(p.name for p in tmp_path.parent.iterdir()) == before
    assert not (tmp_path / "exports").exists()
    assert default_ok("loss-search_v2.1")


def default_ok(name: str) -> bool:
    from sweep.export import default_destination

    return default_destination(name) == Path("exports") / name


# ---- exports that died half-way, or ran out of space ------------------------------------------
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
