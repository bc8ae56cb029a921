"""Text work per streamed token over a long answer: re-decoding every id (the old streaming loops) against the
incremental detokenizer both backends use now (``hulumed/detokenizer.py``), each followed by the same
``visible_prefix`` (think / stop-string hold-back) the engines apply.

    python benchmarks/stream_detokenize.py [--tokens 2000] [--out benchmarks/results/stream_detokenize.json]

The answer is a radiology-style text tokenised with the tiny checkpoint's Qwen2.5 tokenizer (the released
models' vocabulary), streamed one id at a time. Prints microseconds per token for each 250-token window (flat =
O(1) per token, O(n) for the answer) and writes JSON naming the CPU.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from machine import cpu_device  # benchmarks/ is on sys.path when run

ROOT = Path(__file__).resolve().parent.parent
REPORT = ("Findings: The lungs are clear without focal consolidation, effusion or pneumothorax. A 5 µm nodule "
          "in the right upper lobe, stable. Heart size normal; mediastinal contours unremarkable. 肺结节 ≥ 3 mm. "
          "Impression: No acute cardiopulmonary process. ")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=2000)
    parser.add_argument("--window", type=int, default=250)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "stream_detokenize.json"))
    args = parser.parse_args()
    from transformers import AutoTokenizer

    from hulumed.detokenizer import IncrementalDetokenizer
    from hulumed.think import visible_prefix

    tokenizer = AutoTokenizer.from_pretrained(ROOT / "tests" / "fixtures" / "golden" / "tiny-qwen2")
    ids: list[int] = []
    while len(ids) < args.tokens:
        ids += tokenizer.encode(REPORT, add_special_tokens=False)
    ids = ids[: args.tokens]

    def full(k: int, state: dict) -> str:
        return visible_prefix(tokenizer.decode(ids[:k], skip_special_tokens=True), [])

    def incremental(k: int, state: dict) -> str:
        return visible_prefix(state.setdefault("d", IncrementalDetokenizer(tokenizer)).add(ids[k - 1]), [])

    rows, texts = {}, {}
    for name, step in (("re-decode all ids", full), ("incremental", incremental)):
        state: dict = {}
        per_window, started, text = [], time.perf_counter(), ""
        for k in range(1, len(ids) + 1):
            text = step(k, state)
            if k % args.window == 0:
                now = time.perf_counter()
                per_window.append(round((now - started) / args.window * 1e6, 1))
                started = now
        rows[name], texts[name] = per_window, text
    assert texts["incremental"] == texts["re-decode all ids"], "the two loops must stream the same text"
    print(f"microseconds of text work per token, per {args.window}-token window ({len(ids)} tokens)")
    print(f"{'tokens up to':>20} " + " ".join(f"{(i + 1) * args.window:>7}" for i in range(len(rows['incremental']))))
    for name, values in rows.items():
        print(f"{name:>20} " + " ".join(f"{v:>7.1f}" for v in values))
    device = cpu_device()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"device": device, "tokens": len(ids), "window": args.window,
                                          "us_per_token": rows}, indent=2) + "\n")
    print(f"device: {device}\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
