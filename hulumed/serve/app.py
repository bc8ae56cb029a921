"""The FastAPI application: /v1/chat/completions (streamed and not), /v1/models, /health, /metrics.

Order of checks for a completion request: API key (401) -> body size (413) and body deadline (408; no queue
slot is held while the body arrives) -> admission (429 + Retry-After when the queue is full) -> JSON (400,
also for nesting deeper than 32, lone surrogates, over-long integers) -> schema (400) -> model name (404) ->
max_tokens / stop limits (400) -> prompt text tokens (400) -> media rules (400 / 403 / 413, see media.py and
guard.py) -> conversation shape (400) -> media decoding and the visual-token limit (400, by ``engine.prepare``,
which reads the media once for the whole request) -> generation (streamed and non-streamed requests batched
together by the engine). Every error is OpenAI-style JSON (``{"error": {"message", "type", "param", "code"}}``)
and never
carries a stack trace; those go to the server log. The log has one JSON line per request (id, status, timings,
token counts) and the message text only with ``log_content``.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import shutil
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import ApiError, HulumedError, RequestTooLarge
from ..generation import GenerationParams
from ..interface import Engine, Prepared, StreamDelta, StreamFinal, check_text_tokens, conversation_texts
from ..structured import StructuredOutput
from .batcher import Admission, Batcher
from .error_table import api_error
from .guard import public_message
from .media import MediaResolver
from .metrics import CONTENT_TYPE, ServerMetrics
from .protocol import ChatCompletionRequest, chunk, completion_id, completion_response, error_body, usage_block
from .settings import ServerSettings, over_limit

log = logging.getLogger("hulumed.serve")


def _error(status: int, message: str, code: str, kind: str = "invalid_request_error",
           headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(message, kind, code), status_code=status, headers=headers)


def create_app(engine: Engine, settings: ServerSettings) -> FastAPI:
    metrics = ServerMetrics()
    admission = Admission(settings.max_queue, metrics)
    executor = ThreadPoolExecutor(max_workers=max(4, settings.max_queue), thread_name_prefix="hulumed-batch")
    stream_executor = ThreadPoolExecutor(max_workers=max(2, settings.max_queue), thread_name_prefix="hulumed-stream")
    batcher = Batcher(engine, settings.max_batch_size, metrics, executor)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        executor.shutdown(wait=False, cancel_futures=True)
        stream_executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="hulumed", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.metrics = metrics
    app.state.settings = settings

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, error: ApiError) -> JSONResponse:
        return _error(error.status, public_message(error.message, settings), error.code, error.kind)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        code = "not_found" if error.status_code == 404 else "http_error"
        return _error(error.status_code, str(error.detail), code)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        return _error(400, "invalid request", "invalid_request")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return _error(500, "internal server error", "internal_error", "server_error")

    def _authorize(request: Request) -> None:
        if settings.api_key is None:
            return
        header = request.headers.get("authorization", "")
        if not hmac.compare_digest(header.encode(), f"Bearer {settings.api_key}".encode()):  # constant time
            raise ApiError(401, "invalid or missing API key (Authorization: Bearer <key>)", "invalid_api_key",
                           "authentication_error")

    open_routes = {route.strip() for route in settings.open_routes.split(",") if route.strip()}

    def _authorize_route(request: Request) -> None:
        if request.url.path not in open_routes:
            _authorize(request)

    @app.get("/health")
    async def health(request: Request) -> Any:
        _authorize_route(request)
        problem = engine.health()
        if problem is not None:  # a load balancer takes this replica out; the log says why
            log.error("health: %s", problem)
            return JSONResponse({"status": "error", "model": settings.model_name, "reason": problem}, 503)
        return {"status": "ok", "model": settings.model_name, "in_flight": admission.active}

    @app.get("/metrics")
    async def metrics_endpoint(request: Request) -> Response:
        _authorize_route(request)
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi_schema(request: Request) -> JSONResponse:
        _authorize_route(request)  # the API's description answers like the API: with the key
        return JSONResponse(app.openapi())

    @app.get("/v1/models")
    async def models(request: Request) -> dict[str, Any]:
        _authorize(request)
        return {"object": "list", "data": [{"id": settings.model_name, "object": "model", "created": 0,
                                            "owned_by": "hulumed"}]}

    service = ChatService(engine, settings, metrics, admission, batcher, stream_executor)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        _authorize(request)
        return await service.complete(request)

    return app


class ChatService:
    """One chat completion from request to reply: body, admission, checks, prepare, then the JSON answer or the
    SSE stream. Errors become replies through one table (``error_table.py``); every request leaves the queue and
    its scratch folder whatever happens."""

    def __init__(self, engine: Engine, settings: ServerSettings, metrics: ServerMetrics, admission: Admission,
                 batcher: Batcher, executor: ThreadPoolExecutor) -> None:
        self.engine, self.settings, self.metrics = engine, settings, metrics
        self.admission, self.batcher, self.executor = admission, batcher, executor

    async def complete(self, request: Request) -> Response:
        started = time.monotonic()
        settings, metrics = self.settings, self.metrics
        try:  # the body first: a client that never finishes its upload holds no queue slot, and times out
            body = await asyncio.wait_for(_read_body(request, settings.max_body_bytes), settings.body_timeout_s)
        except (ApiError, asyncio.TimeoutError) as error:
            if not isinstance(error, ApiError):
                error = ApiError(408, f"the request body did not arrive within {settings.body_timeout_s:g} s",
                                 "body_timeout")
            metrics.requests.labels(status=str(error.status)).inc()
            metrics.errors.labels(code=error.code).inc()
            return _error(error.status, error.message, error.code, error.kind)
        if not self.admission.try_enter():
            metrics.requests.labels(status="429").inc()
            metrics.errors.labels(code="queue_full").inc()
            return _error(429, "the server is busy; retry shortly", "queue_full", "rate_limit_error",
                          headers={"Retry-After": "1"})
        scratch = Path(tempfile.mkdtemp(prefix="hulumed-req-"))
        handed_to_stream = False
        status = 500
        try:
            payload, params, prepared = await self._prepared(body, scratch)
            request_id = completion_id()
            if payload.stream:
                handed_to_stream = True
                status = 200
                return StreamingResponse(
                    _stream(self.batcher, prepared, params, payload, request_id, settings, metrics, self.admission,
                            scratch, self.executor, started),
                    media_type="text/event-stream",
                    headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
                )
            reply = await self._answer(payload, params, prepared, request_id, started)
            status = 200
            return reply
        except ApiError as error:  # MediaRejected included
            status = error.status
            metrics.errors.labels(code=error.code).inc()
            return _error(error.status, public_message(error.message, settings), error.code, error.kind)
        finally:
            if not handed_to_stream:
                metrics.requests.labels(status=str(status)).inc()
                metrics.latency.observe(time.monotonic() - started)
                self.admission.leave()
                shutil.rmtree(scratch, ignore_errors=True)

    async def _prepared(self, body: bytes, scratch: Path) -> tuple[ChatCompletionRequest, GenerationParams, Prepared]:
        """The checks in the module docstring's order, then the media read once (``engine.prepare``)."""
        engine, settings = self.engine, self.settings
        problem = engine.health()
        if problem is not None:
            raise ApiError(503, f"the model cannot answer: {problem}", "engine_unavailable", "server_error")
        payload = _parse(body)
        if payload.model != settings.model_name:
            raise ApiError(404, f"model {payload.model!r} not found; this server serves {settings.model_name!r}",
                           "model_not_found")
        params = _params(payload, settings)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self.executor, _check_prompt, payload, engine, settings)
        conversation = await loop.run_in_executor(self.executor, _conversation, payload, settings, scratch)
        prepared = await loop.run_in_executor(
            self.executor, _prepare, engine, conversation, params, settings.max_visual_tokens
        )
        return payload, params, prepared

    async def _answer(self, payload: ChatCompletionRequest, params: GenerationParams, prepared: Prepared,
                      request_id: str, started: float) -> JSONResponse:
        try:
            result = await self.batcher.submit(prepared, params)
        except (HulumedError, ValueError) as error:
            raise api_error(error) from error
        usage = usage_block(result.prompt_tokens, result.completion_tokens, result.visual_tokens)
        _count_tokens(self.metrics, result.prompt_tokens, result.completion_tokens, result.visual_tokens)
        _log(request_id, 200, started, usage, payload if self.settings.log_content else None, stream=False)
        return JSONResponse(completion_response(
            request_id, self.settings.model_name, result.text, result.reasoning if payload.think else None,
            result.finish_reason, usage,
        ))


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, over_limit("the request body", "max_body_bytes", limit, int(declared)), "body_too_large")
    body = bytearray()
    async for block in request.stream():
        body.extend(block)
        if len(body) > limit:
            raise ApiError(413, over_limit("the request body", "max_body_bytes", limit), "body_too_large")
    return bytes(body)


