"""Start-up time of the command line and of ``import hulumed``, before any model work.

    python benchmarks/startup.py [--code /work/main] [--label before] [--repeat 5] [--out FILE]

Four measurements, each a fresh ``python`` subprocess with ``PYTHONPATH`` set to ``--code`` (the checkout whose
``hulumed`` is timed; default: this one):

* ``hulumed --help``, ``hulumed eval --list``  (``python -m hulumed ...``; warm)
* ``import hulumed`` warm: bytecode caches in place (the median of ``--repeat`` runs; the first run fills the
  caches and is not counted);
* ``import hulumed`` cold: no bytecode cache for any module (``PYTHONPYCACHEPREFIX`` pointed at an empty folder,
  so torch, transformers and hulumed are compiled from source as on the first run after an install). The OS file
  cache is not dropped, so "cold" is a lower bound.

Also records whether torch was imported. Prints a table and writes JSON (benchmarks/results/startup-LABEL.json
unless ``--out``), naming the CPU, core count and load average: the machine may be shared, and wall-clock times
on a loaded machine are longer than on an idle one.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import cpu_device  # benchmarks/ is on sys.path when run

ROOT = Path(__file__).resolve().parents[1]
CASES = {
    "hulumed --help": ["-m", "hulumed", "--help"],
    "hulumed eval --list": ["-m", "hulumed", "eval", "--list"],
    "import hulumed": ["-c", "import hulumed"],
}
PROBE = "import sys, hulumed; print('torch' in sys.modules, hulumed.__file__)"




NEUTRAL = tempfile.gettempdir()  # the working directory: `python -c/-m` put it first on sys.path


def _run(args: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, cwd=NEUTRAL)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed: {done.stderr[-1000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--code", default=str(ROOT), help="checkout whose hulumed is timed (PYTHONPATH)")
    parser.add_argument("--label", default="after", help="name of this measurement (before / after)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", help="JSON file (default benchmarks/results/startup-LABEL.json)")
    args = parser.parse_args()

    env = {**os.environ, "PYTHONPATH": args.code, "HF_HUB_OFFLINE": "1"}
    env.pop("PYTHONPYCACHEPREFIX", None)
    rows: dict[str, float] = {}
    for name, command in CASES.items():
        _run(command, env)  # fills the bytecode caches
        rows[f"{name} (warm)"] = statistics.median(_run(command, env) for _ in range(args.repeat))
    with tempfile.TemporaryDirectory() as empty:
        rows["import hulumed (cold)"] = _run(CASES["import hulumed"], {**env, "PYTHONPYCACHEPREFIX": empty})
    probe = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, cwd=NEUTRAL)
    torch_imported = probe.stdout.split()[0] == "True"
    if not probe.stdout.split()[-1].startswith(str(Path(args.code).resolve())):
        raise SystemExit(f"timed the wrong hulumed: {probe.stdout.split()[-1]} is not under {args.code}")

    device = cpu_device()
    print(f"start-up, {args.label} ({args.code}), {device}")
    print(f"{'command':<28} {'seconds':>8}")
    for name, seconds in rows.items():
        print(f"{name:<28} {seconds:>8.2f}")
    print(f"import hulumed imports torch: {torch_imported}")
    out = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / f"startup-{args.label}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"label": args.label, "code": args.code, "device": device, "repeat": args.repeat,
                               "seconds": rows, "import_hulumed_imports_torch": torch_imported}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
