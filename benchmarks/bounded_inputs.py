"""Peak memory and time of every untrusted-input case (checkpoints, releases, endpoint replies, data files, demo
sessions, long prompts), each in a fresh subprocess, beside the honest case it is a variant of.

    python benchmarks/bounded_inputs.py [--out benchmarks/results/bounded_inputs.json] [--only NAME ...]

Each row: what the hostile input is, the outcome (exit code and the error's first words, or what was answered),
the wall time and the peak RSS of the process (VmHWM) — the process includes the interpreter, torch and the tiny
model, so the honest baseline row of the same verb is the level to compare with. Prints a table and writes JSON
naming the CPU (the machine may be shared). Before the fixes these cases hung for minutes, took the process past
6 GB or ended in a raw traceback (docs/security.md, "Untrusted files").
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import cpu_device  # benchmarks/ is on sys.path when run

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "fixtures" / "golden"
EVALDATA = ROOT / "tests" / "fixtures" / "evaldata"

HARNESS = r"""
import contextlib, io, sys, time, json
sys.path.insert(0, %(root)r)
started = time.monotonic()
err = io.StringIO()
outcome = ""
try:
    with contextlib.redirect_stderr(err):
%(body)s
except SystemExit as error:
    outcome = f"exit {error.code}"
except BaseException as error:
    outcome = f"{type(error).__name__}: {str(error)[:160]}"
hwm = next(int(l.split()[1]) * 1024 for l in open('/proc/self/status') if l.startswith('VmHWM:'))
lines = [l for l in err.getvalue().splitlines() if 'error' in l.lower()]
print(json.dumps({"seconds": time.monotonic() - started, "peak_rss": hwm, "outcome": outcome,
                  "message": (lines[-1] if lines else "")[:200]}))
