"""A fixed panel of hard validation patches: the same few patches for every run of a study.

Random validation patches are mostly easy (clear sea, solid cloud) and every model gets them
right; the patches that tell models apart are cloud edges, thin (dim) clouds, bright clear
ground (snow, sand, bright cities) that a weak model calls cloud, bright clouds, and a scene's
no-data border. `choose_panel` ranks the validation patches by each of those traits and takes
the top ones, never a patch that is mostly no-data. Each patch's traits are measured while
`prepare` packs it (cloudseg.data.sums), so choosing is a sort, not a pass over the pixels. It
is a function of the data and the split alone (ties broken by row), so every process that asks
gets the same panel; the result is kept beside the packed cache, so a study computes it once.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from cloudseg.data.cache import PatchCache
from cloudseg.data.sums import Traits, ensure_sums

MIN_VALID = 0.5  # never a patch that is mostly no-data
# (trait, picks): cloud edges first, they separate models most often.
TRAITS = (("cloud edges", 2), ("thin clouds", 1), ("bright clear ground", 1),
          ("bright clouds", 1), ("no-data border", 1))
PANEL_SIZE = 6


@dataclass(frozen=True)
class PanelPatch:
    """One patch of the hard-case panel and the trait it stands for."""

    row: int  # row of the packed cache
    patch: str  # the 38-Cloud patch name (stable across machines)
    reason: str  # the trait it was picked for


def _score(trait: str, t: Traits) -> float | None:
    """How strongly a patch shows `trait` (higher is harder); None when it does not qualify."""
    if trait == "cloud edges":
        return t.edges if t.edges > 0 else None
    if trait == "thin clouds":  # cloud that is dim next to the patch's clear ground
        return -(t.cloud_brightness - t.clear_brightness) if 0.05 <= t.cloud <= 0.95 else None
    if trait == "bright clear ground":
        return t.clear_brightness if t.cloud < 0.05 else None
    if trait == "bright clouds":
        return t.cloud_brightness if t.cloud >= 0.05 else None
    if trait == "no-data border":
        return t.edges + t.cloud if t.valid < 0.98 else None
    raise ValueError(trait)


def choose_panel(
    cache: PatchCache, val_rows: Iterable[int], size: int = PANEL_SIZE
) -> list[PanelPatch]:
    """Up to `size` validation patches, a few per trait (TRAITS), each patch at most once."""
    rows = [int(r) for r in val_rows if cache.records[int(r)].nonempty]
    table = ensure_sums(cache.path, cache.images, cache.masks)["traits"]  # made while packing
    traits = {r: Traits(*(float(v) for v in table[r])) for r in rows}
    usable = [r for r in rows if traits[r].valid >= MIN_VALID]
    chosen: list[PanelPatch] = []
    taken: set[int] = set()
    quota = dict(TRAITS)
    for _ in range(2):  # a second round fills what a trait could not (no snow in the split)
        for trait, _count in TRAITS:
            scored = sorted(((s, -r) for r in usable if r not in taken
                             and (s := _score(trait, traits[r])) is not None), reverse=True)
            for _s, neg_row in scored[: quota[trait]]:
                if len(chosen) < size:
                    chosen.append(PanelPatch(-neg_row, cache.records[-neg_row].name, trait))
                    taken.add(-neg_row)
                    quota[trait] -= 1
        quota = {t: size for t, _ in TRAITS}
        if len(chosen) >= size:
            break
    return chosen


def panel_for(
    cache: PatchCache, val_rows: Iterable[int], size: int = PANEL_SIZE
) -> list[PanelPatch]:
    """`choose_panel`, computed once per cache and split and kept beside the cache."""
    rows = sorted(int(r) for r in val_rows)
    key = hashlib.sha256(json.dumps([cache.fingerprint, rows, size]).encode()).hexdigest()[:16]
    path = Path(cache.path) / f"panel-{key}.json"
    if path.is_file():
        return [PanelPatch(**p) for p in json.loads(path.read_text())]
    panel = choose_panel(cache, rows, size)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps([asdict(p) for p in panel]))
        os.replace(tmp, path)  # another process computing the same panel writes the same file
    except OSError:
        pass  # a read-only cache: recomputed next time, same result
    return panel
