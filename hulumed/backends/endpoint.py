"""An engine that answers through OpenAI-compatible servers: ``hulumed eval --endpoint URL [--endpoint URL2 …]``.

    engine = EndpointEngine(["http://gpu1:8000/v1", "http://gpu2:8000/v1"], model="hulumed", concurrency=8)
    results = engine.generate([conversation, ...], GenerationParams.greedy(1024))

It satisfies ``hulumed.interface.Engine`` so the runner uses one interface whatever answers (``hulumed serve``,
``vllm serve`` with the Hulu-Med plugin, another VLM's server). Conversations become ``POST /chat/completions``
bodies with the same prompt text and media: images as ``data:image/png;base64`` URIs (PIL images are encoded
losslessly, so the server decodes the very pixels the local engine would see); NIfTI volumes as ``volume_url``
data URIs; frame folders (the 3-D slice folders) as ``video_url`` with the folder's absolute path, which the server
reads when it was started with ``--media-root`` above the data folder (a folder cannot travel as a data URI).

Requests are spread over the endpoints with at most ``concurrency`` in flight per endpoint (a pool of endpoint
slots: a request takes a free slot, so a slow server gets fewer). Connection errors, 429 and 5xx are retried with
back-off; any other error status raises ``EndpointError`` with the server's message. Token counts come from the
server's ``usage`` after generation; ``prepare`` cannot count tokens here and reports zeros.
"""

from __future__ import annotations

import base64
import io
import json
import queue
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ..errors import EndpointError
from ..generation import GenerationParams, GenerationResult
from ..interface import (
    Conversation,
    LoadOptions,
    Outcome,
    Prepared,
    StreamDelta,
    StreamEvent,
    StreamFinal,
    as_prepared,
    generate_concurrently,
)

RETRY_STATUSES = (429, 500, 502, 503, 504)


def _png_data_uri(image: Any) -> str:
    """A PIL image, or an image file, as a lossless PNG ``data:`` URI."""
    from PIL import Image

    picture = image if isinstance(image, Image.Image) else Image.open(image)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _file_data_uri(path: str, media_type: str = "application/octet-stream") -> str:
    return f"data:{media_type};base64," + base64.b64encode(Path(path).read_bytes()).decode()


def openai_part(part: dict[str, Any]) -> dict[str, Any]:
    """One hulumed content part as an OpenAI (or hulumed-extension) message part."""
    kind = part.get("type")
    if kind == "text":
        return {"type": "text", "text": part["text"]}
    if kind == "image":
        spec = part["image"]
        return {"type": "image_url", "image_url": {"url": _png_data_uri(spec["image_path"])}}
    if kind == "video":
        spec = dict(part["video"])
        source = spec.pop("video_path")
        if not isinstance(source, (str, Path)):
            raise EndpointError("a video part sent to an endpoint needs a file or folder path")
        path = Path(source)
        url = str(path.resolve()) if path.is_dir() else _file_data_uri(str(path), "video/mp4")
        return {"type": "video_url", "video_url": {"url": url, **spec}}
    if kind == "3d":
        from ..processing.volume.options import part_from_item

        spec = dict(part["3d"])
        source = str(spec.pop("image_path"))
        url = str(Path(source).resolve()) if Path(source).is_dir() else _file_data_uri(source)
        return {"type": "volume_url", "volume_url": {"url": url, **part_from_item(spec)}}
    raise EndpointError(f"content part of type {kind!r} cannot be sent to an endpoint")


def openai_messages(conversation: Conversation) -> list[dict[str, Any]]:
    """A hulumed conversation as OpenAI chat messages (text-only contents stay strings)."""
    out = []
    for message in conversation:
        content = message.get("content")
        if isinstance(content, list):
            content = [openai_part(part) for part in content]
        out.append({"role": message["role"], "content": content})
    return out


def request_body(model: str, conversation: Conversation, params: GenerationParams) -> dict[str, Any]:
    """The ``/chat/completions`` body with the local backends' meaning of ``params``: greedy sends temperature 0;
    sampling sends its temperature (1.0 when unset) and top-p / top-k; unset fields (``GenerationParams()``, "as
    the checkpoint's generation_config.json") are left out, so the server applies the checkpoint's own settings,
    as both local backends do. ``think`` only when asked (an extension)."""
    body: dict[str, Any] = {"model": model, "messages": openai_messages(conversation),
                            "max_tokens": params.max_new_tokens}
    if params.do_sample is False:
        body["temperature"] = 0.0
    elif params.do_sample or params.temperature is not None:
        body["temperature"] = params.temperature if params.temperature is not None else 1.0
    if params.do_sample is not False and params.top_p is not None:
        body["top_p"] = params.top_p
    if params.do_sample is not False and params.top_k is not None:
        body["top_k"] = params.top_k
    if params.repetition_penalty is not None:
        body["repetition_penalty"] = params.repetition_penalty
    if params.stop:
        body["stop"] = list(params.stop)
    if params.seed is not None:
        body["seed"] = params.seed
    if params.think:
        body["think"] = True
    if getattr(params, "ignore_eos", False):
        body["ignore_eos"] = True
    return body


