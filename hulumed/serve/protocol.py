"""Request and response shapes of ``POST /v1/chat/completions`` (the OpenAI chat format, plus extensions).

Content parts accepted in a message (OpenAI's ``text`` and ``image_url``, and two hulumed extensions)::

    {"type": "text", "text": "..."}
    {"type": "image_url", "image_url": {"url": "data:image/png;base64,..." | "scans/a.png" | "https://..."}}
    {"type": "video_url", "video_url": {"url": ..., "fps": 1, "max_frames": 128}}
    {"type": "volume_url", "volume_url": {"url": ..., "slices": 64, "axis": 2, "window": "lung"}}

Structured output: OpenAI's ``response_format`` (``{"type": "json_object"}`` or ``{"type": "json_schema",
"json_schema": {"name": ..., "schema": {...}}}``; a shipped schema by ``name`` alone) and vLLM's
``structured_outputs`` (``{"json": {...}}``, ``{"regex": "..."}``, ``{"choice": [...]}`` or ``{"json_object": true}``).

Extra request fields: ``think`` (upstream reasoning mode; the reply then carries ``reasoning``),
``repetition_penalty``, ``top_k`` and ``ignore_eos`` (as in vLLM).
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "user", "assistant"]
    content: str | list[dict[str, Any]] | None = None


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    top_k: int | None = Field(default=None, ge=1, le=2**31 - 1)
    repetition_penalty: float | None = Field(default=None, ge=0.01, le=100)
    stop: str | list[str] | None = None
    seed: int | None = Field(default=None, ge=-(2**63), le=2**64 - 1)  # what torch.manual_seed takes
    n: int = Field(default=1, ge=1, le=1)
    think: bool = False
    ignore_eos: bool = False  # vLLM's extension: always generate max_tokens (benchmarks, load tests)
    response_format: dict[str, Any] | None = None  # OpenAI: text, json_object or json_schema
    structured_outputs: dict[str, Any] | None = None  # vLLM's extension: json / regex / choice / json_object


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


def usage_block(prompt: int, completion: int, visual: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"visual_tokens": visual},
    }


def completion_response(
    request_id: str, model: str, text: str, reasoning: str | None, finish: str, usage: dict[str, Any]
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if reasoning is not None:
        message["reasoning"] = reasoning
    return {
        "id": request_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": usage,
    }


def chunk(request_id: str, model: str, delta: dict[str, Any], finish: str | None = None,
          usage: dict[str, Any] | None = None, choices: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": request_id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}] if choices else [],
    }
    if usage is not None:
        body["usage"] = usage
    return body


def error_body(message: str, kind: str = "invalid_request_error", code: str | None = None,
               param: str | None = None) -> dict[str, Any]:
    message = message.encode("utf-8", "replace").decode("utf-8")  # never fail to encode an error
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}
