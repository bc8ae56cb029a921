"""The transformers backend of the engine interface (``hulumed.interface.Engine``): ``HFEngine``.

    engine = hulumed.load("ZJU-AI4H/Hulu-Med-7B")                      # LoadOptions(backend="hf") by default
    prepared = engine.prepare([conversation], params, max_visual_tokens=32768)
    [result] = engine.generate(prepared, params)
    for event in engine.stream(conversation, params): ...              # StreamDelta..., then one StreamFinal

It knows nothing of HTTP. How it works:

* ``prepare`` runs the processor once per conversation (media read, chat template, token ids), moves the
  tensors to the model's device and dtype and decides inter-frame reduction there, once: the keep-mask from
  ``processing.visual_tokens`` (the function the model's forward applies, same device and dtype), the row's ids
  with only the kept ``<image>`` tokens and ``visual_keep`` for the model to index its features with
  (``reduced_row``); counts are exact by construction.
* One scheduler thread owns the model (``scheduler.py``: admission by rows and padded tokens, identical
  parameters, seeded requests alone, failure isolation). ``generate`` / ``stream`` calls from any thread queue
  their prepared rows; ``_run`` left-pads one admitted batch and runs one ``model.generate``. Streamed rows get
  their text deltas from a batch streamer; setting a row's ``cancel`` stops that row only. Batched rows equal
  rows run alone (left padding; tested).
* Runtime options (reduction, frame chunking) go to the model's ``generate`` as arguments; nothing is written
  onto the model.
* System prompt: as in upstream's README, conversations with media get ``add_system_prompt=True`` and text-only
  ones ``False``; ``options.system_prompt`` forces it.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from transformers.generation.streamers import BaseStreamer

from ..conversation import Conversation
from ..detokenizer import IncrementalDetokenizer
from ..generation import GenerationParams, GenerationResult, decode_result
from ..interface import (
    REQUEST_ERRORS,
    LoadOptions,
    Outcome,
    Prepared,
    StreamDelta,
    StreamEvent,
    StreamFinal,
    as_prepared,
    check_visual_tokens,
    conversations_to_prepare,
    eos_token_ids,
    model_revision,
    wants_system_prompt,
)
from ..model.family import family_of
from ..processing.processor import concat_visual
from ..processing.visual_tokens import ProcessingTimeReduction, kept_positions
from ..think import visible_prefix
from .scheduler import Row, Scheduler, Submission, token_groups


class HFEngine:
    """A loaded model + processor behind transformers' ``generate``. Build it with ``hulumed.load``."""

    def __init__(
        self, model: Any, processor: Any, options: LoadOptions | None = None, path: Path | None = None
    ) -> None:
        self.model = model.eval()
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.options = options or LoadOptions()
        self.path = path
        self.eos_ids = eos_token_ids(model.generation_config, self.tokenizer)
        self.pad_id = self._pad_token_id()
        self._processor_lock = threading.Lock()  # tokenizers are not safe to call from several threads at once
        self.scheduler = Scheduler(lambda batch: self._run(batch), self.options)  # looked up per batch

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype

    @property
    def vision_dtype(self) -> torch.dtype:
        return self.model.model.vision_encoder.dtype

    # ------------------------------------------------------------------ inputs
    def prepare(
        self, conversations: Sequence[Conversation], params: GenerationParams | None = None,
        max_visual_tokens: int | None = None,
    ) -> Prepared:
        """Process conversations once; exact counts (visual tokens after reduction); ``RequestTooLarge`` over
        ``max_visual_tokens``, before any model work."""
        params = params or GenerationParams()
        conversations = self._conversations(conversations, params)
        rows = [self._prepare_row(c, params) for c in conversations]
        for row in rows:
            check_visual_tokens(row.visual_tokens, max_visual_tokens)
        return Prepared(
            conversations=conversations,
            prompt_tokens=[r.prompt_tokens for r in rows],
            visual_tokens=[r.visual_tokens for r in rows],
            visual_tokens_before_reduction=[r.slots for r in rows],
            params=params,
            inputs=rows,
        )

    # ------------------------------------------------------------------ what a model family changes
    def _pad_token_id(self) -> int:
        return self.processor.pad_token_id

    def _conversations(self, conversations: Sequence[Conversation], params: GenerationParams) -> list[Conversation]:
        return conversations_to_prepare(conversations, params)

    @property
    def _image_id(self) -> int:
        return self.model.config.image_token_index

    @property
    def _reduction(self) -> ProcessingTimeReduction:
        return self.model.processing_time_reduction(self.options.reduction)

    def _collate(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        return _collate(rows, self.pad_id)

    def _prepare_row(self, conversation: Conversation, params: GenerationParams) -> Row:
        with self._processor_lock:
            batch = self.processor(
                conversation=[conversation], add_system_prompt=[wants_system_prompt(conversation, self.options)],
                add_generation_prompt=True, return_tensors="pt",
            )
        inputs: dict[str, Any] = {}
        for key, value in batch.items():
            if isinstance(value, torch.Tensor):
                value = value.to(self.device)
                if key == "pixel_values":
                    value = value.to(self.dtype)
            inputs[key] = value
        slots = int((inputs["input_ids"] == self._image_id).sum())
        if "pixel_values" in inputs and slots:
            inputs.update(reduced_row(inputs["input_ids"], inputs["attention_mask"], self._image_id,
                                      self._reduction.keep(inputs)))
        kept = int((inputs["input_ids"] == self._image_id).sum())
        return Row(inputs=inputs, prompt_tokens=int(inputs["attention_mask"].sum()), visual_tokens=kept, slots=slots)

    def _as_prepared(
        self, conversations: Conversation | Sequence[Conversation] | Prepared, params: GenerationParams | None
    ) -> tuple[Prepared, GenerationParams]:
        return as_prepared(self, conversations, params)

    # ------------------------------------------------------------------ public API
    def generate(
        self, conversations: Conversation | Sequence[Conversation] | Prepared, params: GenerationParams | None = None,
    ) -> list[GenerationResult]:
        """Answers for one conversation or many (or a ``Prepared``), in input order; batched with other callers."""
        prepared, params = self._as_prepared(conversations, params)
        rows = _fresh(prepared.inputs)
        groups = token_groups([row.prompt_tokens for row in rows], self.options)
        submissions = [self._submit([rows[i] for i in group], params) for group in groups]
        results: list[GenerationResult | None] = [None] * len(rows)
        for group, submission in zip(groups, submissions):
            submission.finished.wait()
            if submission.error is not None:
                raise submission.error
            for index, result in zip(group, submission.results or []):
                results[index] = result
        return results  # type: ignore[return-value]

    def generate_each(self, requests: Iterable[tuple[Conversation, GenerationParams]]
                      ) -> Iterator[tuple[int, Outcome]]:
        """Independent requests, each with its own parameters, answered in input order (``Engine.generate_each``).

        Requests are prepared in chunks of ``batch_size`` in the calling thread while the scheduler runs the
        previous chunk (at most two chunks in flight). A chunk is submitted once it is prepared, each request as
        its own submission, so the scheduler sees them together and batches those with equal parameters; when
        a batch fails it retries it request by request: a bad request gets its own error, the others answers."""
        size = max(1, self.options.batch_size)
        running: deque[list[tuple[int, Submission | Exception]]] = deque()
        chunk: list[tuple[int, Prepared | Exception]] = []
        prepared = 0

        def submit() -> None:  # the chunk's rows are its own (never generated before): no copies needed
            running.append([(i, p if isinstance(p, Exception) else self._submit(list(p.inputs), p.params))
                            for i, p in chunk])
            chunk.clear()

        for index, (conversation, params) in enumerate(requests):
            try:
                chunk.append((index, self.prepare([conversation], params)))
                prepared += 1
            except REQUEST_ERRORS as error:
                chunk.append((index, error))
            if prepared == size:
                submit()
                prepared = 0
                while len(running) > 1:  # the next chunk is prepared while this one runs
                    yield from _outcomes(running.popleft())
        submit()
        while running:
            yield from _outcomes(running.popleft())

    def stream(
        self, conversation: Conversation | Prepared, params: GenerationParams | None = None,
        cancel: threading.Event | None = None,
    ) -> Iterator[StreamEvent]:
        """``StreamDelta`` events whose texts join to the answer, then one ``StreamFinal`` with the result.

        Setting ``cancel`` (or closing the iterator) stops this answer at its next token; the Final then says
        ``finish_reason="cancelled"``.
        """
        prepared, params = self._as_prepared(conversation, params)
        if len(prepared.inputs) != 1:
            raise ValueError(f"stream answers one conversation; got {len(prepared.inputs)}")
        cancel = cancel or threading.Event()
        row = replace(prepared.inputs[0], ids=[], shown="", done=False, cancelled=False, cancel=cancel,
                      events=queue.Queue(), detok=None)
        self._submit([row], params)
        finished = False
        try:
            while True:
                event = row.events.get()
                if isinstance(event, BaseException):
                    finished = True
                    raise event
                if isinstance(event, StreamFinal):
                    finished = True
                yield event
                if finished:
                    return
        finally:
            if not finished:  # the caller stopped reading: stop generating this row
                cancel.set()

    def estimate(self, conversation: Conversation | Prepared, params: GenerationParams | None = None
                 ) -> dict[str, Any]:
        """Tokens and memory this request needs, before running it (see ``hulumed.estimate``); a ``Prepared``
        (one conversation) is estimated from its processed inputs, without decoding its media again."""
        from ..estimate import estimate_inputs, estimate_request

        if isinstance(conversation, Prepared):
            if len(conversation.inputs) != 1:
                raise ValueError(f"estimate takes one conversation; got {len(conversation.inputs)}")
            params = params or conversation.params or GenerationParams()
            return estimate_inputs(
                self.model.config, conversation.inputs[0].inputs, params, dtype=self.dtype,
                frame_chunk_size=self.options.frame_chunk_size, reduction=self.options.reduction,
                vision_dtype=self.vision_dtype, parameters=self._parameters(),
            )
        params = params or GenerationParams()
        with self._processor_lock:
            return estimate_request(
                self.model.config, self.processor, conversation, params,
                dtype=self.dtype, add_system_prompt=wants_system_prompt(conversation, self.options),
                frame_chunk_size=self.options.frame_chunk_size, reduction=self.options.reduction,
                vision_dtype=self.vision_dtype, parameters=self._parameters(),
            )

    def info(self) -> dict[str, Any]:
        from ..estimate import describe_model

        info = describe_model(self.model.config, path=self.path, dtype=self.dtype, device=self.device,
                              parameters=self._parameters())
        info.update(backend="hf", revision=model_revision(self.path, self.options.revision),
                    family=family_of(self.model.config.to_dict()).label)
        return info

    def health(self) -> str | None:
        """Always able to answer: the scheduler thread is (re)started by the next request."""
        return None

    def _parameters(self) -> dict[str, int]:
        from ..estimate import count_parameters

        if not hasattr(self, "_parameter_counts"):
            self._parameter_counts = count_parameters(self.model)
        return self._parameter_counts

    # ------------------------------------------------------------------ running batches (scheduler.py calls _run)
    def _submit(self, rows: list[Row], params: GenerationParams) -> Submission:
        return self.scheduler.submit(rows, params)

    def close(self, timeout: float = 10.0) -> None:
        """Stop the scheduler thread once the work already queued is done (the next call starts it again)."""
        self.scheduler.close(timeout)

    def _generate_kwargs(self, params: GenerationParams) -> dict[str, Any]:
        kwargs = params.generate_kwargs()
        kwargs["pad_token_id"] = self.pad_id
        kwargs.update(self._model_kwargs())
        if params.stop:
            kwargs.update(stop_strings=list(params.stop), tokenizer=self.tokenizer)
        return kwargs

    def _model_kwargs(self) -> dict[str, Any]:
        """Runtime options the model's ``generate`` takes (ours: reduction and frame chunking)."""
        return {"reduction": self.options.reduction, "frame_chunk_size": self.options.frame_chunk_size}

    def _prompt_columns(self, inputs: dict[str, Any]) -> int:
        """Prompt columns of the ``input_ids`` that ``generate`` hands logits processors (ours: none, it runs on
        input embeddings)."""
        return 0

    def _new_tokens(self, output: torch.Tensor, inputs: dict[str, Any]) -> torch.Tensor:
        """The generated ids of ``generate``'s output (ours returns only those: it runs on input embeddings)."""
        return output

    def _run(self, batch: list[Submission]) -> None:
        from transformers import StoppingCriteria, StoppingCriteriaList

        rows = [row for submission in batch for row in submission.rows]
        params = batch[0].params
        inputs = self._collate([row.inputs for row in rows])
        streamer = _BatchStreamer(rows, self, params) if any(r.events is not None for r in rows) else None

        class _Cancelled(StoppingCriteria):
            def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
                flags = [row.cancel is not None and row.cancel.is_set() for row in rows]
                return torch.tensor(flags, dtype=torch.bool, device=input_ids.device)

        if params.seed is not None:
            torch.manual_seed(params.seed)
        extra: dict[str, Any] = {}
        if any(row.cancel is not None for row in rows):
            extra["stopping_criteria"] = StoppingCriteriaList([_Cancelled()])
        if streamer is not None:
            extra["streamer"] = streamer
        kwargs = self._generate_kwargs(params)
        specs = [s.params.structured for s in batch for _ in s.rows]
        if any(spec is not None for spec in specs):  # rows may mix: free rows are left untouched
            from transformers.generation import LogitsProcessorList

            from ..constrained import GrammarMask, sampling_processors

            mask = GrammarMask(specs, [s.params.think for s in batch for _ in s.rows], self._grammar_tokenizer(),
                               self.eos_ids, prompt_length=self._prompt_columns(inputs))
            warpers, kwargs = sampling_processors(self.model.generation_config, kwargs)
            extra["logits_processor"] = LogitsProcessorList([mask, *warpers])
        output = self._new_tokens(self.model.generate(**inputs, **kwargs, **extra), inputs)  # (B, new tokens)
        grammar_errors = extra["logits_processor"][0].errors if "logits_processor" in extra else [None] * len(rows)
        start = 0
        for submission in batch:
            failed = next((e for e in grammar_errors[start:start + len(submission.rows)] if e), None)
            if failed is not None:  # a row's grammar gave up: that request fails, the others are answered
                from ..errors import StructuredOutputError

                start += len(submission.rows)
                submission.fail(StructuredOutputError(failed))
                continue
            results = []
            for row in submission.rows:
                result = self._result(output[start].tolist(), row, params)
                if row.cancel is not None and row.cancel.is_set():
                    result.finish_reason = "cancelled"
                results.append(result)
                if row.events is not None:
                    if not result.text.startswith(row.shown):  # cannot happen for append-only text; keep it explicit
                        row.events.put(RuntimeError("streamed text diverged from the final answer"))
                    else:
                        if len(result.text) > len(row.shown):
                            row.events.put(StreamDelta(result.text[len(row.shown) :]))
                        row.events.put(StreamFinal(result))
                start += 1
            submission.results = results
            submission.finished.set()

    def _grammar_tokenizer(self) -> Any:
        if not hasattr(self, "_ll_tokenizer"):
            from ..constrained import LLTokenizerCache

            width = int(self.model.get_output_embeddings().weight.shape[0])
            # the grammar's end token: the tokenizer's, as vLLM's guidance backend has it (same mask, same tokens)
            eos = self.tokenizer.eos_token_id
            self._ll_tokenizer = LLTokenizerCache(self.tokenizer, width, [eos] if eos is not None
                                                  else sorted(self.eos_ids))
        return self._ll_tokenizer

    # ------------------------------------------------------------------ outputs
    def _result(self, ids: list[int], row: Row, params: GenerationParams) -> GenerationResult:
        return decode_result(self.tokenizer, ids, self.eos_ids, params.stop, prompt_tokens=row.prompt_tokens,
                             visual_tokens=row.visual_tokens)


class _BatchStreamer(BaseStreamer):
    """transformers streamer for a whole batch: each streamed row gets the deltas of its visible text."""

    def __init__(self, rows: list[Row], engine: HFEngine, params: GenerationParams) -> None:
        self.rows, self.engine, self.params = rows, engine, params
        self.prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:  # the first call carries the prompt ids (empty with inputs_embeds)
            self.prompt_seen = True
            return
        tokens = value.reshape(len(self.rows), -1)[:, -1].tolist()  # (B,) the newest token of every row
        for row, token in zip(self.rows, tokens):
            if row.done:
                continue
            if row.cancel is not None and row.cancel.is_set():
                row.done = row.cancelled = True
                continue
            row.ids.append(token)
            if token in self.engine.eos_ids:
                row.done = True
                continue
            if row.events is None:
                continue
            if row.detok is None:
                row.detok = IncrementalDetokenizer(self.engine.tokenizer)
            raw = row.detok.add(token)  # O(1) ids decoded per token (not the whole answer again)
            visible = visible_prefix(raw, self.params.stop)
            if visible.startswith(row.shown) and len(visible) > len(row.shown):
                row.events.put(StreamDelta(visible[len(row.shown) :]))
                row.shown = visible

    def end(self) -> None:
        pass



def _fresh(rows: Sequence[Row]) -> list[Row]:
    """Copies of prepared rows with no generation state (a ``Prepared`` may be generated more than once)."""
    return [replace(row, ids=[], shown="", done=False, cancelled=False, detok=None) for row in rows]


def _outcomes(chunk: list[tuple[int, Submission | Exception]]) -> Iterator[tuple[int, Outcome]]:
    """The outcome of each request of a chunk, in order: its result, or its own error (a prepare error, or the
    error its submission failed with when run alone); errors that are not one request's are raised."""
    for index, item in chunk:
        if isinstance(item, Exception):
            yield index, item
            continue
        item.finished.wait()
        if item.error is not None:
            if not isinstance(item.error, REQUEST_ERRORS):
                raise item.error
            yield index, item.error
        else:
            yield index, (item.results or [])[0]


def reduced_row(input_ids: torch.Tensor, attention_mask: torch.Tensor, image_id: int, keep: torch.Tensor
                ) -> dict[str, torch.Tensor]:
    """Token reduction decided at processing time: one row's ids and mask (1, N) with only the kept visual
    tokens (1, N'), and ``visual_keep`` (visual tokens,) for the model to index its features with — the engine's
    form of what the model does to the processor's full ids (``modeling._drop_positions``)."""
    stay = kept_positions(input_ids[0], image_id, keep)  # (N,)
    return {"input_ids": input_ids[:, stay], "attention_mask": attention_mask[:, stay], "visual_keep": keep}


def _collate(rows: list[dict[str, Any]], pad_id: int) -> dict[str, Any]:
    """Single-row processor outputs -> one left-padded batch (what the processor gives for them together)."""
    if len(rows) == 1:
        return dict(rows[0])
    width = max(int(r["input_ids"].shape[1]) for r in rows)
    ids, masks = [], []
    for r in rows:
        pad = width - int(r["input_ids"].shape[1])
        ids.append(torch.nn.functional.pad(r["input_ids"], (pad, 0), value=pad_id))  # (1, width)
        masks.append(torch.nn.functional.pad(r["attention_mask"], (pad, 0), value=0))
    out: dict[str, Any] = {"input_ids": torch.cat(ids), "attention_mask": torch.cat(masks)}  # (B, width)
    out.update(concat_visual(rows, torch.cat))  # pixel_values (P, 588), grid_sizes (items, 3), ...
    keeps = [r["visual_keep"] for r in rows if "visual_keep" in r]
    if keeps:
        out["visual_keep"] = torch.cat(keeps)  # (visual tokens of all rows,) in row order, as the features
    return out