"""


def _indent(code: str) -> str:
    return "\n".join("        " + line for line in code.strip().splitlines())


def run_case(body: str, timeout: int = 180) -> dict:
    script = HARNESS % {"root": str(ROOT), "body": _indent(body)}
    started = time.monotonic()
    try:
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})
    except subprocess.TimeoutExpired:
        return {"seconds": time.monotonic() - started, "peak_rss": None, "outcome": f"timeout after {timeout} s",
                "message": ""}
    try:
        return json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        return {"seconds": time.monotonic() - started, "peak_rss": None,
                "outcome": f"crashed rc={done.returncode}", "message": done.stderr.strip()[-200:]}


def _cli(*args: str) -> str:
    return f"from hulumed.cli import main\ncode = main({list(args)!r})\noutcome = 'exit ' + str(code)"


def _checkpoint(work: Path, name: str, config: dict | None = None, pre: dict | None = None,
                template: str | None = None) -> Path:
    folder = work / name
    shutil.copytree(GOLDEN / "tiny-qwen2", folder)
    for file, changes in (("config.json", config), ("preprocessor_config.json", pre)):
        if changes:
            raw = json.loads((folder / file).read_text())
            raw.update(changes)
            (folder / file).write_text(json.dumps(raw))
    if template is not None:
        (folder / "chat_template.json").write_text(json.dumps({"chat_template": template}))
    return folder


def _trillion_header(folder: Path) -> Path:
    path = folder / "model.safetensors"
    data = path.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + length])
    header[next(k for k in header if k != "__metadata__")]["shape"] = [10**6, 10**6]
    encoded = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + data[8 + length:])
    return folder


def cases(work: Path) -> list[tuple[str, str, str]]:
    """(name, what, body) of every case."""
    image = str(GOLDEN / "inputs" / "image_a.png")
    honest = _checkpoint(work, "honest")
    out: list[tuple[str, str, str]] = [
        ("info honest", "tiny checkpoint", _cli("info", str(honest))),
        ("info layers=1e6", "config.json num_hidden_layers 1,000,000",
         _cli("info", str(_checkpoint(work, "layers", {"num_hidden_layers": 10**6})))),
        ("generate honest", "tiny checkpoint, 1 token",
         _cli("generate", "--model", str(honest), "--device", "cpu", "--max-new-tokens", "1", "hi")),
        ("generate hidden=16384", "config.json hidden_size 16384 over the tiny weights",
         _cli("generate", "--model", str(_checkpoint(work, "hidden", {"hidden_size": 16384})), "--device", "cpu",
              "--max-new-tokens", "1", "hi")),
        ("info negative size", "config.json hidden_size -64",
         _cli("info", str(_checkpoint(work, "negative", {"hidden_size": -64})))),
        ("info 1e12-element header", "safetensors header declaring 10^12 elements",
         _cli("info", str(_trillion_header(_checkpoint(work, "header"))))),
        ("estimate honest", "tiny checkpoint, one image", _cli("estimate", "--model", str(honest), "--image", image,
                                                               "hi")),
        ("estimate min_tokens=1e7", "preprocessor_config.json min_tokens 10^7",
         _cli("estimate", "--model", str(_checkpoint(work, "mintok", pre={"min_tokens": 10**7})), "--image", image,
              "hi")),
        ("estimate patch_size=0", "preprocessor_config.json patch_size 0",
         _cli("estimate", "--model", str(_checkpoint(work, "patch", pre={"patch_size": 0})), "--image", image, "hi")),
        ("estimate 8 GB template", "chat template {% set s = 'x' * 8000000000 %}",
         _cli("estimate", "--model", str(_checkpoint(work, "tpl8g", template="{% set s = 'x' * 8000000000 %}{{ s }}")),
              "hi")),
        ("estimate nested loops", "chat template with two nested range(100000) loops",
         _cli("estimate", "--model", str(_checkpoint(work, "tplloop", template=(
             "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"))), "hi")),
    ]
    # benchmark release: a SLAKE copy whose imgs.zip inflates 1 GiB of zeros from ~1 MB
    data = work / "evaldata"
    shutil.copytree(EVALDATA / "SLAKE", data / "SLAKE")
    shutil.rmtree(data / "SLAKE" / "imgs")
    import zipfile

    with zipfile.ZipFile(data / "SLAKE" / "imgs.zip", "w", zipfile.ZIP_DEFLATED) as bundle:
        with bundle.open("imgs/xmlab1/source.jpg", "w", force_zip64=True) as member:
            block = b"\0" * 2**24
            for _ in range(64):
                member.write(block)
    out.append(("eval zip bomb", f"imgs.zip of {(data / 'SLAKE' / 'imgs.zip').stat().st_size // 1024} KB "
                "inflating to 1 GiB",
                f"from hulumed.eval.benchmarks import get_benchmark\nfrom pathlib import Path\n"
                f"get_benchmark('SLAKE').load(Path({str(data)!r}))"))
    # batch lines
    lines = work / "batch.jsonl"
    lines.write_text("\n".join([
        json.dumps({"id": "hi", "prompt": "hi"}), "[" * 100_000 + "]" * 100_000,
        '{"id": "big", "prompt": "x", "max_new_tokens": ' + "9" * 5000 + "}", '{"id": "sur", "prompt": "\\ud800"}',
        json.dumps({"id": "long", "prompt": "word " * 40_000}),
    ]) + "\n")
    out.append(("batch hostile lines", "deep JSON, 5,000-digit int, lone surrogate, 40k-token line beside 'hi'",
                _cli("batch", "--model", str(honest), "--device", "cpu", "--input", str(lines), "--output",
                     str(work / "batch.out.jsonl"), "--max-new-tokens", "2", "--no-progress")))
    fifo = work / "fifo.png"
    os.mkfifo(fifo)
    train = work / "train.jsonl"
    train.write_text(json.dumps({"conversation": [
        {"role": "user", "content": [{"type": "image", "image": "fifo.png"}, {"type": "text", "text": "?"}]},
        {"role": "assistant", "content": "ok"}]}) + "\n")
    out.append(("data check FIFO", "training record whose image is a FIFO", _cli("data", "check", str(train))))
    recipe = work / "recipe.yaml"
    recipe.write_text("model: m\noutput: o\ndata: d.jsonl\na: &a [x, x, x, x, x, x, x, x, x]\n"
                      + "".join(f"{n}: &{n} [" + ", ".join([f"*{p}"] * 9) + "]\n"
                                for p, n in zip("abcdefgh", "bcdefghi")))
    out.append(("train alias bomb", "recipe YAML with 9^9 leaves of aliases",
                f"from hulumed.train.recipe import build_recipe\nbuild_recipe({str(recipe)!r})"))
    # demo sessions: four attach a small-upload, large-voxel volume (axis 0 reads it whole) and clear it
    volume = work / "large_voxels.nii.gz"
    out.append(("demo 4 sessions", "4 sessions attach a 1.2 MB .nii.gz of 512x512x300 int16 (axis 0), then clear",
                f"""
