"""Background threads for the slow output work (encoding, deflate-compressing and writing a
scene's GeoTIFFs) while the caller goes on with the next scene.

At most `threads` tasks are in flight: `submit` first waits for the oldest when that many are
running, so memory stays bounded (that many finished scenes waiting to be written), and a task's
error surfaces in the caller's thread, unchanged, at a later `submit`, at `wait` or on leaving
the `with` block. Tasks raise the library's own errors (CloudsegError naming the file), so what
the caller sees is what a serial loop raises.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import Any, TypeVar

R = TypeVar("R")


class Background:
    """A bounded pool of writer threads whose errors surface in the caller (module docstring)."""

    def __init__(self, name: str = "cloudseg-write", threads: int = 1) -> None:
        self.threads = max(1, threads)
        self._pool = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix=name)
        self._running: deque[Future] = deque()

    def submit(self, fn: Callable[..., R], *args: Any) -> Future[R]:
        """Run `fn(*args)` in the background once fewer than `threads` tasks are in flight."""
        while len(self._running) >= self.threads:
            self._running.popleft().result()  # re-raises the oldest task's error here
        future = self._pool.submit(fn, *args)
        self._running.append(future)
        return future

    def wait(self) -> None:
        """Block until every task is done; re-raise the first error here."""
        while self._running:
            self._running.popleft().result()

    def __enter__(self) -> Background:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc_type is None:
                self.wait()  # a failed last write is the caller's error
            # else: the caller's exception wins; running writes still end before we return
        finally:
            self._pool.shutdown(wait=True)
