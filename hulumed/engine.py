"""The engine: load a checkpoint once, then answer conversations — batched, streamed, on any device.

    engine = hulumed.load("ZJU-AI4H/Hulu-Med-7B")                      # or a local folder
    [result] = engine.generate(conversation, hulumed.GenerationParams.greedy(256))
    for delta in engine.stream(conversation): print(delta, end="")

It is the one door the CLI, the server, evaluation and the demo go through, and knows nothing of HTTP.

* Batches: conversations are processed into one left-padded batch (``batch_size`` at a time) and generated
  together; token reduction works in batches. Results come back in input order.
* Long videos / volumes: the vision encoder runs ``frame_chunk_size`` frames at a time (identical results).
* Devices: cuda -> mps -> cpu unless told; bf16 on CUDA, fp32 elsewhere unless told; 4/8-bit weights through
  bitsandbytes on CUDA (``quantization="4bit" | "8bit"``).
* System prompt: as in upstream's README, conversations with media get ``add_system_prompt=True`` and
  text-only ones ``False``; ``system_prompt=True/False`` forces it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .conversation import Conversation, has_media, validate, with_think_instruction
from .errors import HulumedError, RequestTooLarge
from .generation import GenerationParams, GenerationResult, cut_at_stop, reasoning_of
from .hub import resolve_model
from .interface import ReductionOptions
from .processing.visual_tokens import keep_mask, visual_tokens


def pick_device(device: str | None = None) -> torch.device:
    """The requested device, else cuda, then mps, then cpu."""
    if device is not None:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def pick_dtype(device: torch.device, dtype: str | torch.dtype | None = None) -> torch.dtype:
    """The requested dtype, else bf16 on CUDA and fp32 elsewhere."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is not None:
        names = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32", "half": "float16", "float": "float32"}
        resolved = getattr(torch, names.get(dtype, dtype), None)
        if not isinstance(resolved, torch.dtype):
            raise ValueError(f"unknown dtype {dtype!r}; use bfloat16, float16 or float32")
        return resolved
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def _quantization_config(quantization: str | None, device: torch.device) -> Any:
    if quantization is None:
        return None
    if quantization not in ("4bit", "8bit"):
        raise ValueError(f"quantization must be '4bit' or '8bit', not {quantization!r}")
    if device.type != "cuda":
        raise HulumedError(f"{quantization} loading needs a CUDA device (bitsandbytes); this engine is on {device}")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as error:
        raise HulumedError(f"{quantization} loading needs bitsandbytes: pip install bitsandbytes") from error
    from transformers import BitsAndBytesConfig

    skip = ["vision_encoder", "mm_projector", "lm_head"]  # keep the vision side and the head in full precision
    if quantization == "4bit":
        return BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16,
            llm_int8_skip_modules=skip,
        )
    return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip)


@dataclass
class _Prepared:
    inputs: dict[str, Any]
    prompt_tokens: list[int]  # after reduction
    visual_tokens: list[int]  # after reduction
    visual_tokens_before_reduction: list[int]


