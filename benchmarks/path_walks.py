"""How many of the package's functions and files one request passes through (a structure measure, issue 22).

Three request paths, each run once to warm up (model loaded, lazy imports done) and then traced with a profile
function installed in every thread before any starts (the server's and the scheduler's threads included):

* ``cli_volume``: ``hulumed generate --volume ct.nii.gz --slices 8`` in-process (the CLI's handler; weights
  loaded before tracing);
* ``http_image_stream``: one streamed ``/v1/chat/completions`` request with a data-URI image;
* ``eval_sample``: one VQA_RAD sample through ``run_benchmark``.

Counts distinct ``hulumed`` functions (code objects) and distinct ``hulumed`` files called while the request runs.
Prints a table and writes ``benchmarks/results/path_walks.json``; ``--out`` another path.

    python benchmarks/path_walks.py
"""

from __future__ import annotations

import argparse
import base64
import json
import platform
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = str(ROOT / "hulumed")
INPUTS = ROOT / "tests" / "fixtures" / "golden" / "inputs"
CHECKPOINT = ROOT / "tests" / "fixtures" / "golden" / "tiny-qwen2"


class Recorder:
    """A profile function installed in every thread before any is started (server, scheduler, workers), recording
    the package's code objects only while ``recording``."""

    def __init__(self) -> None:
        self.recording = False
        self.seen: set[Any] = set()

    def __call__(self, frame: Any, event: str, arg: Any) -> None:
        if self.recording and event == "call" and frame.f_code.co_filename.startswith(PACKAGE):
            self.seen.add(frame.f_code)

    def install(self) -> None:
        threading.setprofile(self)
        sys.setprofile(self)

    def traced(self, run: Callable[[], Any]) -> tuple[int, int]:
        """(functions, files) of the package called while ``run()`` runs, in every thread."""
        self.seen = set()
        self.recording = True
        try:
            run()
        finally:
            self.recording = False
        return len(self.seen), len({code.co_filename for code in self.seen})


def cli_volume(engine: Any) -> Callable[[], Any]:
    import hulumed.commands as commands
    from hulumed.cli import build_parser

    argv = ["generate", "--model", str(CHECKPOINT), "--volume", str(INPUTS / "volume.nii.gz"), "--slices", "8",
            "--temperature", "0", "--max-new-tokens", "4", "--json", "Findings?"]
    args = build_parser(argv).parse_args(argv)
    commands._engine = lambda _args: engine  # the loaded engine: the walk is the request, not the load
    return lambda: commands.cmd_generate(args)


def http_image_stream(engine: Any) -> tuple[Callable[[], Any], Any]:
    import httpx

    from hulumed.serve.background import serving
    from hulumed.serve.settings import ServerSettings

    context = serving(engine, ServerSettings(model_name="tiny"))
    url = context.__enter__()
    image = "data:image/png;base64," + base64.b64encode((INPUTS / "image_a.png").read_bytes()).decode()
    content = [{"type": "image_url", "image_url": {"url": image}}, {"type": "text", "text": "Describe."}]
    body = {"model": "tiny", "stream": True, "max_tokens": 4, "temperature": 0,
            "messages": [{"role": "user", "content": content}]}

    def run() -> None:
        with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=120) as reply:
            for _ in reply.iter_lines():
                pass

    return run, context


def eval_sample(engine: Any, folder: Path) -> Callable[[], Any]:
    from hulumed.eval.benchmarks import get_benchmark
    from hulumed.eval.runner import RunOptions, run_benchmark
    from hulumed.generation import GenerationParams

    sys.path.insert(0, str(ROOT))
    from tests.unit.test_eval_benchmarks import write_release

    write_release(folder / "data", "VQA_RAD")
    counter = iter(range(1000))
    return lambda: run_benchmark(engine, get_benchmark("VQA_RAD"), folder / "data", folder / f"out{next(counter)}",
                                 GenerationParams.greedy(3), RunOptions(limit=1))


def main() -> None:
    import tempfile

    import hulumed

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "path_walks.json"))
    out = Path(parser.parse_args().out)
    recorder = Recorder()
    recorder.install()  # before any thread starts, so the server's and the scheduler's threads are traced too
    engine = hulumed.load(CHECKPOINT, device="cpu")
    rows: dict[str, dict[str, int]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        http, context = http_image_stream(engine)
        paths = {"cli_volume": cli_volume(engine), "http_image_stream": http,
                 "eval_sample": eval_sample(engine, Path(scratch))}
        try:
            for name, run in paths.items():
                run()  # warm up: lazy imports, first compilations
                functions, files = recorder.traced(run)
                rows[name] = {"functions": functions, "files": files}
        finally:
            context.__exit__(None, None, None)
    print(f"{'path':<20} {'functions':>10} {'files':>6}")
    for name, row in rows.items():
        print(f"{name:<20} {row['functions']:>10} {row['files']:>6}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"device": f"CPU ({platform.processor() or platform.machine()})",
                               "checkpoint": "tests/fixtures/golden/tiny-qwen2", "paths": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
