"""Server settings: every limit and switch of ``hulumed serve`` in one commented dataclass."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..interface import DEFAULT_MAX_PROMPT_TOKENS
from ..options import option
from ..processing.limits import DEFAULT_MAX_MEDIA_BYTES, DEFAULT_MAX_PIXELS


@dataclass
class ServerSettings:
    """Every limit and switch of ``hulumed serve`` (each field is a flag: ``hulumed.options``)."""

    model_name: str = option(
        "hulumed", "the model id clients send (default: --model; for a local folder its hub id when it is a hub "
        "download, else the folder's name)")
    api_key: str | None = option(None, "require 'Authorization: Bearer KEY' (or set HULUMED_API_KEY); else 401")
    media_root: Path | None = option(None, "allow local media paths below this folder (default: refused)")
    allow_remote_media: bool = option(False, "fetch http(s) media URLs (off by default)")
    remote_timeout_s: float = option(10.0, "total time limit for one remote fetch (not per read)")
    max_body_bytes: int = option(256 * 2**20, "whole request body (413 above): a CT uploaded as a data: URI fits")
    body_timeout_s: float = option(
        30.0, "the whole body must arrive within this (408 otherwise); no slot is held meanwhile")
    # what one media part may decode to is bounded by hulumed.processing.limits (voxels, pixels, inflated bytes)
    max_media_bytes: int = option(DEFAULT_MAX_MEDIA_BYTES, "one media part on disk or decoded: a CT / MR study fits")
    max_pixels: int = option(DEFAULT_MAX_PIXELS, "one image's width x height (decompression-bomb guard)")
    max_media_parts: int = option(16, "images + videos + volumes in one request")
    max_visual_tokens: int = option(32_768, "visual tokens one request may put in the prompt")
    max_tokens_limit: int = option(4096, "the largest max_tokens a request may ask for")
    max_prompt_tokens: int = option(
        DEFAULT_MAX_PROMPT_TOKENS, "text tokens of one request's messages, checked first")
    max_stop: int = option(16, "stop strings per request")
    max_stop_chars: int = option(256, "characters of one stop string")
    default_max_tokens: int = option(512, "max_tokens when a request does not say")
    max_batch_size: int = option(8, "requests answered together by one engine call")
    max_wait_ms: float = option(
        10.0, "how long the first request of a batch waits for company (LoadOptions.batch_wait_ms)")
    max_queue: int = option(64, "requests waiting; more are refused with 429 + Retry-After")
    log_content: bool = option(False, "log message text (off: logs carry ids, sizes, timings only)")
    open_routes: str = option(
        "/health,/metrics", "routes that answer without the API key, comma-separated ('' = none)")


# the `hulumed serve` flag that raises each size limit (a 413 names it)
SIZE_FLAGS = {"max_body_bytes": "--max-body-mb", "max_media_bytes": "--max-media-mb"}


def over_limit(what: str, field: str, limit: int, size: int | None = None) -> str:
    """A 413 message: what was too large, its size and the limit in MB, and the flag that raises the limit."""
    have = f" is {size / 2**20:,.1f} MB," if size is not None else " is"
    return (f"{what}{have} over this server's limit of {limit / 2**20:,.0f} MB; the operator can raise it "
            f"with hulumed serve {SIZE_FLAGS[field]}")
