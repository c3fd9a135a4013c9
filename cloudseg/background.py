"""One background thread that runs the next piece of slow output work (deflate-compressing and
writing a scene's GeoTIFFs) while the caller goes on with the next scene.

At most one task is in flight: `submit` first waits for the previous one, so memory stays bounded
(one finished scene waiting to be written), and a task's error surfaces in the caller's thread,
unchanged, at the next `submit`, `wait` or on leaving the `with` block. Tasks raise the library's
own errors (CloudsegError naming the file), so what the caller sees is what a serial loop raises.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

R = TypeVar("R")


class Background:
    def __init__(self, name: str = "cloudseg-write"):
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._last: Future | None = None

    def submit(self, fn: Callable[..., R], *args) -> Future:
        """Run `fn(*args)` in the background once the previous task has finished."""
        self.wait()
        self._last = self._pool.submit(fn, *args)
        return self._last

    def wait(self) -> None:
        """Block until the last task is done; re-raise its error here."""
        last, self._last = self._last, None
        if last is not None:
            last.result()

    def __enter__(self) -> Background:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self.wait()  # a failed last write is the caller's error
            # else: the caller's exception wins; the write still finishes before we return
        finally:
            self._pool.shutdown(wait=True)
