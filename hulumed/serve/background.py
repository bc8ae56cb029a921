"""Run the server in a background thread on a free loopback port (notebooks, tests, benchmarks).

    with serving(engine, ServerSettings(model_name="tiny")) as url:
        OpenAI(base_url=f"{url}/v1", api_key="none").chat.completions.create(...)
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from ..interface import Engine
from .app import create_app
from .settings import ServerSettings


@contextmanager
def serving(engine: Engine, settings: ServerSettings, host: str = "127.0.0.1", timeout_s: float = 30) -> Iterator[str]:
    """Start uvicorn on ``host`` and a free port, yield its base URL, stop it on exit."""
    import uvicorn

    with socket.socket() as probe:
        probe.bind((host, 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(engine, settings), host=host, port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the server did not start on {host}:{port}")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=timeout_s)
