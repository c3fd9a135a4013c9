"""One storage suite over every backend (SQLite file, PostgreSQL database), as Optuna's own
storage tests run over theirs: what `sweep.storage.open_storage` promises to many workers.

Workers are real processes on a real database: several processes creating trials at once, and
a worker killed with SIGKILL in the middle of a trial (its heartbeat stops, the trial is failed
and queued again with the same parameters)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from sweep.cli import app
from sweep.errors import StorageError
from sweep.storage import check_storage_url, open_storage, redact
from tests.fixtures.storage import free_port

# Each child joins (or creates) the study at the same moment and asks/tells a few trials.
ASK_TELL = """
import sys, time
import optuna
from sweep.storage import open_storage
url, go, n = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
storage = open_storage(url)
time.sleep(max(0.0, go - time.time()))
study = optuna.create_study(study_name="race", storage=storage, load_if_exists=True)
for _ in range(n):
    trial = study.ask()
    study.tell(trial, trial.suggest_float("x", 0, 1))
"""

# A worker running a cheap objective to a study-wide target, as `sweep.execution.workers.work` does.
TARGETED_WORKER = """
import sys, time
import optuna
from sweep.storage import open_storage
from sweep.execution.target import run_to_target
url, target, go = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
storage = open_storage(url, heartbeat_interval=1, grace_period=3)
study = optuna.load_study(study_name="exact", storage=storage)
time.sleep(max(0.0, go - time.time()))
def objective(trial):
    time.sleep(0.2)
    return trial.suggest_float("x", 0, 1)
run_to_target(study, objective, target, poll_s=0.2, shown_storage=url)
"""

# The same for a server that cannot hold every worker at once: stdout says it started and ended.
SMALL_SERVER_WORKER = """
import sys
import optuna
from sweep.storage import open_storage
from sweep.execution.target import run_to_target
url, target = sys.argv[1], int(sys.argv[2])
storage = open_storage(url, heartbeat_interval=1, grace_period=10)
study = optuna.load_study(study_name="crowd", storage=storage)
def objective(trial):
    return trial.suggest_float("x", 0, 1)
run_to_target(study, objective, target, poll_s=0.2, shown_storage="crowd")
"""

# A worker whose trial never ends: it says which trial it runs, then waits to be killed.
HANGING_WORKER = """
import sys, time
import optuna
from pathlib import Path
from sweep.storage import open_storage
url, flag = sys.argv[1], Path(sys.argv[2])
storage = open_storage(url, heartbeat_interval=1, grace_period=2)
study = optuna.load_study(study_name="hb", storage=storage)
def objective(trial):
    trial.suggest_float("x", 0, 1)
    trial.suggest_categorical("loss", ["bce", "dice"])
    flag.write_text(str(trial.number))
    time.sleep(120)
study.optimize(objective, n_trials=1)
"""


def python(script: str, *args: str) -> subprocess.Popen:
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(script), *args], env=env)


OPEN_AT = """
import sys, time
import sqlalchemy, optuna
url, go = sys.argv[1], float(sys.argv[2])
from sweep.storage import open_storage
time.sleep(max(0.0, go - time.time()))
open_storage(url)  # the tables do not exist yet: every process races to create them
"""


@pytest.mark.parametrize("storage_url", [pytest.param("postgres", marks=pytest.mark.postgres)],
                         indirect=True)
def test_processes_creating_the_schema_at_the_same_instant_all_succeed(storage_url):
    """PostgreSQL answers the loser of a CREATE TABLE race with duplicate_table (a
    ProgrammingError); the loser must wait and use the winner's tables, not fail. (Without the
    retry, 8 processes failed this 1 run in 2 here; CI's workers-started-together test saw it.)"""
    go = str(time.time() + 4)  # every child imported, then all open at once
    children = [python(OPEN_AT, storage_url, go) for _ in range(8)]
    assert [c.wait(timeout=120) for c in children] == [0] * 8
    assert optuna.get_all_study_names(open_storage(storage_url)) == []


def test_create_then_load_from_another_storage_object(storage_url):
    study = optuna.create_study(study_name="s", storage=open_storage(storage_url))
    study.set_user_attr("target", 7)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)

    again = optuna.load_study(study_name="s", storage=open_storage(storage_url))
    assert again.user_attrs == {"target": 7}
    assert [t.state for t in again.trials] == [TrialState.COMPLETE] * 2
    assert optuna.get_all_study_names(open_storage(storage_url)) == ["s"]


def test_processes_starting_together_share_one_study_and_unique_numbers(storage_url):
    procs, per_proc = 3, 4
    go = str(time.time() + 2.5)  # all children past their imports, then create at once
    children = [python(ASK_TELL, storage_url, go, str(per_proc)) for _ in range(procs)]
    assert [c.wait(timeout=120) for c in children] == [0] * procs

    storage = open_storage(storage_url)
    assert optuna.get_all_study_names(storage) == ["race"]
    trials = optuna.load_study(study_name="race", storage=storage).trials
    assert sorted(t.number for t in trials) == list(range(procs * per_proc))
    assert len({t._trial_id for t in trials}) == procs * per_proc
    assert all(t.state == TrialState.COMPLETE for t in trials)


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_killed_worker_trial_is_failed_and_retried_with_same_params(storage_url, tmp_path):
    optuna.create_study(study_name="hb", storage=open_storage(storage_url))
    flag = tmp_path / "running"
    worker = python(HANGING_WORKER, storage_url, str(flag))
    try:
        deadline = time.monotonic() + 60
        while not flag.exists() and worker.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert flag.exists(), "the worker never started its trial"
        time.sleep(1.5)  # at least one heartbeat recorded
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()

    storage = open_storage(storage_url, heartbeat_interval=1, grace_period=2)
    study = optuna.load_study(study_name="hb", storage=storage)
    (killed,) = study.trials
    assert killed.state == TrialState.RUNNING  # nobody has noticed yet
    time.sleep(3)  # past the grace period
    optuna.storages.fail_stale_trials(study)

    killed, retry = study.trials
    assert killed.state == TrialState.FAIL
    assert retry.state == TrialState.WAITING
    assert retry.params == killed.params
    assert retry.system_attrs["failed_trial"] == killed.number

    # The next worker picks the queued retry first and runs the same parameters.
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    assert study.trials[1].state == TrialState.COMPLETE
    assert study.trials[1].params == killed.params


