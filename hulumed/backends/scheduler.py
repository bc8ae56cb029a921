"""The transformers backends' scheduler: one thread owns the model, callers from any thread queue rows.

    scheduler = Scheduler(run=engine._run, options=engine.options)
    submission = scheduler.submit(rows, params)     # from any thread
    submission.finished.wait()                      # results / error set by the runner or the scheduler

* **Admission.** The thread gathers what is waiting (up to ``options.batch_size`` rows, waiting at most
  ``options.batch_wait_ms`` for more) whose generation parameters are identical and whose left-padded size
  (rows x longest prompt) stays within ``options.max_batch_tokens``; a request with a ``seed`` runs alone so its
  samples are reproducible. ``token_groups`` splits one call's rows the same way.
* **Failure isolation.** A batch whose run raises is retried submission by submission (each alone), so only the
  bad request fails; submissions that already streamed text are failed rather than answered twice.
* **Lifetime.** ``close`` ends the thread once queued work is done; the next ``submit`` starts a new one. It
  runs at interpreter exit too (a daemon thread still inside torch at finalization can abort the process).

It knows rows only by their prompt length; what a row holds and how a batch runs is the engine's (``run``).
"""

from __future__ import annotations

import atexit
import queue
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..detokenizer import IncrementalDetokenizer
from ..generation import GenerationParams, GenerationResult
from ..interface import LoadOptions


@dataclass(eq=False)  # identity: rows hold tensors, which == would compare element-wise
class Row:
    """One conversation on its way through the scheduler."""

    inputs: dict[str, Any]  # processor outputs of this conversation alone, on the model's device (reduced ids)
    prompt_tokens: int
    visual_tokens: int
    slots: int = 0  # the processor's visual placeholders (before inter-frame reduction)
    cancel: threading.Event | None = None
    events: queue.Queue | None = None  # stream rows: StreamDelta / StreamFinal / BaseException
    ids: list[int] = field(default_factory=list)
    shown: str = ""
    done: bool = False
    cancelled: bool = False
    detok: IncrementalDetokenizer | None = None  # stream rows: the answer's text so far


@dataclass(eq=False)  # identity: the scheduler removes submissions from its waiting list by identity
class Submission:
    """Rows of one ``generate`` / ``stream`` call; answered together."""

    rows: list[Row]
    params: GenerationParams
    key: str
    results: list[GenerationResult] | None = None
    error: BaseException | None = None
    finished: threading.Event = field(default_factory=threading.Event)
    solo: bool = False

    @property
    def streamed_anything(self) -> bool:
        return any(row.shown for row in self.rows)

    def fail(self, error: BaseException) -> None:
        """Answer every caller of this submission with ``error`` (stream rows get it as their next event)."""
        self.error = error
        for row in self.rows:
            if row.events is not None:
                row.events.put(error)
        self.finished.set()


def fits(lengths: list[int], max_batch_tokens: int) -> bool:
    """Whether rows of these prompt lengths may share a left-padded batch: rows x longest <= ``max_batch_tokens``
    (one row always fits: it runs alone, unpadded)."""
    return len(lengths) <= 1 or len(lengths) * max(lengths) <= max_batch_tokens


def token_groups(prompt_tokens: list[int], options: LoadOptions) -> list[list[int]]:
    """Row indices in batches of at most ``batch_size`` rows and ``max_batch_tokens`` padded tokens (rows x
    longest prompt), rows of similar length together (sorted by length; callers keep the input order)."""
    size = max(1, options.batch_size)
    groups: list[list[int]] = []
    for index in sorted(range(len(prompt_tokens)), key=lambda i: prompt_tokens[i]):
        group = groups[-1] if groups else None
        lengths = [prompt_tokens[i] for i in (group or [])] + [prompt_tokens[index]]
        if group is not None and len(group) < size and fits(lengths, options.max_batch_tokens):
            group.append(index)
        else:
            groups.append([index])
    return groups


class Scheduler:
    """The thread that owns the model: batches submissions and hands each batch to ``run``."""

    def __init__(self, run: Callable[[list[Submission]], None], options: LoadOptions) -> None:
        self._run = run
        self.options = options
        self._waiting: list[Submission] = []
        self._wakeup = threading.Condition()
        self.thread: threading.Thread | None = None
        self._closing = False

    def submit(self, rows: list[Row], params: GenerationParams) -> Submission:
        key = repr(sorted(params.generate_kwargs().items())) + repr(params.stop)
        if params.seed is not None:
            key += f"#seed{params.seed}#{id(rows)}"  # seeded requests run alone: reproducible samples
        submission = Submission(rows, params, key)
        with self._wakeup:
            if self.thread is None or not self.thread.is_alive():
                self._closing = False
                self.thread = threading.Thread(target=self._loop, name="hulumed-scheduler", daemon=True)
                self.thread.start()
                atexit.register(_close_at_exit, weakref.ref(self))
            self._waiting.append(submission)
            self._wakeup.notify()
        return submission

    def close(self, timeout: float = 10.0) -> None:
        """Stop the thread once the work already queued is done (the next ``submit`` starts it again)."""
        with self._wakeup:
            self._closing = True
            self._wakeup.notify_all()
        thread = self.thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _next_batch(self) -> list[Submission]:
        size = max(1, self.options.batch_size)
        with self._wakeup:
            while not self._waiting:
                if self._closing:
                    self.thread = None  # under the lock: a later submit starts a new thread
                    return []
                self._wakeup.wait()
            deadline = time.monotonic() + self.options.batch_wait_ms / 1000
            while sum(len(s.rows) for s in self._waiting) < size and not self._waiting[0].solo:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._wakeup.wait(remaining)
            first = self._waiting[0]
            batch, rows = [first], len(first.rows)
            lengths = [row.prompt_tokens for row in first.rows]
            if not first.solo:
                for submission in self._waiting[1:]:
                    joined = lengths + [row.prompt_tokens for row in submission.rows]
                    if (submission.key == first.key and not submission.solo and rows + len(submission.rows) <= size
                            and fits(joined, self.options.max_batch_tokens)):
                        batch.append(submission)
                        rows += len(submission.rows)
                        lengths = joined
            for submission in batch:
                self._waiting.remove(submission)
            return batch

    def _loop(self) -> None:
        while True:
            try:
                batch = self._next_batch()
            except BaseException as error:  # noqa: BLE001 - never leave callers waiting on a dead scheduler
                with self._wakeup:
                    waiting, self._waiting = self._waiting, []
                for submission in waiting:
                    submission.fail(error)
                continue
            if not batch:
                return
            try:
                self._run(batch)
            except BaseException as error:  # noqa: BLE001 - delivered to the callers below
                if len(batch) > 1:
                    retry = [s for s in batch if not s.streamed_anything]
                    for submission in batch:
                        if submission not in retry:
                            submission.fail(error)
                    with self._wakeup:
                        for submission in retry:
                            submission.solo = True
                        self._waiting[:0] = retry
                else:
                    batch[0].fail(error)


def _close_at_exit(scheduler: "weakref.ref[Scheduler]") -> None:
    alive = scheduler()
    if alive is not None:
        alive.close()
