"""The consecutive-failure rule on a real SQLite study: which trials make a streak, the mark every
worker reads, and a new start that clears it (sweep.execution.halt)."""

from __future__ import annotations

import datetime as dt

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from sweep.execution.halt import (
    HALT_ATTR,
    Halt,
    RunHalted,
    check_halt,
    clear_halt,
    failure_streak,
    stored_halt,
)
from sweep.record import FailureKind

START = dt.datetime(2026, 1, 1)


@pytest.fixture()
def study(tmp_path):
    return optuna.create_study(study_name="s", storage=f"sqlite:///{tmp_path / 's.db'}",
                               direction="maximize")


def add_one(study, what, number_s, end_s=None):
    """A trial that ended as `what`: "ok" (complete), "pruned", a FailureKind value (FAIL, or
    COMPLETE with the worst value for oom) or "stale" (FAIL with no class); it starts at
    `number_s` seconds and ends half a second later (or at `end_s`)."""
    attrs = {}
    if what in ("ok", "pruned"):
        state = TrialState.COMPLETE if what == "ok" else TrialState.PRUNED
    elif what == "stale":
        state = TrialState.FAIL
    else:
        attrs = {"failure": what, "failure_message": f"{what} #{number_s}"}
        state = TrialState.COMPLETE if what == "oom" else TrialState.FAIL
    trial = create_trial(
        state=state, value=0.5 if state == TrialState.COMPLETE else None,
        params={"x": 0.5}, distributions={"x": FloatDistribution(0, 1)}, user_attrs=attrs,
        intermediate_values={1: 0.5} if state == TrialState.PRUNED else {},
    )
    trial.datetime_start = START + dt.timedelta(seconds=number_s)
    trial.datetime_complete = START + dt.timedelta(
        seconds=number_s + 0.5 if end_s is None else end_s)
    study.add_trial(trial)


def add(study, *ends, start=0):
    """One trial per entry, ending one second apart in the order given (see `add_one`)."""
    for i, what in enumerate(ends, start):
        add_one(study, what, i)


def streak_of(study, since=0):
    return [t.number for t in failure_streak(study.get_trials(), since)]


def test_the_streak_is_the_run_of_one_kind_at_the_end(study):
    add(study, "ok", "bug", "bug", "bug")
    assert streak_of(study) == [1, 2, 3]


def test_a_clean_end_breaks_the_streak_and_another_kind_starts_a_new_one(study):
    add(study, "bug", "bug", "pruned")
    assert streak_of(study) == []
    add(study, "bug", "oom", "oom", start=3)
    assert streak_of(study) == [4, 5]  # an OOM trial is COMPLETE and still a failure


def test_interruptions_surplus_and_stale_trials_neither_count_nor_break(study):
    add(study, "ok", "data", "interrupted", "data", "surplus", "stale", "data")
    assert streak_of(study) == [1, 3, 6]


def test_trials_count_in_the_order_they_ended_not_by_number(study):
    add_one(study, "bug", 0, end_s=10)  # trial 0 ran longest and ended last
    add(study, "bug", "ok", start=1)
    assert streak_of(study) == [0]


def test_the_mark_is_written_once_with_the_first_failure_and_read_by_everyone(study, tmp_path):
    add(study, "ok", "bug", "bug")
    assert check_halt(study, 3) is None and stored_halt(study) is None
    add(study, "bug", start=3)
    halt = check_halt(study, 3, artifact_dir=tmp_path)
    assert halt == Halt(kind=FailureKind.BUG, count=3, first_trial=1,
                        first_message="bug #1", traceback=None)
    reader = optuna.load_study(study_name="s", storage=study._storage)
    assert stored_halt(reader) == halt and check_halt(reader, None) == halt
    line = str(RunHalted("s", halt))
    assert "3 consecutive failed trials (bug)" in line and "trial 1: bug #1" in line
    assert RunHalted("s", halt).exit_code == 3


def test_no_limit_never_halts(study):
    add(study, *["bug"] * 20)
    assert check_halt(study, None) is None


def test_a_new_start_clears_the_mark_and_counts_from_the_next_trial(study):
    add(study, "bug", "bug", "bug")
    assert check_halt(study, 3) is not None
    clear_halt(study)
    assert study.user_attrs[HALT_ATTR] is None and check_halt(study, 3) is None
    add(study, "bug", "bug", start=3)
    assert check_halt(study, 3) is None  # the three before the new start do not count
    add(study, "bug", start=5)
    assert check_halt(study, 3).first_trial == 3