def _parse(body: bytes) -> ChatCompletionRequest:
    try:
        raw = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ApiError(400, f"malformed JSON: {error}", "invalid_json") from error
    except RecursionError:
        raise ApiError(400, f"JSON nested deeper than {MAX_JSON_DEPTH} levels", "invalid_json") from None
    except ValueError as error:  # e.g. an integer of more than 4300 digits
        raise ApiError(400, f"malformed JSON: {str(error)[:120]}", "invalid_json") from None
    _check_json(raw)
    try:
        return ChatCompletionRequest.model_validate(raw)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise ApiError(400, f"invalid request: {where}: {first.get('msg')}", "invalid_request") from error


MAX_JSON_DEPTH = 32  # the chat format needs about 6 levels


def _check_json(raw: Any) -> None:
    """400 for JSON nested deeper than MAX_JSON_DEPTH (anywhere, ignored fields too) or holding strings that are
    not valid Unicode (lone surrogates such as "\\ud800", which no tokenizer, log or response can encode)."""
    stack: list[tuple[Any, int]] = [(raw, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise ApiError(400, "a string in the request is not valid Unicode (lone surrogate)",
                               "invalid_json") from None
            continue
        if not isinstance(value, (dict, list)):
            continue
        if depth > MAX_JSON_DEPTH:
            raise ApiError(400, f"JSON nested deeper than {MAX_JSON_DEPTH} levels", "invalid_json")
        items = list(value.items()) if isinstance(value, dict) else [(None, v) for v in value]
        for key, item in items:
            if key is not None:
                stack.append((key, depth))
            stack.append((item, depth + 1))


def _params(payload: ChatCompletionRequest, settings: ServerSettings) -> GenerationParams:
    max_tokens = (payload.max_completion_tokens or payload.max_tokens
                  or min(settings.default_max_tokens, settings.max_tokens_limit))
    if max_tokens > settings.max_tokens_limit:
        raise ApiError(400, f"max_tokens {max_tokens} is over this server's limit of {settings.max_tokens_limit}",
                       "max_tokens_too_large")
    stop = [payload.stop] if isinstance(payload.stop, str) else list(payload.stop or [])
    if len(stop) > settings.max_stop or any(not s or len(s) > settings.max_stop_chars for s in stop):
        raise ApiError(400, f"stop: at most {settings.max_stop} non-empty strings of at most "
                       f"{settings.max_stop_chars} characters", "invalid_stop")
    temperature = payload.temperature
    if temperature is not None and temperature < SAMPLING_EPS:
        temperature = 0.0  # as vLLM: a temperature this close to 0 is greedy (dividing by it overflows)
    try:
        structured = _structured(payload)
    except ValueError as error:
        raise ApiError(400, f"response_format: {error}", "invalid_response_format") from None
    try:
        return GenerationParams(
            max_new_tokens=max_tokens, temperature=temperature, top_p=payload.top_p, top_k=payload.top_k,
            repetition_penalty=payload.repetition_penalty, stop=stop, seed=payload.seed, think=payload.think,
            ignore_eos=payload.ignore_eos, structured=structured,
        )
    except ValueError as error:
        raise ApiError(400, str(error), "invalid_request") from error


def _structured(payload: ChatCompletionRequest) -> StructuredOutput | None:
    """OpenAI's ``response_format`` or vLLM's ``structured_outputs`` (not both)."""
    vllm_style = payload.structured_outputs
    if payload.response_format is not None and vllm_style:
        raise ValueError("give response_format or structured_outputs, not both")
    if vllm_style:
        if not isinstance(vllm_style, dict):
            raise ValueError("structured_outputs must be an object")
        fields = {("json_schema" if key == "json" else key): value for key, value in vllm_style.items()
                  if key in ("json", "regex", "choice", "json_object")}
        unknown = sorted(set(vllm_style) - {"json", "regex", "choice", "json_object"})
        if unknown:
            raise ValueError(f"structured_outputs: unsupported field(s) {', '.join(unknown)[:200]}")
        if isinstance(fields.get("json_schema"), str):  # vLLM sends the schema as JSON text too
            try:
                fields["json_schema"] = json.loads(fields["json_schema"])
            except json.JSONDecodeError:
                raise ValueError("structured_outputs.json is not valid JSON") from None
        return StructuredOutput.from_fields(fields)
    return StructuredOutput.from_openai(payload.response_format)


SAMPLING_EPS = 1e-5


def _check_prompt(payload: ChatCompletionRequest, engine: Engine, settings: ServerSettings) -> None:
    """400 when the text of the messages is over ``max_prompt_tokens``, found without tokenising all of it."""
    messages = [{"content": message.content} for message in payload.messages]
    try:
        check_text_tokens(conversation_texts(messages), engine.tokenizer, settings.max_prompt_tokens)
    except RequestTooLarge as error:
        raise api_error(RequestTooLarge(f"{error} (this server's limit)", code=error.code)) from error


def _conversation(payload: ChatCompletionRequest, settings: ServerSettings, scratch: Path) -> list[dict[str, Any]]:
    from ..conversation import validate

    conversation = MediaResolver(settings, scratch).conversation(payload.messages)
    try:
        return validate(conversation)
    except ValueError as error:
        raise ApiError(400, str(error), "invalid_messages") from error


def _prepare(engine: Engine, conversation: list[dict[str, Any]], params: GenerationParams,
             max_visual_tokens: int) -> Prepared:
    """Media read once, exact visual tokens (after reduction) checked against the server's limit."""
    try:
        return engine.prepare([conversation], params, max_visual_tokens=max_visual_tokens)
    except (HulumedError, ValueError) as error:  # one table: serve/error_table.py
        raise api_error(error) from error


def _count_tokens(metrics: ServerMetrics, prompt: int, completion: int, visual: int) -> None:
    metrics.prompt_tokens.inc(prompt)
    metrics.completion_tokens.inc(completion)
    metrics.visual_tokens.inc(visual)


def _log(
    request_id: str, status: int, started: float, usage: dict[str, Any] | None, payload: Any, stream: bool
) -> None:
    record: dict[str, Any] = {
        "event": "chat.completion", "id": request_id, "status": status, "stream": stream,
        "latency_ms": round((time.monotonic() - started) * 1000, 1),
    }
    if usage is not None:
        record["usage"] = usage
    if payload is not None:
        record["messages"] = [m.model_dump() for m in payload.messages]
    log.info(json.dumps(record, ensure_ascii=False, default=str))


async def _stream(batcher: Batcher, prepared: Prepared, params: GenerationParams,
                  payload: ChatCompletionRequest, request_id: str, settings: ServerSettings, metrics: ServerMetrics,
                  admission: Admission, scratch: Path, executor: ThreadPoolExecutor, started: float):
    """SSE events: a role chunk, content deltas, a final chunk with finish_reason and usage, then [DONE]."""
    loop = asyncio.get_running_loop()
    events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    cancel = threading.Event()
    finished: list[Any] = []

    def produce() -> None:
        try:
            for event in batcher.stream(prepared, params, cancel):
                if isinstance(event, StreamDelta):
                    loop.call_soon_threadsafe(events.put_nowait, ("delta", event.text))
                elif isinstance(event, StreamFinal):
                    finished.append(event.result)
                if cancel.is_set():
                    break
            loop.call_soon_threadsafe(events.put_nowait, ("done", None))
        except Exception as error:  # noqa: BLE001 - reported to the client as an error event
            loop.call_soon_threadsafe(events.put_nowait, ("error", error))

    worker = loop.run_in_executor(executor, produce)
    status = 200
    model = settings.model_name
    try:
        yield _sse(chunk(request_id, model, {"role": "assistant", "content": ""}))
        while True:
            kind, value = await events.get()
            if kind == "delta":
                yield _sse(chunk(request_id, model, {"content": value}))
            elif kind == "error":
                reply = api_error(value)  # the same status and code as the JSON route would answer
                status = reply.status
                if status >= 500:
                    log.error("stream failed: %s", type(value).__name__)
                message = public_message(reply.message, settings) if status < 500 else "internal server error"
                metrics.errors.labels(code=reply.code).inc()
                yield _sse(error_body(message, reply.kind, reply.code))
                break
            else:
                result = finished[0] if finished else None
                usage = (
                    usage_block(result.prompt_tokens, result.completion_tokens, result.visual_tokens)
                    if result else None
                )
                delta: dict[str, Any] = {}
                if result is not None and payload.think and result.reasoning is not None:
                    delta["reasoning"] = result.reasoning
                if result is not None:
                    _count_tokens(metrics, result.prompt_tokens, result.completion_tokens, result.visual_tokens)
                finish = result.finish_reason if result else "stop"
                yield _sse(chunk(request_id, model, delta, finish=finish, usage=usage))
                _log(request_id, 200, started, usage, payload if settings.log_content else None, stream=True)
                break
        yield "data: [DONE]\n\n"
    finally:
        # No await in here: when the client went away this task is being cancelled, and every await would
        # raise again. Stop the generation at its next token, free the slot now, clean up when it has stopped.
        cancel.set()
        metrics.requests.labels(status=str(status)).inc()
        metrics.latency.observe(time.monotonic() - started)
        admission.leave()
        worker.add_done_callback(lambda _: shutil.rmtree(scratch, ignore_errors=True))


def _sse(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"
