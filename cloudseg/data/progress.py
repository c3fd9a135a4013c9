"""Parallel map with an optional rich progress bar, shared by indexing and cache building.
Threads, not processes: rasterio/GDAL release the GIL while decoding, and no data is pickled.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    """Threads for file work: I/O bound, so a few per core (at most 16)."""
    return min(16, 4 * (os.cpu_count() or 2))


def parallel_map(fn: Callable[[T], R], items: Iterable[T], total: int, description: str,
                 progress: bool = False, workers: int | None = None) -> Iterator[R]:
    """`map(fn, items)` in order on a thread pool, ticking a progress bar when asked."""
    with ThreadPoolExecutor(max_workers=workers or default_workers()) as pool:
        results = pool.map(fn, items)
        if not progress:
            yield from results
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        columns = (f"[bold]{description}", BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), TimeRemainingColumn())
        with Progress(*columns, transient=False) as bar:
            task = bar.add_task(description, total=total)
            for result in results:
                bar.advance(task)
                yield result
