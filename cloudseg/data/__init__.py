"""The 38-Cloud / 95-Cloud data layer: layout, validated index, packed cache, dataset, splits,
statistics (per-subset moments from per-patch sums kept beside the cache) and a synthetic data
set in the real format. Import names from here.

`PatchDataset` needs torch and is imported on first use, so `import cloudseg.data` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cloudseg.data.cache import PatchCache, default_cache_dir, open_cache, prepare_cache
from cloudseg.data.index import PatchRecord, index_dataset
from cloudseg.data.layout import (
    BANDS,
    GT,
    PATCH_SIZE,
    DatasetLayout,
    PatchId,
    find_layout,
    format_patch_name,
    parse_patch_name,
    scene_grid,
)
from cloudseg.data.moments import SubsetMoments, subset_moments
from cloudseg.data.splits import Split, resample, split_by_scene
from cloudseg.data.stats import DataStats, compute_stats, plot_stats
from cloudseg.data.synthetic import write_synthetic
from cloudseg.data.tiff import read_band, write_band

if TYPE_CHECKING:
    from cloudseg.data.dataset import PatchDataset

__all__ = [
    "BANDS", "GT", "PATCH_SIZE", "DataStats", "DatasetLayout", "PatchCache", "PatchDataset",
    "PatchId", "PatchRecord", "Split", "SubsetMoments", "compute_stats", "default_cache_dir",
    "find_layout", "format_patch_name", "index_dataset", "open_cache", "parse_patch_name",
    "plot_stats", "prepare_cache", "read_band", "resample", "scene_grid", "split_by_scene",
    "subset_moments", "write_band", "write_synthetic",
]


def __getattr__(name: str) -> type[PatchDataset]:
    if name == "PatchDataset":
        from cloudseg.data.dataset import PatchDataset

        return PatchDataset
    raise AttributeError(f"module 'cloudseg.data' has no attribute {name!r}")