class Engine:
    """A loaded model + processor. Build it with ``hulumed.load``."""

    def __init__(
        self,
        model: Any,
        processor: Any,
        *,
        batch_size: int = 8,
        system_prompt: bool | None = None,
        path: Path | None = None,
        reduction: ReductionOptions | None = None,
        frame_chunk_size: int | None = None,
    ) -> None:
        self.model = model.eval()
        self.reduction = reduction or ReductionOptions()
        self.frame_chunk_size = frame_chunk_size
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.batch_size = batch_size
        self.system_prompt = system_prompt
        self.path = path
        eos = model.generation_config.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        self.eos_ids.add(self.tokenizer.convert_tokens_to_ids("<|im_end|>"))
        self.eos_ids.discard(None)
        self._lock = threading.Lock()  # one generate at a time per engine (the model is not re-entrant)

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype

    # ------------------------------------------------------------------ inputs
    def _add_system_prompt(self, conversation: Conversation) -> bool:
        return self.system_prompt if self.system_prompt is not None else has_media(conversation)

    def prepare(
        self, conversations: Sequence[Conversation], params: GenerationParams, max_visual_tokens: int | None = None
    ) -> _Prepared:
        """Processor outputs for one batch, on the model's device and dtype.

        With ``max_visual_tokens``, a conversation whose media make more visual tokens raises ``RequestTooLarge``
        (checked right after processing, before any model work).
        """
        conversations = [validate(c) for c in conversations]
        if params.think:
            conversations = [with_think_instruction(c) for c in conversations]
        batch = self.processor(
            conversation=list(conversations), add_system_prompt=[self._add_system_prompt(c) for c in conversations],
            add_generation_prompt=True, return_tensors="pt",
        )
        inputs: dict[str, Any] = {}
        for key, value in batch.items():
            if isinstance(value, torch.Tensor):
                value = value.to(self.device)
                if key == "pixel_values":
                    value = value.to(self.dtype)
            inputs[key] = value
        slots = (inputs["input_ids"] == self.model.config.image_token_index).sum(dim=1).tolist()  # per row
        kept = self._kept_visual_tokens(inputs, slots)
        prompt = inputs["attention_mask"].sum(dim=1).tolist()
        prepared = _Prepared(
            inputs=inputs,
            prompt_tokens=[p - s + k for p, s, k in zip(prompt, slots, kept)],
            visual_tokens=kept,
            visual_tokens_before_reduction=slots,
        )
        if max_visual_tokens is not None and max(prepared.visual_tokens, default=0) > max_visual_tokens:
            raise RequestTooLarge(
                f"the media make {max(prepared.visual_tokens)} visual tokens; the limit is {max_visual_tokens} "
                "(use fewer frames / slices or smaller images)"
            )
        return prepared

    def _kept_visual_tokens(self, inputs: dict[str, Any], slots: list[int]) -> list[int]:
        """Visual tokens per row after reduction, by the same function (same device, same dtype) the model uses."""
        if "pixel_values" not in inputs or not sum(slots):
            return list(slots)
        items = visual_tokens(
            inputs["pixel_values"], inputs["grid_sizes"], inputs["merge_sizes"], inputs.get("modals"),
            self.model.model.vision_encoder.dtype, self.reduction,
            checkpoint_default=bool(self.model.config.use_token_compression),
        )
        keep = keep_mask(items)  # (image slots of all rows,) row-major, as the model splices
        return [int(part.sum()) for part in keep.split(slots)]

    def _generate_kwargs(self, params: GenerationParams) -> dict[str, Any]:
        kwargs = params.generate_kwargs()
        kwargs.update(reduction=self.reduction, frame_chunk_size=self.frame_chunk_size)
        kwargs["pad_token_id"] = self.processor.pad_token_id
        if params.stop:
            kwargs.update(stop_strings=list(params.stop), tokenizer=self.tokenizer)
        return kwargs

    # ------------------------------------------------------------------ outputs
    def _result(self, ids: list[int], prepared: _Prepared, row: int, params: GenerationParams) -> GenerationResult:
        end = next((i for i, token in enumerate(ids) if token in self.eos_ids), None)
        finish = "stop" if end is not None else "length"
        ids = ids[: end + 1] if end is not None else ids
        raw = self.tokenizer.decode(ids, skip_special_tokens=True)
        raw, stopped = cut_at_stop(raw, params.stop)
        if stopped:
            finish = "stop"
        return GenerationResult(
            text=_postprocess(raw),
            reasoning=reasoning_of(raw),
            token_ids=ids,
            prompt_tokens=int(prepared.prompt_tokens[row]),
            completion_tokens=len(ids),
            visual_tokens=int(prepared.visual_tokens[row]),
            finish_reason=finish,
        )

    # ------------------------------------------------------------------ public API
    def generate(
        self,
        conversations: Conversation | Sequence[Conversation],
        params: GenerationParams | None = None,
        batch_size: int | None = None,
        max_visual_tokens: int | None = None,
    ) -> list[GenerationResult]:
        """Answers for one conversation or many, in input order, generated in left-padded batches."""
        params = params or GenerationParams()
        if conversations and isinstance(conversations[0], dict):
            conversations = [conversations]  # type: ignore[list-item]
        conversations = list(conversations)  # type: ignore[arg-type]
        size = max(1, batch_size or self.batch_size)
        results: list[GenerationResult] = []
        for start in range(0, len(conversations), size):
            results.extend(self._generate_batch(conversations[start : start + size], params, max_visual_tokens))
        return results

    def _generate_batch(
        self, conversations: list[Conversation], params: GenerationParams, max_visual_tokens: int | None = None
    ) -> list[GenerationResult]:
        prepared = self.prepare(conversations, params, max_visual_tokens)
        with self._lock:
            if params.seed is not None:
                torch.manual_seed(params.seed)
            output = self.model.generate(**prepared.inputs, **self._generate_kwargs(params))
        return [self._result(output[row].tolist(), prepared, row, params) for row in range(output.shape[0])]

    def stream(
        self,
        conversation: Conversation,
        params: GenerationParams | None = None,
        cancel: threading.Event | None = None,
        on_finish: Any = None,
    ) -> Iterator[str]:
        """Text deltas of one answer; their concatenation equals ``generate(conversation)[0].text``.

        Setting ``cancel`` stops the generation at the next token (a client went away). ``on_finish``, if
        given, is called with the ``GenerationResult`` (token counts, finish reason) once the answer is done.
        """
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        params = params or GenerationParams()
        prepared = self.prepare([conversation], params)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        failure: list[BaseException] = []
        output: list[torch.Tensor] = []

        class _Cancelled(StoppingCriteria):
            def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
                stop = cancel is not None and cancel.is_set()
                return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)

        def run() -> None:
            try:
                with self._lock:
                    if params.seed is not None:
                        torch.manual_seed(params.seed)
                    output.append(
                        self.model.generate(
                            **prepared.inputs, **self._generate_kwargs(params), streamer=streamer,
                            stopping_criteria=StoppingCriteriaList([_Cancelled()]),
                        )
                    )
            except BaseException as error:  # noqa: BLE001 - re-raised in the consumer below
                failure.append(error)
                streamer.end()

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        raw, shown = "", ""
        for piece in streamer:
            raw += piece
            visible = _visible_prefix(raw, params.stop)
            if visible.startswith(shown) and len(visible) > len(shown):
                yield visible[len(shown) :]
                shown = visible
        worker.join()
        if failure:
            raise failure[0]
        final = _postprocess(cut_at_stop(raw, params.stop)[0])
        if final.startswith(shown):
            if len(final) > len(shown):
                yield final[len(shown) :]
        else:  # cannot happen for append-only text; keep the guarantee explicit
            raise RuntimeError("streamed text diverged from the final answer")
        if on_finish is not None and output:
            on_finish(self._result(output[0][0].tolist(), prepared, 0, params))

    def estimate(self, conversation: Conversation, params: GenerationParams | None = None) -> dict[str, Any]:
        """Tokens and memory this request needs, before running it (see ``hulumed.estimate``)."""
        from .estimate import estimate_request

        params = params or GenerationParams()
        return estimate_request(
            self.model.config, self.processor, conversation, params,
            dtype=self.dtype, add_system_prompt=self._add_system_prompt(conversation),
            frame_chunk_size=self.frame_chunk_size, reduction=self.reduction,
            vision_dtype=self.model.model.vision_encoder.dtype,
        )

    def info(self) -> dict[str, Any]:
        from .estimate import describe_model

        return describe_model(self.model.config, path=self.path, dtype=self.dtype, device=self.device)


