"""Visible workers: one log line per trial start and end (value or failure class, duration),
`sweep status` lists the target, the workers seen recently and the running trials as tables,
`sweep best` prints a table."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState
from typer.testing import CliRunner

from sweep.cli import app
from sweep.execution.trial_log import LoggedObjective
from sweep.execution.trial_process import TrialFailure
from sweep.record import TrialAt, TrialRecord, load, save
from sweep.storage import open_storage


def objective(trial):
    x = trial.suggest_float("x", 0, 1)
    kind = trial.suggest_categorical("kind", ["ok", "prune", "fail"])
    if kind == "prune":
        raise optuna.TrialPruned("pruned at epoch 2")
    if kind == "fail":
        raise TrialFailure("diverged", "loss is nan")
    return x


def test_each_trial_logs_one_start_and_one_end_line():
    lines: list[str] = []
    study = optuna.create_study(direction="maximize")
    for kind in ("ok", "prune", "fail"):
        study.enqueue_trial({"x": 0.25, "kind": kind})
    logged = LoggedObjective(objective, lines.append, worker="gpu-box:42")
    study.optimize(logged, n_trials=3, catch=(TrialFailure,))

    assert len(lines) == 6, lines
    starts, ends = lines[0::2], lines[1::2]
    assert all(line.startswith(f"trial {i} started on gpu-box:42") for i, line in
               enumerate(starts)), starts
    assert ends[0].startswith("trial 0 complete, value 0.2500 in ") and "x=0.25" in ends[0]
    assert ends[1].startswith("trial 1 pruned (pruned at epoch 2) in ") and "kind=prune" in ends[1]
    assert ends[2].startswith("trial 2 failed (diverged) in ") and "kind=fail" in ends[2]
    assert all("s: " in line for line in ends), "every end line says how long it took"
    assert {load(t).worker for t in study.trials} == {"gpu-box:42"}


def test_no_lines_on_a_terminal(monkeypatch):
    monkeypatch.setattr("sys.stdout.isatty", lambda: True, raising=False)
    assert LoggedObjective.for_stdout(objective).log is None


@pytest.fixture
def busy_study(tmp_path):
    """A study with one finished trial by worker a, one running trial (with a heartbeat) by b."""
    url = f"sqlite:///{tmp_path / 'sweeps.db'}"
    storage = open_storage(url, heartbeat_interval=1, grace_period=30)
    study = optuna.create_study(study_name="busy", storage=storage, direction="maximize")
    study.set_user_attr("target", 9)
    study.set_user_attr("spec", {"metric": "iou"})
    with pytest.warns(UserWarning, match="Heartbeat"):  # asked outside optimize, on purpose
        done = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    save(done, TrialRecord(worker="host-a:1"))
    study.tell(done, 0.625)
    with pytest.warns(UserWarning, match="Heartbeat"):  # asked outside optimize, on purpose
        running = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    save(TrialAt(storage, running._trial_id), TrialRecord(worker="host-b:2"))
    running.report(0.5, 1)
    storage.record_heartbeat(running._trial_id)
    return url, running.number


def test_status_shows_target_workers_and_running_trials(busy_study):
    url, running = busy_study
    result = CliRunner().invoke(app, ["status", "--storage", url], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    out = result.output
    assert "busy: 1 complete, 0 pruned, 0 failed, 1 running, 0 waiting; target 9" in out
    assert "(1/9 finished)" in out
    assert "workers seen in the last 10 min" in out and "running trials" in out
    worker_rows = [ln for ln in out.splitlines() if "host-" in ln]
    assert any("host-a:1" in ln and "—" in ln for ln in worker_rows)  # finished, not running
    b_rows = [ln for ln in worker_rows if "host-b:2" in ln]
    assert len(b_rows) == 2 and all(str(running) in ln and "s ago" in ln for ln in b_rows)


def test_best_prints_a_table(busy_study):
    url, _ = busy_study
    result = CliRunner().invoke(app, ["best", "--study", "busy", "--storage", url],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "busy: best 1 config(s)" in result.output
    (row,) = [ln for ln in result.output.splitlines() if "0.6250" in ln]
    assert row.count("│") >= 3, "a table row, not a line of text"
    header = next(ln for ln in result.output.splitlines() if "rank" in ln)
    assert "trial" in header and "iou" in header
    study = optuna.load_study(study_name="busy", storage=url)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.RUNNING]
