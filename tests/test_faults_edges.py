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
from pathlib import Path

import optuna
import pytest

from tests.fault_helpers import STUDY, one_error_line, sweep_main
from tests.sweep_helpers import tiny_spec_dict, write_spec


@pytest.fixture(autouse=True)
def _in_tmp(monkeypatch, tmp_path):
    monkeypatch.delenv("CLOUDSWEEP_DEBUG", raising=False)
    monkeypatch.chdir(tmp_path)


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