import numpy as np, nibabel as nib, hulumed
from hulumed.demo.app import DemoApp
from hulumed.demo.session import DemoSession
data = np.zeros((512, 512, 300), np.int16); data[100:400, 100:400] = 300
nib.save(nib.Nifti1Image(data, np.eye(4)), {str(volume)!r}); del data
app = DemoApp(hulumed.load({str(GOLDEN / 'tiny-qwen2')!r}, device='cpu'), workspace={str(work / 'ws')!r})
held = []
for k in range(4):
    s, e = app.attach(DemoSession(), [{str(volume)!r}], key=f's{{k}}')
    s = app.update_volume(s, 0, 8, 'none (per-slice min-max, upstream)', None, None, key=f's{{k}}')
    app.panel(s, key=f's{{k}}'); held.append(app.held_bytes() >> 20)
for k in range(4):
    app.forget_session(f's{{k}}')
outcome = f'held MiB after clear {{app.held_bytes() >> 20}}; after each attach {{held}}'
"""))
    out.append(("demo 176 MP PNG", "attach a few-KB PNG of 16000x11000 pixels", f"""
from PIL import Image
import hulumed
from hulumed.demo.app import DemoApp
from hulumed.demo.session import DemoSession
Image.new('1', (16000, 11000)).save({str(work / 'huge.png')!r})
app = DemoApp(hulumed.load({str(GOLDEN / 'tiny-qwen2')!r}, device='cpu'), workspace={str(work / 'ws2')!r})
s, e = app.attach(DemoSession(), [{str(work / 'huge.png')!r}])
outcome = e[0][:120]
"""))
    # a long prompt beside short requests, concurrently (tiny model: 4 heads; the mask is rows x L x L)
    for name, shorts in (("24k prompt alone", 0), ("24k prompt + 6 short", 6)):
        out.append((name, "24,000-token prompt " + ("alone" if not shorts else f"sent with {shorts} short requests "
                                                    "from other threads"), f"""
import threading, hulumed
from hulumed.generation import GenerationParams
engine = hulumed.load({str(GOLDEN / 'tiny-qwen2')!r}, device='cpu', batch_size=8, batch_wait_ms=200)
params = GenerationParams.greedy(2)
convs = [[{{'role': 'user', 'content': 'word ' * 24000}}]] + [[{{'role': 'user', 'content': f'hi {{i}}'}}]
                                                          for i in range({shorts})]
threads = [threading.Thread(target=engine.generate, args=([c], params)) for c in convs]
[t.start() for t in threads]; [t.join() for t in threads]
outcome = 'answered'
"""))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bounded_inputs.json"))
    parser.add_argument("--only", nargs="*", help="names of cases to run (default: all)")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for name, what, body in cases(Path(scratch)):
            if args.only and name not in args.only:
                continue
            result = run_case(body)
            rows.append({"case": name, "input": what, **result})
            rss = f"{result['peak_rss'] / 2**20:,.0f} MiB" if result["peak_rss"] else "-"
            print(f"{name:<26} {result['seconds']:7.1f} s {rss:>10}  {result['outcome'][:60]}  "
                  f"{result['message'][:90]}", flush=True)
    device = cpu_device()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"device": device, "rows": rows}, indent=2) + "\n")
    print(f"device: {device}\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