def result_of(reply: dict[str, Any]) -> GenerationResult:
    """A chat-completion reply as a ``GenerationResult`` (reasoning from ``reasoning`` or vLLM's
    ``reasoning_content``)."""
    from ..eval.bounded_reply import first_message

    choice = first_message("the endpoint", reply)
    message = choice.get("message") or {}
    usage = reply.get("usage") or {}
    details = usage.get("prompt_tokens_details") or {}
    return GenerationResult(
        text=message.get("content") or "", reasoning=message.get("reasoning") or message.get("reasoning_content"),
        token_ids=[], prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
        visual_tokens=int(details.get("visual_tokens") or 0), finish_reason=choice.get("finish_reason") or "stop",
    )


def _base(url: str) -> str:
    """``http://host:port`` or ``…/v1`` -> the ``…/v1`` base the OpenAI routes hang from."""
    url = url.rstrip("/")
    return url if url.endswith("/v1") else url + "/v1"


class EndpointEngine:
    """Generation through one or more OpenAI-compatible servers (see the module docstring)."""

    def __init__(self, urls: Sequence[str], model: str, api_key: str | None = None, concurrency: int = 4,
                 timeout_s: float = 600.0, retries: int = 3) -> None:
        import httpx

        if not urls:
            raise ValueError("give at least one endpoint URL")
        if concurrency < 1:
            raise ValueError("--concurrency must be at least 1")
        self.urls = [_base(u) for u in urls]
        self.model = model
        self.path = model  # what metrics.json records as the model
        self.concurrency = concurrency
        self.batch_size = concurrency * len(self.urls)  # the runner hands over this many conversations at a time
        self.retries = retries
        self.timeout_s = timeout_s  # a whole reply (not each read) must arrive within this
        self.options = LoadOptions(backend="endpoint", batch_size=self.batch_size)
        self.tokenizer = None  # a remote model: its tokenizer and processor are the server's
        self.processor = None
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(headers=headers, timeout=timeout_s,
                                    limits=httpx.Limits(max_connections=self.batch_size + len(self.urls)))
        self._slots: queue.Queue[str] = queue.Queue()
        for _ in range(concurrency):
            for url in self.urls:
                self._slots.put(url)
        self.sent = {url: 0 for url in self.urls}  # requests answered per endpoint (for reports and tests)
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ the Engine protocol
    def prepare(self, conversations: Sequence[Conversation], params: GenerationParams | None = None,
                max_visual_tokens: int | None = None) -> Prepared:
        """The conversations as request bodies; token counts are the server's and are not known here (zeros)."""
        params = params or GenerationParams()
        bodies = [request_body(self.model, list(c), params) for c in conversations]
        zeros = [0] * len(bodies)
        return Prepared(conversations=list(conversations), prompt_tokens=zeros, visual_tokens=list(zeros),
                        visual_tokens_before_reduction=list(zeros), params=params, inputs=bodies)

    def generate(self, conversations: Conversation | Sequence[Conversation] | Prepared,
                 params: GenerationParams | None = None) -> list[GenerationResult]:
        """Every conversation answered, in input order, with at most ``concurrency`` requests per endpoint."""
        prepared = self._prepared(conversations, params)
        bodies = prepared.inputs
        if not bodies:
            return []
        with ThreadPoolExecutor(max_workers=min(self.batch_size, len(bodies))) as pool:
            return list(pool.map(lambda body: result_of(self._post(body)), bodies))

    def generate_each(self, requests: Iterable[tuple[Conversation, GenerationParams]]
                      ) -> Iterator[tuple[int, Outcome]]:
        """Independent requests (``Engine.generate_each``): ``concurrency`` per endpoint in flight, each its own
        HTTP request, so a refused request fails alone."""
        return generate_concurrently(self, requests, self.batch_size)

    def stream(self, conversation: Conversation | Prepared, params: GenerationParams | None = None,
               cancel: threading.Event | None = None) -> Iterator[StreamEvent]:
        """Deltas of one streamed answer, then one ``StreamFinal`` (``finish_reason="cancelled"`` if cancelled)."""
        prepared = self._prepared(conversation, params)
        body = {**prepared.inputs[0], "stream": True, "stream_options": {"include_usage": True}}
        from ..eval.bounded_reply import Reply, check_stream

        url = self._slots.get()
        texts, reasoning, finish, usage = [], [], "stop", {}
        deadline, size = time.monotonic() + self.timeout_s, 0
        try:
            with self._client.stream("POST", f"{url}/chat/completions", json=body) as response:
                if response.status_code != 200:
                    data = b""
                    for chunk in response.iter_bytes():  # the error body, bounded like any reply
                        data += chunk
                        check_stream(url, len(data), deadline, self.timeout_s)
                    raise EndpointError(self._message(url, Reply(response.status_code, response.headers, data)))
                for line in response.iter_lines():
                    size += len(line) + 1
                    check_stream(url, size, deadline, self.timeout_s)
                    if cancel is not None and cancel.is_set():
                        finish = "cancelled"
                        break
                    if not line.startswith("data:") or line.strip() == "data: [DONE]":
                        continue
                    try:
                        event = json.loads(line[5:])
                    except (ValueError, RecursionError) as error:
                        raise EndpointError(f"{url} streamed an event that is not JSON ({type(error).__name__})"
                                            ) from None
                    if not isinstance(event, dict):
                        raise EndpointError(f"{url} streamed an event that is not a JSON object")
                    usage = event.get("usage") or usage
                    for choice in event.get("choices") or []:
                        delta = choice.get("delta") or {}
                        if delta.get("reasoning") or delta.get("reasoning_content"):
                            reasoning.append(delta.get("reasoning") or delta.get("reasoning_content"))
                        if delta.get("content"):
                            texts.append(delta["content"])
                            yield StreamDelta(delta["content"])
                        finish = choice.get("finish_reason") or finish
        finally:
            self._slots.put(url)
        reply = {"choices": [{"message": {"content": "".join(texts), "reasoning": "".join(reasoning) or None},
                              "finish_reason": finish}], "usage": usage}
        yield StreamFinal(result_of(reply))

    def estimate(self, conversation: Conversation | Prepared, params: GenerationParams | None = None
                 ) -> dict[str, Any]:
        """Token counts are the server's business: only the request size is known here."""
        if isinstance(conversation, Prepared):
            conversation = conversation.conversations[0]
        body = request_body(self.model, conversation, params or GenerationParams())
        return {"endpoints": self.urls, "request_bytes": len(json.dumps(body)), "prompt_tokens": None}

    def health(self) -> str | None:
        """Not probed: an unreachable endpoint shows up as an error record per request."""
        return None

    def info(self) -> dict[str, Any]:
        return {"backend": "endpoint", "model": self.model, "path": self.model, "revision": None,
                "endpoints": self.urls, "concurrency_per_endpoint": self.concurrency}

    def close(self) -> None:
        self._client.close()

    # ------------------------------------------------------------------ plumbing
    def _prepared(self, conversations: Any, params: GenerationParams | None) -> Prepared:
        return as_prepared(self, conversations, params)[0]

    @staticmethod
    def _message(url: str, response: Any) -> str:
        try:
            detail = json.loads(response.data)["error"]["message"]
        except (ValueError, KeyError, TypeError, RecursionError):
            detail = response.text[:300]
        return f"{url} answered HTTP {response.status}: {str(detail)[:300]}"

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        """One request on a free endpoint slot, retried on connection errors, 429 and 5xx."""
        import httpx

        from ..eval.bounded_reply import first_message, post_json

        last = ""
        for attempt in range(self.retries + 1):
            url = self._slots.get()
            try:
                response = post_json(self._client, f"{url}/chat/completions", body, timeout_s=self.timeout_s)
            except httpx.HTTPError as error:
                last = f"{url}: {type(error).__name__}: {error}"
            else:
                if response.status == 200:
                    first_message(url, response.json)  # a reply without choices is an error, not an IndexError
                    with self._lock:
                        self.sent[url] += 1
                    return response.json
                last = self._message(url, response)
                if response.status not in RETRY_STATUSES:
                    raise EndpointError(last)
            finally:
                self._slots.put(url)
            time.sleep(min(30.0, 0.5 * 2**attempt))
        raise EndpointError(f"gave up after {self.retries + 1} tries: {last}")
