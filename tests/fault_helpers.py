"""Shared pieces of the fault tests: the `sweep` console entry run in this process (its exit
code and stderr), the one-error-line check, and a sound SQLite study to damage."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

import optuna
import pytest

import sweep.cli as sweep_cli
from tests.sweep_helpers import tiny_spec_dict

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