def test_workers_stop_at_exactly_the_study_wide_target(storage_url):
    """Optuna's MaxTrialsCallback lets each of K workers start one trial too many; trial
    numbers order the claims so the study ends with exactly `target` finished trials."""
    target, procs = 7, 3
    optuna.create_study(study_name="exact", storage=open_storage(storage_url))
    go = str(time.time() + 2.5)
    children = [python(TARGETED_WORKER, storage_url, str(target), go) for _ in range(procs)]
    assert [c.wait(timeout=120) for c in children] == [0] * procs

    trials = optuna.load_study(study_name="exact", storage=open_storage(storage_url)).trials
    assert sum(t.state == TrialState.COMPLETE for t in trials) == target
    others = [t for t in trials if t.state != TrialState.COMPLETE]
    assert all(t.state == TrialState.FAIL and t.user_attrs["failure"] == "surplus" for t in others)
    assert all(not t.params for t in others), "a surplus trial must end before it trains"


def test_passwords_are_redacted():
    url = "postgresql+psycopg://sweeper:hunter2@db.example:5432/optuna"
    shown = redact(url)
    assert "hunter2" not in shown
    assert shown == "postgresql+psycopg://sweeper:***@db.example:5432/optuna"
    assert redact("sqlite:///sweeps.db") == "sqlite:///sweeps.db"


def test_unreachable_server_error_is_one_line_without_the_password():
    url = f"postgresql+psycopg://sweeper:hunter2@127.0.0.1:{free_port()}/optuna"
    with pytest.raises(StorageError) as err:
        check_storage_url(url)
    message = str(err.value)
    assert "hunter2" not in message and "***" in message
    assert "\n" not in message and "cannot connect" in message


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("not a url", "not a database URL"),
        ("nosuchdb+nodriver://u:hunter2@host/db", "no driver"),
        ("sqlite://", "in-memory"),
        ("sqlite:////nonexistent-cloudsweep-dir/x.db", "does not exist"),
    ],
)
def test_bad_url_gives_a_one_line_error(url, expected):
    with pytest.raises(StorageError) as err:
        check_storage_url(url)
    message = str(err.value)
    assert expected in message and "\n" not in message and "hunter2" not in message


@pytest.mark.postgres
@pytest.mark.parametrize("postgres_server", [{"max_connections": 8}], indirect=True)
def test_more_workers_than_the_server_has_connections_finish_the_target(postgres_server):
    """12 workers, a server that takes 8 clients: a worker holds a connection only while it
    talks to the database and waits out "too many clients"; none dies, the target is exact."""
    url, target, count = postgres_server.url, 24, 12
    optuna.create_study(study_name="crowd", storage=open_storage(url))
    children = [
        subprocess.Popen([sys.executable, "-c", SMALL_SERVER_WORKER, url, str(target)],
                         stderr=subprocess.PIPE, text=True, env=dict(os.environ))
        for _ in range(count)
    ]
    errors = [c.communicate(timeout=240)[1] for c in children]
    assert [c.returncode for c in children] == [0] * count, "\n".join(errors)

    trials = optuna.load_study(study_name="crowd", storage=open_storage(url)).trials
    assert sum(t.state == TrialState.COMPLETE for t in trials) == target
    assert all(t.state == TrialState.COMPLETE or t.user_attrs.get("failure") == "surplus"
               for t in trials)


@pytest.fixture
def silent_host():
    """A local port that accepts connections and never answers (a dead proxy, a black hole)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except (TimeoutError, OSError):
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


@pytest.mark.parametrize("command", [["status"], ["worker", "--study", "demo"]])
def test_a_silent_host_fails_in_one_line_naming_it(command, silent_host, monkeypatch):
    from typer.testing import CliRunner

    monkeypatch.setenv("SWEEP_CONNECT_TIMEOUT", "1")
    url = f"postgresql+psycopg://sweeper:hunter2@127.0.0.1:{silent_host}/optuna"
    result = CliRunner().invoke(app, [*command, "--storage", url])
    assert result.exit_code == 4, result.output  # an environment fault, not bad input
    (line,) = result.output.strip().splitlines()
    assert f"127.0.0.1:{silent_host}" in line and "hunter2" not in line and "***" in line
    assert "timeout" in line and "SWEEP_CONNECT_TIMEOUT" in line


def test_the_connect_timeout_setting_is_checked(monkeypatch):
    monkeypatch.setenv("SWEEP_CONNECT_TIMEOUT", "soon")
    with pytest.raises(StorageError, match="SWEEP_CONNECT_TIMEOUT='soon'"):
        check_storage_url(f"postgresql+psycopg://u@127.0.0.1:{free_port()}/optuna")
