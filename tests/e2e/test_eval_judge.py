"""The optional LLM judge against a stub OpenAI-compatible server on 127.0.0.1 (started here, never remote)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

import hulumed
from hulumed.cli import main
from hulumed.eval.benchmarks import get_benchmark
from hulumed.eval.judge import JudgeClient
from hulumed.eval.runner import RunOptions, run_benchmark
from hulumed.generation import GenerationParams
from tests.conftest import GOLDEN
from tests.unit.test_eval_benchmarks import write_release


class _Judge(BaseHTTPRequestHandler):
    """Answers <judge>0</judge> (correct) when the standard answer is 'liver', else <judge>1</judge>."""

    requests: ClassVar[list[tuple[str, dict, str | None]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Judge.requests.append((self.path, body, self.headers.get("Authorization")))
        prompt = body["messages"][0]["content"]
        verdict = "0" if "The standard answer: liver" in prompt else "1"
        content = f"<think>compared</think>\n<judge>{verdict}</judge>"
        if "# Rubric item" in prompt:  # HealthBench grading: the positive-point items are met, the rest not
            rubric = prompt.split("# Rubric item\n", 1)[1].split("\n", 1)[0]
            met = "json" if "[3]" in rubric else ""  # the 3-point item answered as bare JSON, others fenced
            grade = {"explanation": "stub", "criteria_met": not rubric.startswith("[-")}
            content = json.dumps(grade) if met else "```json\n" + json.dumps(grade) + "\n```"
        reply = {"choices": [{"message": {"role": "assistant", "content": content}}]}
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def judge_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Judge)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def engine():
    return hulumed.load(GOLDEN / "tiny-qwen2", device="cpu", batch_size=4)


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_judge_rescores_open_questions_only_on_vqa_rad(engine, judge_url: str, tmp_path: Path) -> None:
    _Judge.requests.clear()
    write_release(tmp_path / "data", "VQA_RAD")  # yes / liver / no
    options = RunOptions(judge=JudgeClient(judge_url, "judge-x", api_key="secret"))
    metrics = run_benchmark(engine, get_benchmark("VQA_RAD"), tmp_path / "data", tmp_path / "out",
                            GenerationParams.greedy(3), options)
    records = _lines(tmp_path / "out" / "VQA_RAD" / "predictions.jsonl")
    judged = [r for r in records if "judge" in r]
    assert [r["answer"] for r in judged] == ["liver"]  # VQA-RAD: only the open question goes to the judge
    assert judged[0]["judge"] is True and judged[0]["correct"] is True and "rule_correct" in judged[0]
    assert "<judge>0</judge>" in judged[0]["judge_reply"]
    [(path, body, auth)] = _Judge.requests
    assert path == "/v1/chat/completions" and auth == "Bearer secret"
    assert body["model"] == "judge-x" and body["temperature"] == 0
    assert "The question is: what organ?" in body["messages"][0]["content"]
    assert metrics["judge"] == {"url": judge_url, "model": "judge-x"}


def test_resume_with_judge_judges_finished_records(engine, judge_url: str, tmp_path: Path) -> None:
    _Judge.requests.clear()
    data, out = tmp_path / "data", tmp_path / "out"
    write_release(data, "SLAKE")  # judge "all": every question is judged
    benchmark, params = get_benchmark("SLAKE"), GenerationParams.greedy(3)
    run_benchmark(engine, benchmark, data, out, params, RunOptions(limit=2))  # judge off
    path = out / "SLAKE" / "predictions.jsonl"
    before = _lines(path)
    assert len(before) == 2 and not any("judge" in r for r in before) and not _Judge.requests
    metrics = run_benchmark(engine, benchmark, data, out, params, RunOptions(judge=JudgeClient(judge_url, "m")))
    after = _lines(path)
    assert metrics["count"] == len(after) == 3 and len(_Judge.requests) == 3  # 2 finished + 1 new, none skipped
    assert [r["id"] for r in after[:2]] == [r["id"] for r in before]  # rewritten in place, order kept
    for old, new in zip(before, after):
        assert new["response"] == old["response"] and new["rule_correct"] == old["correct"]
        assert new["judge"] is (old["answer"] == "liver") and new["correct"] is new["judge"]
    assert not list((out / "SLAKE").glob("*.tmp"))
    # a record whose judge did not answer is judged again on the next resume; judged ones are left alone
    after[0].update(judge=None, correct=False)
    path.write_text("".join(json.dumps(r) + "\n" for r in after))
    _Judge.requests.clear()
    run_benchmark(engine, benchmark, data, out, params, RunOptions(judge=JudgeClient(judge_url, "m")))
    assert len(_Judge.requests) == 1 and _lines(path)[0]["judge"] is not None
    assert _lines(path)[0]["rule_correct"] == before[0]["correct"]


def test_scored_text_of_a_finished_record() -> None:
    from hulumed.eval.runner import _scored_text

    record = {"response": "<think>hmm</think>\n\nthe liver"}
    assert _scored_text(record, "fixed") == "the liver"
    assert _scored_text(record, "upstream") == record["response"]
    assert _scored_text({"response": "plain"}, "fixed") == "plain"


def test_cli_judge_all_on_slake_and_unreachable_judge(judge_url: str, tmp_path: Path) -> None:
    _Judge.requests.clear()
    write_release(tmp_path / "data", "SLAKE")
    code = main(["eval", "--model", str(GOLDEN / "tiny-qwen2"), "--benchmarks", "slake", "--data-dir",
                 str(tmp_path / "data"), "--output", str(tmp_path / "out"), "--max-new-tokens", "2", "--device",
                 "cpu", "--judge-url", judge_url, "--judge-model", "m"])
    assert code == 0
    records = _lines(tmp_path / "out" / "SLAKE" / "predictions.jsonl")
    assert len(_Judge.requests) == 3 and all(r["judge"] is False for r in records)  # SLAKE: every question

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}/v1"
    client = JudgeClient(dead, "m", retries=1, timeout=2)
    assert client.judge([("q", "a", "r")]) == [(None, None)]


class _Redirect(BaseHTTPRequestHandler):
    """Answers every POST with a 302 to another address (another port: another origin)."""

    target: ClassVar[str] = ""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(302)
        self.send_header("Location", _Redirect.target)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


class _Elsewhere(BaseHTTPRequestHandler):
    """The redirect's target: records every request (any method) with its Authorization header."""

    seen: ClassVar[list[tuple[str, str | None]]] = []

    def _record(self) -> None:
        _Elsewhere.seen.append((self.command, self.headers.get("Authorization")))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        data = json.dumps({"choices": [{"message": {"content": "<judge>0</judge>"}}]}).encode()
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _record

    def log_message(self, *args: object) -> None:
        pass


