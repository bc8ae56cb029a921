"""Gathers concurrent requests into engine batches.

The first waiting request opens a batch; requests arriving within ``max_wait_ms`` join it up to
``max_batch_size``; requests with identical generation parameters are answered by one ``engine.generate``
call (left-padded batch) in a worker thread, so the event loop keeps accepting requests meanwhile; media are
read once, by that call (the visual-token limit is checked there too). If a batch fails, its requests are
retried one by one so only the bad one fails. Admission (the bounded queue, 429) is
decided by ``Admission`` before a request gets here.
"""

from __future__ import annotations

import asyncio
import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from ..generation import GenerationParams, GenerationResult
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


@dataclass
class _Job:
    conversation: list[dict[str, Any]]
    params: GenerationParams
    future: asyncio.Future = field(repr=False)
    key: str = ""


class Batcher:
    def __init__(self, engine: Any, max_batch_size: int, max_wait_ms: float, metrics: ServerMetrics,
                 executor: ThreadPoolExecutor, max_visual_tokens: int | None = None) -> None:
        self.engine = engine
        self.max_visual_tokens = max_visual_tokens
        self.max_batch_size = max(1, max_batch_size)
        self.max_wait = max_wait_ms / 1000
        self.metrics = metrics
        self.executor = executor
        self.queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def submit(self, conversation: list[dict[str, Any]], params: GenerationParams) -> GenerationResult:
        future = asyncio.get_running_loop().create_future()
        job = _Job(conversation, params, future, json.dumps(asdict(params), sort_keys=True))
        self.queue.put_nowait(job)
        self.metrics.queue_depth.set(self.queue.qsize())
        return await future

    async def _loop(self) -> None:
        while True:
            first = await self.queue.get()
            batch = [first]
            deadline = time.monotonic() + self.max_wait
            while len(batch) < self.max_batch_size:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self.queue.get(), remaining))
                except asyncio.TimeoutError:
                    break
            self.metrics.queue_depth.set(self.queue.qsize())
            groups: dict[str, list[_Job]] = {}
            for job in batch:
                if not job.future.cancelled():
                    groups.setdefault(job.key, []).append(job)
            for jobs in groups.values():
                await self._run(jobs)

    async def _run(self, jobs: list[_Job]) -> None:
        loop = asyncio.get_running_loop()
        self.metrics.batch_size.observe(len(jobs))
        try:
            results = await loop.run_in_executor(
                self.executor, self.engine.generate, [j.conversation for j in jobs], jobs[0].params, len(jobs),
                self.max_visual_tokens,
            )
        except Exception as error:  # noqa: BLE001 - delivered to the waiting request(s)
            if len(jobs) > 1:
                for job in jobs:
                    await self._run([job])
                return
            if not jobs[0].future.done():
                jobs[0].future.set_exception(error)
            return
        for job, result in zip(jobs, results):
            if not job.future.done():
                job.future.set_result(result)
