"""The ``hulumed demo`` verb: load the model once, serve the Gradio page (the ``demo`` extra).

    hulumed demo --model ./tiny-hulumed [--host 127.0.0.1] [--port 7860] [--backend hf|vllm] [--media-root DIR]
                 [every LoadOptions field: --device, --dtype, --volume-input, ...]

Gradio and the model are imported only when the verb runs, so ``hulumed --help`` stays fast without them.
"""

from __future__ import annotations

import argparse

from hulumed.commands import LOAD_FIELDS, add_load_options

DEMO_LOAD_FIELDS = (*LOAD_FIELDS, "backend")


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("demo", help="web demo: chat over images, videos and volumes (Gradio, loopback)")
    p.add_argument("--model", required=True, help="checkpoint folder or hub id")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback only)")
    p.add_argument("--port", type=int, default=7860, help="TCP port [7860]")
    p.add_argument("--media-root", help="also offer the files below this folder on the server")
    p.add_argument("--max-upload-mb", type=float, default=1024,
                   help="largest file a browser may upload, in MB (default 1024: a CT or MR study)")
    add_load_options(p, DEMO_LOAD_FIELDS)  # the LoadOptions fields, as every model-loading verb has them
    p.set_defaults(handler=run)
    return p


def _load(args: argparse.Namespace):
    import hulumed
    from hulumed.interface import LoadOptions
    from hulumed.options import option_values

    return hulumed.load(args.model, **option_values(args, LoadOptions, DEMO_LOAD_FIELDS))


def run(args: argparse.Namespace) -> int:
    from hulumed.errors import HulumedError

    if args.media_root is not None:  # the arguments first: a wrong one is said whatever is installed
        from pathlib import Path

        if not Path(args.media_root).is_dir():
            raise HulumedError(f"--media-root {args.media_root} is not a folder")
    import importlib.util

    if importlib.util.find_spec("gradio") is None:  # pragma: no cover - depends on the install
        raise HulumedError("hulumed demo needs the demo extra: pip install 'hulumed[demo]'")
    workspace = private_workspace()  # before gradio is imported: its upload cache goes there
    from .app import build_demo, launch

    engine = _load(args)
    print(f"hulumed demo: http://{args.host}:{args.port} (Ctrl+C to stop)", flush=True)
    launch(build_demo(engine, media_root=args.media_root, workspace=workspace), host=args.host, port=args.port,
           media_root=args.media_root, max_upload_mb=args.max_upload_mb)
    return 0


def private_workspace() -> str:
    """A folder only this user can read (0700), where Gradio keeps uploads and previews and the demo its
    per-session files; removed at exit (sessions remove their own part when their page closes)."""
    import atexit
    import os
    import shutil
    import signal
    import sys
    import tempfile

    folder = tempfile.mkdtemp(prefix="hulumed-demo-")  # mode 0700
    os.environ["GRADIO_TEMP_DIR"] = folder
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # a service stop cleans up too (atexit runs)
    return folder


def register(subparsers: argparse._SubParsersAction) -> None:
    """The hook ``hulumed.cli`` calls for every verb module."""
    add_parser(subparsers)
