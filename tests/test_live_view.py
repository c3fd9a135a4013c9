"""The live view's pace line (elapsed, trials/hour, ETA from the trials' own durations) and
its finished-trials log lines, on real Optuna FrozenTrials."""

from __future__ import annotations

import datetime as dt

from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from sweep.execution.pace import clock, finished_line, pace_text
from sweep.execution.progress import render

T0 = dt.datetime(2026, 1, 1, 12, 0, 0)


def _trial(number, minutes, state=TrialState.COMPLETE, value=0.7, start=0, **attrs):
    t = create_trial(
        state=state, value=value if state == TrialState.COMPLETE else None,
        params={"optim.lr": 0.01}, distributions={"optim.lr": FloatDistribution(0.001, 0.1)},
        intermediate_values={1: 0.5, 2: value}, user_attrs=attrs,
    )
    t.number = number
    t.datetime_start = T0 + dt.timedelta(minutes=start)
    t.datetime_complete = (None if state == TrialState.RUNNING
                           else t.datetime_start + dt.timedelta(minutes=minutes))
    return t


def test_the_eta_is_the_remaining_trials_at_their_mean_duration_per_running_slot():
    trials = [_trial(0, 10), _trial(1, 20, start=10),
              _trial(2, 99, confirms=0)]  # a confirmation's duration is not a search trial's
    now = T0 + dt.timedelta(minutes=30)
    text = pace_text(trials, started=T0, now=now, remaining=6, running=2)
    # mean search-trial duration 15 min, 6 left, 2 at a time: 45 min; 3 finished in 30 min
    assert text == "elapsed 30m00s · 6.0 trials/h · ETA 45m00s"
    assert pace_text([], T0, now, 6, 1) == "elapsed 30m00s · ETA after the first finished trial"
    assert clock(3725) == "1h02m" and clock(9) == "9s"


def test_finished_lines_name_confirmations_and_failures():
    line = finished_line(_trial(3, 2, value=0.78125), epochs=5)
    assert line == "trial 3 complete · value 0.7812 · epoch 2/5 · in 2m00s · optim.lr=0.01"
    assert finished_line(_trial(7, 1, confirms=3), 5).startswith("confirmation of #3 7 complete")
    pruned = finished_line(_trial(4, 1, state=TrialState.PRUNED, value=0.4), 5)
    assert pruned.startswith("trial 4 pruned · last 0.4000 · epoch 2/5")
    failed = finished_line(_trial(5, 1, state=TrialState.FAIL, failure="oom",
                                  failure_message="CUDA out of memory\nmore"), 5)
    assert "trial 5 failed (oom)" in failed and failed.endswith("· CUDA out of memory")


def test_the_view_shows_the_pace_line_and_marks_running_confirmations():
    from rich.console import Console

    running = _trial(9, 0, state=TrialState.RUNNING, confirms=2)
    snap = {"complete": 1, "pruned": 0, "failed": 0, "confirmations": 0, "failures": {},
            "best": None, "running": [running], "trials": [_trial(0, 10), running]}
    console = Console(width=120, record=True)
    console.print(render("demo", snap, 4, 5, started=T0))
    text = console.export_text()
    assert "elapsed" in text and "ETA" in text and "9 (confirms #2)" in text