def _postprocess(raw: str) -> str:
    """Upstream's ``batch_decode(use_think=False)`` on an already decoded string."""
    from .processing.processor import strip_think

    return strip_think(raw)


def _visible_prefix(raw: str, stop: Sequence[str]) -> str:
    """The part of a partial answer that can no longer change: think blocks removed, an open <think> and a
    possible start of a stop string held back, blank-line runs collapsed, trailing whitespace held back."""
    text, _ = cut_at_stop(raw, list(stop))
    open_think = text.rfind("<think>")
    if open_think >= 0 and text.find("</think>", open_think) < 0:
        text = text[:open_think]
    text = _postprocess(text) if text.strip() else ""
    for marker in ["<think>", *stop]:  # hold back a tail that may become a marker
        for k in range(min(len(marker) - 1, len(text)), 0, -1):
            if marker and text.endswith(marker[:k]):
                text = text[:-k]
                break
    return text.rstrip()


def load(
    model: str | Path,
    *,
    device: str | None = None,
    dtype: str | torch.dtype | None = None,
    attn_implementation: str = "sdpa",
    quantization: str | None = None,
    revision: str | None = None,
    batch_size: int = 8,
    frame_chunk_size: int | None = 32,
    system_prompt: bool | None = None,
) -> Engine:
    """Load a Hulu-Med checkpoint (folder or hub id) and its processor into an ``Engine``."""
    from transformers import AutoModelForCausalLM, AutoProcessor

    from . import registration

    registration.register_auto_classes()
    path = resolve_model(model, revision=revision)
    target = pick_device(device)
    torch_dtype = pick_dtype(target, dtype)
    quantization_config = _quantization_config(quantization, target)
    loaded = AutoModelForCausalLM.from_pretrained(
        path, dtype=torch_dtype, attn_implementation=attn_implementation, quantization_config=quantization_config,
        **({"device_map": {"": str(target)}} if quantization_config is not None else {}),
    )
    if quantization_config is None:
        loaded = loaded.to(target)
    processor = AutoProcessor.from_pretrained(path)
    return Engine(
        loaded, processor, batch_size=batch_size, system_prompt=system_prompt, path=path,
        frame_chunk_size=frame_chunk_size,
    )
