"""Server settings: every limit and switch of ``hulumed serve`` in one commented dataclass."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..interface import DEFAULT_MAX_PROMPT_TOKENS
from ..processing.limits import DEFAULT_MAX_MEDIA_BYTES, DEFAULT_MAX_PIXELS


@dataclass
class ServerSettings:
    model_name: str = "hulumed"  # the id /v1/models lists and requests must name
    api_key: str | None = None  # when set, requests need "Authorization: Bearer <key>" (else 401)
    media_root: Path | None = None  # local media paths are allowed only below this folder (None: refused)
    allow_remote_media: bool = False  # fetch http(s) media URLs (off by default)
    remote_timeout_s: float = 10.0  # total time limit for one remote fetch (not per read)
    max_body_bytes: int = 256 * 2**20  # whole request body (413 above): a CT uploaded as a data: URI fits
    body_timeout_s: float = 30.0  # the whole body must arrive within this (408 otherwise); no slot is held meanwhile
    max_media_bytes: int = DEFAULT_MAX_MEDIA_BYTES  # one media part on disk or decoded: a CT / MR study fits;
    # what it may decode to is bounded by hulumed.processing.limits (voxels, pixels, inflated bytes)
    max_pixels: int = DEFAULT_MAX_PIXELS  # one image's width x height (decompression-bomb guard)
    max_media_parts: int = 16  # images + videos + volumes in one request
    max_visual_tokens: int = 32_768  # visual tokens one request may put in the prompt
    max_tokens_limit: int = 4096  # the largest max_tokens a request may ask for
    max_prompt_tokens: int = DEFAULT_MAX_PROMPT_TOKENS  # text tokens of one request's messages, checked first
    max_stop: int = 16  # stop strings per request
    max_stop_chars: int = 256  # characters of one stop string
    default_max_tokens: int = 512  # when a request does not say
    max_batch_size: int = 8  # requests answered together by one engine call
    max_wait_ms: float = 10.0  # how long the first request of a batch waits for company (LoadOptions.batch_wait_ms)
    max_queue: int = 64  # requests waiting; more are refused with 429 + Retry-After
    log_content: bool = False  # log message text (off: logs carry ids, sizes, timings only)
    open_routes: str = "/health,/metrics"  # routes answered without the API key (comma-separated; "" = none)


# the `hulumed serve` flag that raises each size limit (a 413 names it)
SIZE_FLAGS = {"max_body_bytes": "--max-body-mb", "max_media_bytes": "--max-media-mb"}


def over_limit(what: str, field: str, limit: int, size: int | None = None) -> str:
    """A 413 message: what was too large, its size and the limit in MB, and the flag that raises the limit."""
    have = f" is {size / 2**20:,.1f} MB," if size is not None else " is"
    return (f"{what}{have} over this server's limit of {limit / 2**20:,.0f} MB; the operator can raise it "
            f"with hulumed serve {SIZE_FLAGS[field]}")
