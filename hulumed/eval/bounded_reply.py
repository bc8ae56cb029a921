"""Reading an OpenAI-compatible server's reply as untrusted input: a size cap, a total deadline, checked JSON.

An evaluated endpoint or an LLM judge is another machine: its reply can be endless, trickle one byte a second
(httpx's timeouts are per read, so that never times out), be gigabytes, nest JSON a million levels deep, or have
no ``choices``. ``post_json`` reads the body in chunks and stops at ``max_bytes`` or at the total deadline, and
parses it with those failures turned into ``EndpointError`` naming the URL — the caller decides to retry, record
an error or give up; nothing here grows without bound or raises a raw ``RecursionError`` / ``IndexError``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from ..errors import EndpointError

#: A chat completion of a few thousand tokens is tens of kilobytes; 16 MiB leaves room for any honest reply.
MAX_REPLY_BYTES = 16 * 2**20


@dataclass
class Reply:
    status: int
    headers: Any
    data: bytes  # the body, at most max_bytes
    json: Any = None  # parsed when the status is 200

    @property
    def text(self) -> str:
        return self.data.decode("utf-8", "replace")

    @property
    def is_redirect(self) -> bool:
        return 300 <= self.status < 400 and "location" in self.headers


def post_json(client: Any, url: str, body: dict[str, Any], *, timeout_s: float, headers: dict[str, str] | None = None,
              max_bytes: int = MAX_REPLY_BYTES) -> Reply:
    """One POST (redirects not followed), its body read in chunks: ``EndpointError`` when it is over ``max_bytes``,
    does not finish within ``timeout_s`` in total, or (status 200) is not JSON."""
    deadline = time.monotonic() + timeout_s
    with client.stream("POST", url, json=body, headers=headers, timeout=timeout_s,
                       follow_redirects=False) as response:
        chunks, size = [], 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > max_bytes:
                raise EndpointError(f"{url} sent a reply over {max_bytes // 2**20} MiB; stopped reading it")
            if time.monotonic() > deadline:
                raise EndpointError(f"{url} did not finish its reply within {timeout_s:g} s; stopped reading it")
            chunks.append(chunk)
        reply = Reply(response.status_code, response.headers, b"".join(chunks))
    if reply.status == 200:
        try:
            reply.json = json.loads(reply.data)
        except (UnicodeDecodeError, RecursionError, ValueError) as error:
            raise EndpointError(f"{url} answered with a reply that is not JSON ({type(error).__name__})") from None
    return reply


def check_stream(url: str, size: int, deadline: float, timeout_s: float, max_bytes: int = MAX_REPLY_BYTES) -> None:
    """The same two bounds for a streamed reply, checked as its lines arrive."""
    if size > max_bytes:
        raise EndpointError(f"{url} streamed over {max_bytes // 2**20} MiB; stopped reading it")
    if time.monotonic() > deadline:
        raise EndpointError(f"{url} did not finish its streamed reply within {timeout_s:g} s; stopped reading it")


def first_message(url: str, reply: Any) -> dict[str, Any]:
    """``choices[0]`` of a chat completion, or ``EndpointError`` naming what is missing."""
    choices = reply.get("choices") if isinstance(reply, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise EndpointError(f"{url} answered without choices (not a chat completion)")
    message = choices[0].get("message")
    if message is not None and not isinstance(message, dict):
        raise EndpointError(f"{url} answered a choice whose message is not an object")
    return choices[0]
