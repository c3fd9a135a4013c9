"""`TrialSeeded`: a sampler whose random state is re-derived before each trial from (spec seed,
trial number). Trial numbers are unique study-wide, so a resumed run, a second process or a
worker on another machine continues where the study is instead of replaying the seeded
start-up draws, while one uninterrupted run stays reproducible from the spec's seed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from optuna.samplers import BaseSampler

if TYPE_CHECKING:
    import numpy as np
    from optuna import Study
    from optuna.distributions import BaseDistribution
    from optuna.trial import FrozenTrial, TrialState


def trial_seed(seed: int, number: int, part: str = "") -> int:
    """A 32-bit seed for trial `number` of a study seeded `seed` (`part` names one of the
    sampler's random states, so they stay independent of each other).
    """
    digest = hashlib.sha256(f"cloudsweep:{seed}:{number}:{part}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def _random_states(
    sampler: BaseSampler, prefix: str = "", depth: int = 0
) -> Iterator[tuple[str, np.random.RandomState]]:
    """(path, numpy RandomState) of every random state a sampler holds, its inner samplers'
    included. Optuna's samplers keep theirs in LazyRandomState attributes (`_rng`, `_cma_rng`)
    and their fallbacks in `_random_sampler` / `_independent_sampler`.
    """
    import numpy as np
    from optuna.samplers._lazy_random_state import LazyRandomState

    for name, value in sorted(vars(sampler).items()):
        path = f"{prefix}{name}"
        if isinstance(value, LazyRandomState):
            yield path, value.rng
        elif isinstance(value, np.random.RandomState):
            yield path, value
        elif isinstance(value, BaseSampler) and depth < 4:
            yield from _random_states(value, f"{path}.", depth + 1)


PROPOSAL_ATTR = "cloudsweep:relative_proposal"
_MISSING = object()


class TrialSeeded(BaseSampler):
    """A sampler whose randomness is a function of (seed, trial number), not of the process.

    Before each trial every random state of the wrapped sampler is seeded from
    `trial_seed(seed, trial.number, attribute)`; the wrapped sampler does the rest (TPE's model,
    the grid's bookkeeping, CMA-ES's state in the storage). Optuna's samplers draw from their
    random state only while a trial is being sampled, so one trial's draws depend on its number
    and the study's history alone. One sampler object serves one thread at a time (a worker).
    """

    def __init__(self, sampler: Any, seed: int) -> None:
        self.sampler = sampler
        self.seed = int(seed)

    def __repr__(self) -> str:
        return f"TrialSeeded({type(self.sampler).__name__}, seed={self.seed})"

    def _reseed(self, number: int) -> None:
        for path, state in _random_states(self.sampler):
            state.seed(trial_seed(self.seed, number, path))

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        """Reseed the wrapped sampler from (seed, trial number), then let it prepare."""
        self._reseed(trial.number)
        self.sampler.before_trial(study, trial)

    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        """The wrapped sampler's joint search space."""
        return self.sampler.infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        """The wrapped sampler's joint proposal, unless another live or finished trial already
        holds it: GP and CMA-ES have no constant liar, so workers asking at the same moment
        would all get the model's one optimum. Then this trial draws independently instead.
        """
        proposal = self.sampler.sample_relative(study, trial, search_space)
        if not proposal:
            return proposal
        key = sorted(proposal.items())
        for other in study.get_trials(deepcopy=False):
            held = other.system_attrs.get(PROPOSAL_ATTR)
            same_params = all(other.params.get(k, _MISSING) == v for k, v in key)
            if other.number != trial.number and (same_params or held == [list(p) for p in key]):
                return {}
        # Recorded at once (before any suggest stores the params) for trials asked meanwhile.
        # Optuna has no public way for a sampler to annotate the trial it is sampling.
        study._storage.set_trial_system_attr(trial._trial_id, PROPOSAL_ATTR,
                                             [list(p) for p in key])
        return proposal

    def sample_independent(
        self,
        study: Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        """The wrapped sampler's draw for one parameter."""
        return self.sampler.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(
        self,
        study: Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        """Pass the finished trial on to the wrapped sampler."""
        self.sampler.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        """Nothing to do: Optuna calls this so that copies of one sampler (threads, n_jobs > 1)
        stop drawing alike; per-trial seeds already differ between trials.
        """

    def __getattr__(self, name: str) -> Any:  # e.g. GridSampler.is_exhausted
        if name.startswith("_") or name in ("sampler", "seed"):
            raise AttributeError(name)
        return getattr(self.sampler, name)
