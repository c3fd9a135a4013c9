"""Many workers, one PostgreSQL server: start N worker processes (default 90) at once against a
server with its default `max_connections` (100) and check that the study reaches its target
with every worker alive.

Each worker is what `sweep worker` runs underneath (sweep.storage.open_storage with heartbeats,
sweep.execution.target.run_to_target for the exact study-wide target) with a trivial trial that
sleeps
`--trial-seconds`, so the bench measures the storage, not training: CPU need is modest (each
process imports optuna + SQLAlchemy once, then mostly sleeps). It prints how many workers
exited 0, the finished count against the target, the trials that failed for a reason other than
"surplus", the wall time and the peak number of server connections seen.

    python bench/many_workers.py                          # a private server, max_connections=100
    python bench/many_workers.py --storage postgresql+psycopg://postgres@127.0.0.1:55432/postgres
    python bench/many_workers.py --workers 30 --target 60 --trial-seconds 1

Before the NullPool/backoff storage settings, 73 of 90 such workers died at start with
"sorry, too many clients already".
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WORKER = """
import sys, time
import optuna
from sweep.storage import open_storage
from sweep.execution.target import run_to_target
optuna.logging.set_verbosity(optuna.logging.ERROR)
url, name, target, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
storage = open_storage(url, heartbeat_interval=2, grace_period=30)
study = optuna.load_study(study_name=name, storage=storage)
def objective(trial):
    x = trial.suggest_float("x", 0, 1)
    time.sleep(seconds)
    trial.report(x, 1)
    return x
run_to_target(study, objective, target, poll_s=1.0, shown_storage=name)
"""


def watch_connections(url: str, stop: threading.Event, peak: list[int]) -> None:
    """Poll pg_stat_activity every half second (this connection included) for the peak count."""
    import sqlalchemy

    from sweep.connections import server_engine_kwargs

    engine = sqlalchemy.create_engine(url, **server_engine_kwargs(url))
    query = sqlalchemy.text("SELECT count(*) FROM pg_stat_activity WHERE backend_type = "
                            "'client backend'")
    while not stop.wait(0.5):
        try:
            with engine.connect() as conn:
                peak[0] = max(peak[0], int(conn.execute(query).scalar_one()))
        except sqlalchemy.exc.OperationalError:
            continue  # the server is full right now: that is the point
    engine.dispose()


def run(url: str, workers: int, target: int, seconds: float) -> int:
    import optuna
    from optuna.trial import TrialState

    from sweep.storage import open_storage

    name = f"many-{uuid.uuid4().hex[:8]}"
    optuna.create_study(study_name=name, storage=open_storage(url))
    peak, stop = [0], threading.Event()
    watcher = threading.Thread(target=watch_connections, args=(url, stop, peak), daemon=True)
    watcher.start()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    started = time.monotonic()
    procs = [
        subprocess.Popen([sys.executable, "-c", WORKER, url, name, str(target), str(seconds)],
                         env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for _ in range(workers)
    ]
    errors = [p.communicate()[1] for p in procs]
    wall = time.monotonic() - started
    stop.set()
    watcher.join()

    trials = optuna.load_study(study_name=name, storage=open_storage(url)).trials
    complete = sum(t.state == TrialState.COMPLETE for t in trials)
    other = [t for t in trials if t.state != TrialState.COMPLETE
             and t.user_attrs.get("failure") != "surplus"]
    ok = sum(p.returncode == 0 for p in procs)
    print(f"workers: {workers} started, {ok} exited 0, {workers - ok} lost")
    print(f"trials: {complete}/{target} complete, {len(other)} failed other than surplus "
          f"(retried by heartbeat), {len(trials)} in all")
    print(f"wall: {wall:.1f} s; peak server connections seen: {peak[0]}")
    for err in {e.strip().splitlines()[-1] for e, p in zip(errors, procs, strict=True)
                if p.returncode}:
        print(f"  a lost worker said: {err}")
    return 0 if ok == workers and complete == target else 1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--storage", help="a PostgreSQL URL (default: a private server, "
                   "max_connections=100)")
    p.add_argument("--workers", type=int, default=90)
    p.add_argument("--target", type=int, default=180)
    p.add_argument("--trial-seconds", type=float, default=2.0)
    a = p.parse_args()
    if a.storage:
        return run(a.storage, a.workers, a.target, a.trial_seconds)
    from tests.fixtures.storage import PostgresServer, _server_user, pg_bindir

    bindir = pg_bindir()
    if bindir is None:
        sys.exit("no PostgreSQL server binaries (initdb, pg_ctl); pass --storage URL")
    server = PostgresServer(bindir, _server_user(), {"max_connections": 100})
    try:
        server.init()
        server.start()
        return run(server.url, a.workers, a.target, a.trial_seconds)
    finally:
        server.cleanup()


if __name__ == "__main__":
    sys.exit(main())
