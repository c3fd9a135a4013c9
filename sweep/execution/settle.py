"""Stop the search when the answer is settled (a spec's `stop_search`).

A search that keeps proposing configs no better than the leader only spends GPU time. The rule
needs to know what "no better" means, and the confirmation runs measure it: the run-to-run
noise sd of one config (the pooled sd of the confirmation runs so far). After `min_trials`
search trials the leader's config gets its first racing round early (the probe); once the noise
is known and none of the last `patience` complete search trials came within one noise sd of the
leader's search value, the study records why (`search_stopped`), no further search trial
starts, and the race of the top configs begins. Off unless the spec asks for it.
"""

from __future__ import annotations

import math
import statistics
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, ValidationError

from sweep.execution.confirm import confirms, search_trials, top_trials
from sweep.record import TrialRecord, failure_of, to_attrs

if TYPE_CHECKING:
    import optuna

    from sweep.study.spec import Confirm, StopSearch

STOPPED_ATTR = "search_stopped"


class SearchStopped(BaseModel):
    """Why the search ended before its target: the rule's figures when it fired."""

    model_config = ConfigDict(frozen=True)
    after_trials: int  # complete search trials when it fired
    leader: int
    leader_value: float
    noise_sd: float
    patience: int

    def line(self) -> str:
        """One sentence for the run summary and `sweep status`."""
        return (f"search stopped after {self.after_trials} complete trials: none of the last "
                f"{self.patience} came within the run-to-run noise (sd {self.noise_sd:.4f}, from "
                f"the confirmation runs) of the leader, trial {self.leader} "
                f"({self.leader_value:.4f})")


def stored_stop(study: optuna.Study) -> SearchStopped | None:
    """The stop a worker recorded, if any."""
    raw = study.user_attrs.get(STOPPED_ATTR)
    try:
        return SearchStopped.model_validate(raw) if raw else None
    except ValidationError:
        return None


def noise_sd(study: optuna.Study) -> float | None:
    """Pooled within-config sd of the clean confirmation runs (None before any config has two)."""
    from optuna.trial import TrialState

    by_config: dict[int, list[float]] = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if (origin := confirms(t)) is not None and failure_of(t) is None and t.value is not None:
            by_config.setdefault(origin, []).append(float(t.value))
    groups = [v for v in by_config.values() if len(v) > 1]
    if not groups:
        return None
    ss = sum(statistics.variance(v) * (len(v) - 1) for v in groups)
    return math.sqrt(ss / sum(len(v) - 1 for v in groups))


def _complete_search(study: optuna.Study) -> list[Any]:
    from optuna.trial import TrialState

    done = search_trials(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    done = [t for t in done if t.value is not None and failure_of(t) is None]
    return sorted(done, key=lambda t: (t.datetime_complete, t.number))


def probe(study: optuna.Study, rule: StopSearch, confirm: Confirm) -> int:
    """Queue the leader's first round once the search has `min_trials` complete trials and no
    confirmation exists yet; returns how many runs were queued.
    """
    done = _complete_search(study)
    if len(done) < rule.min_trials or any(confirms(t) is not None for t in study.get_trials(
            deepcopy=False)):
        return 0
    leader = top_trials(study, 1)[0]
    for repeat in range(1, max(2, confirm.repeats) + 1):
        marks = TrialRecord(confirms=leader.number, confirm_repeat=repeat)
        study.enqueue_trial(leader.params, user_attrs=to_attrs(marks))
    return max(2, confirm.repeats)


def check_settled(study: optuna.Study, rule: StopSearch | None) -> SearchStopped | None:
    """The recorded stop, else a new one (written to the study) once the rule fires."""
    if rule is None:
        return None
    if (stop := stored_stop(study)) is not None:
        return stop
    sd = noise_sd(study)
    done = _complete_search(study)
    if sd is None or len(done) < rule.min_trials + rule.patience:
        return None
    maximize = study.direction.name == "MAXIMIZE"
    leader = top_trials(study, 1)[0]
    sign = 1.0 if maximize else -1.0
    recent = [t for t in done[-rule.patience:] if t.number != leader.number]
    if len(recent) < rule.patience or any(
            sign * (float(t.value) - float(leader.value)) > -sd for t in recent):
        return None
    stop = SearchStopped(after_trials=len(done), leader=leader.number,
                         leader_value=float(leader.value), noise_sd=sd, patience=rule.patience)
    study.set_user_attr(STOPPED_ATTR, stop.model_dump(mode="json"))
    return stop
