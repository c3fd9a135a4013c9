"""Scene-disjoint train/val split and the seeded, stratified training subset. Neighbouring
patches of one scene look alike, so a random patch split (the write-up's 6000/2400) leaks; we
hold out whole scenes. The subset keeps the class ratio so trials stay comparable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cloudseg.data.index import PatchRecord
from cloudseg.errors import ConfigError

# Strata of cloud fraction: clear, a little, ..., overcast.
STRATA_EDGES = (0.0, 0.05, 0.2, 0.4, 0.6, 0.8, 0.95, 1.0)


@dataclass(frozen=True)
class Split:
    """Training and validation rows of a cache, split by scene."""

    train: np.ndarray  # int64 rows of the cache
    val: np.ndarray
    train_scenes: tuple[str, ...]
    val_scenes: tuple[str, ...]


def split_by_scene(records: Sequence[PatchRecord], val_fraction: float, seed: int) -> Split:
    """Hold out round(val_fraction * n_scenes) whole scenes (at least one on each side)."""
    if not 0 < val_fraction < 1:
        raise ConfigError(f"val_fraction must be in (0, 1), got {val_fraction}")
    scenes = sorted({r.id.scene for r in records})
    if len(scenes) < 2:
        raise ConfigError(f"a scene-disjoint split needs at least 2 scenes, got {len(scenes)}: "
                          f"{scenes}")
    order = np.random.default_rng(seed).permutation(len(scenes))
    n_val = min(max(1, round(val_fraction * len(scenes))), len(scenes) - 1)
    val_scenes = {scenes[k] for k in order[:n_val]}
    is_val = np.array([r.id.scene in val_scenes for r in records], dtype=bool)
    rows = np.arange(len(records), dtype=np.int64)
    return Split(rows[~is_val], rows[is_val],
                 tuple(s for s in scenes if s not in val_scenes), tuple(sorted(val_scenes)))


def stratum(cloud_fraction: float) -> int:
    """Index of the cloud-fraction stratum (0 = clear, last = overcast)."""
    if cloud_fraction <= 0.0:
        return 0
    if cloud_fraction >= 1.0:
        return len(STRATA_EDGES)
    return int(np.searchsorted(STRATA_EDGES, cloud_fraction, side="left"))


def resample(records: Sequence[PatchRecord], indices: Sequence[int] | np.ndarray,
             fraction: float, seed: int, drop_empty: bool = False) -> np.ndarray:
    """A seeded subset of `indices` holding `fraction` of them, drawn per cloud-fraction
    stratum (largest remainders) so the subset keeps the class ratio. Sorted int64 rows.
    """
    if not 0 < fraction <= 1:
        raise ConfigError(f"fraction must be in (0, 1], got {fraction}")
    pool = np.asarray(indices, dtype=np.int64)
    if drop_empty:
        pool = pool[[records[i].nonempty for i in pool]] if pool.size else pool
    if pool.size == 0:
        return pool
    missing = [records[i].name for i in pool if records[i].cloud_fraction is None]
    if missing:
        raise ConfigError(f"resample needs cloud fractions (training patches); {missing[0]} "
                          f"and {len(missing) - 1} more have none")
    strata = np.array([stratum(records[i].cloud_fraction) for i in pool])
    target = max(1, round(fraction * pool.size))
    groups = [pool[strata == s] for s in np.unique(strata)]
    exact = np.array([fraction * g.size for g in groups])
    take = np.floor(exact).astype(int)
    order = np.argsort(-(exact - take), kind="stable")
    take[order[: target - take.sum()]] += 1
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(g, size=k, replace=False) for g, k in zip(groups, take, strict=True)]
    return np.sort(np.concatenate(chosen)).astype(np.int64)