def _serve(handler: type) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_the_judge_key_never_follows_a_redirect():
    """A judge URL that redirects elsewhere: the error says so, and the other address sees nothing (no key)."""
    from hulumed.errors import EndpointError

    _Elsewhere.seen.clear()
    elsewhere, redirect = _serve(_Elsewhere), _serve(_Redirect)
    _Redirect.target = f"http://127.0.0.1:{elsewhere.server_address[1]}/v1/chat/completions"
    try:
        client = JudgeClient(f"http://127.0.0.1:{redirect.server_address[1]}/v1", "judge", api_key="judge-secret",
                             retries=1)
        with pytest.raises(EndpointError, match="redirect"):
            client.complete("Is the liver shown?")
    finally:
        for server in (elsewhere, redirect):
            server.shutdown()
            server.server_close()
    assert _Elsewhere.seen == []


def test_healthbench_is_graded_rubric_by_rubric(engine, judge_url: str, tmp_path: Path) -> None:
    """Each answer's three rubric items go to the judge with simple-evals' grader prompt; met: +5, +3; not met: -8
    -> score 8/8 per sample; the run's score is the clipped mean; tags are scored too."""
    data, out = tmp_path / "data", tmp_path / "out"
    write_release(data, "HealthBench")
    _Judge.requests.clear()
    judge = JudgeClient(judge_url, "grader")
    metrics = run_benchmark(engine, get_benchmark("HealthBench"), data, out, GenerationParams.greedy(8),
                            RunOptions(judge=judge))
    grading = [b for _, b, _ in _Judge.requests if "# Rubric item" in b["messages"][0]["content"]]
    assert len(grading) == 9 and all(b["temperature"] == 0 for b in grading)
    prompt = grading[0]["messages"][0]["content"]
    assert "user: I have had a headache for two days.\n\nassistant: Any fever or stiff neck?" in prompt
    assert metrics["score"] == 1.0 and metrics["ungraded"] == 0 and metrics["count"] == 3
    assert metrics["metrics"]["axis:completeness"] == 1.0 and metrics["metrics"]["theme:emergency_referrals"] == 1.0
    records = _lines(out / "HealthBench" / "predictions.jsonl")
    assert all(len(r["rubric_grades"]) == 3 and r["judge"] == 1.0 for r in records)
