"""The hard-case panel: hand-made patches land in the trait they were made for, a mostly
no-data patch is never chosen however hard it looks, and the panel is the same every time it
is asked for (and kept beside the cache)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from cloudseg.data import PatchCache, PatchId, PatchRecord
from cloudseg.data.panel import MIN_VALID, choose_panel, panel_for

S = 384


def _patch(kind: str):
    img = np.full((4, S, S), 1000, np.uint16)
    gt = np.zeros((S, S), np.uint8)
    if kind in ("stripes", "stripes2"):  # many cloud edges
        gt[:, (np.arange(S) // 8) % 2 == 1] = 1
        img[:, gt.astype(bool)] = 5000
    elif kind == "snow":  # bright, clear
        img[:] = 20000
    elif kind == "thin":  # cloud barely brighter than the ground
        gt[100:300, 100:300] = 1
        img[:, 100:300, 100:300] = 1100
    elif kind == "bright-cloud":
        gt[:200] = 1
        img[:, :200] = 30000
    elif kind == "mostly-nodata-stripes":  # edges everywhere, but 60 % no-data
        gt[:, (np.arange(S) // 4) % 2 == 1] = 1
        img[:, gt.astype(bool)] = 30000
        img[:, : int(S * 0.6)] = 0
        gt[: int(S * 0.6)] = 0
    elif kind == "plain":
        pass
    return img, gt


def _cache(kinds, tmp_path) -> PatchCache:
    pairs = [_patch(k) for k in kinds]
    records = [PatchRecord(PatchId("SCENE", i, 0, i + 1), {}, True, None)
               for i in range(len(kinds))]
    return PatchCache(tmp_path, tmp_path, records, np.stack([p[0] for p in pairs]),
                      np.stack([p[1] for p in pairs]), fingerprint="hand-made")


def test_each_trait_finds_its_patch_and_mostly_nodata_is_never_chosen(tmp_path):
    kinds = ["plain", "stripes", "stripes2", "snow", "thin", "bright-cloud",
             "mostly-nodata-stripes"]
    cache = _cache(kinds, tmp_path)
    panel = choose_panel(cache, range(len(kinds)), size=8)
    reason = {kinds[p.row]: p.reason for p in panel}
    assert reason["stripes"] == reason["stripes2"] == "cloud edges"
    assert reason["snow"] == "bright clear ground"
    assert reason["thin"] == "thin clouds"
    assert "mostly-nodata-stripes" not in reason
    for p in panel:  # reference: the share of pixels with any non-zero band, at full resolution
        assert (cache.images[p.row] != 0).any(axis=0).mean() >= MIN_VALID
    assert len({p.row for p in panel}) == len(panel)


def test_the_panel_is_the_same_every_time_and_kept_beside_the_cache(synthetic_cache, tmp_path):
    cache = replace(synthetic_cache, path=tmp_path)  # its own folder for the kept file
    rows = range(len(cache.records))
    first = panel_for(cache, rows, size=6)
    assert list(tmp_path.glob("panel-*.json"))
    assert panel_for(cache, reversed(rows), size=6) == first == choose_panel(cache, rows, 6)
    assert 0 < len(first) <= 6
    for p in first:
        assert (cache.images[p.row] != 0).any(axis=0).mean() >= MIN_VALID
        assert p.patch == cache.records[p.row].name
