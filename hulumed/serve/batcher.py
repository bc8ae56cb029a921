"""Admission and the hand-over of prepared requests to the engine, which batches them.

``Admission`` bounds the requests in flight (the caller answers 429 beyond ``max_queue``). ``Batcher`` hands
prepared requests — streamed and non-streamed alike — to the engine from worker threads, at most
``max_batch_size`` at a time; the engine's scheduler (``HFEngine``, or the vLLM backend) gathers the ones
that are waiting into one batch, so concurrent streams generate together. ``max_batch_size=1`` answers
requests one at a time. Media were read once, by ``engine.prepare`` (the visual-token limit checked there).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

from ..generation import GenerationParams, GenerationResult
from ..interface import Engine, Prepared, StreamEvent
from .metrics import ServerMetrics


class Admission:
    """Counts requests admitted and not finished; refuses beyond ``limit`` (the caller answers 429)."""

    def __init__(self, limit: int, metrics: ServerMetrics) -> None:
        self.limit = limit
        self.active = 0
        self.metrics = metrics

    def try_enter(self) -> bool:
        if self.active >= self.limit:
            return False
        self.active += 1
        self.metrics.in_flight.set(self.active)
        return True

    def leave(self) -> None:
        self.active -= 1
        self.metrics.in_flight.set(self.active)


class Batcher:
    """Runs prepared requests on the engine, ``max_batch_size`` at most at once (streams included)."""

    def __init__(self, engine: Engine, max_batch_size: int, metrics: ServerMetrics,
                 executor: ThreadPoolExecutor) -> None:
        self.engine = engine
        self.metrics = metrics
        self.executor = executor
        self.slots = threading.BoundedSemaphore(max(1, max_batch_size))
        self.running = 0
        self._count = threading.Lock()

    def _enter(self) -> None:
        self.slots.acquire()
        with self._count:
            self.running += 1
            self.metrics.batch_size.observe(self.running)

    def _leave(self) -> None:
        with self._count:
            self.running -= 1
        self.slots.release()

    def _generate(self, prepared: Prepared, params: GenerationParams) -> GenerationResult:
        self._enter()
        try:
            [result] = self.engine.generate(prepared, params)
            return result
        finally:
            self._leave()

    async def submit(self, prepared: Prepared, params: GenerationParams) -> GenerationResult:
        """The answer of one prepared conversation (batched by the engine with whatever else is running)."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, self._generate, prepared, params)

    def stream(self, prepared: Prepared, params: GenerationParams, cancel: threading.Event) -> Iterator[StreamEvent]:
        """The engine's stream events (call from a worker thread); holds one slot until the stream ends."""
        self._enter()
        try:
            yield from self.engine.stream(prepared, params, cancel=cancel)
        finally:
            self._leave()
