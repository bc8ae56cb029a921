"""The optional LLM judge: MedUniEval's comparison prompt sent to any OpenAI-compatible chat endpoint.

Off by default; ``hulumed eval --judge-url URL --judge-model M [--judge-api-key K]`` turns it on (our own
``hulumed serve`` works). Which samples it re-scores is upstream's choice per benchmark (``Benchmark.judge``:
VQA-RAD its open questions, SLAKE and PathVQA all of them). Upstream's prompt asks for
``<think>…</think><judge>0|1</judge>`` with 0 meaning correct; the verdict is correct iff the text between the
first ``<judge>`` and ``</judge>`` tags is ``0``. Requests use temperature 0 and ``max_tokens`` 4000 as upstream;
unlike upstream (1000 tries, 10 s apart) a request is tried ``retries`` times and then recorded as a failed
judgement (``judge: null``, scored wrong) rather than hanging the run.
"""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from ..errors import EndpointError

#: MedUniEval ``utils.get_compare_messages`` (whitespace included).
JUDGE_PROMPT = """
Your task is to determine whether the user's answer is correct based on the provided questions and standard answers (for example, if the user expresses a similar meaning to the standard answer, or another interpretation of the standard answer, it is considered correct.)

The question is: {question}

The standard answer: {answer}

The user's answer: {response}

Please strictly follow the following format for output(0 represents correct, 1 represents incorrect):
<think>{{your concise think step}}</think>
<judge>{{0/1}}</judge>

for example:
<think>The standard answer is right, and the user's answer is right frontal lobe, they express the same meaning, so it is correct.</think>
<judge>0</judge>
    """

_JUDGE_TAG = re.compile(r"<judge>(.*?)</judge>", re.DOTALL)


def judge_prompt(question: str, answer: str, response: str) -> str:
    return JUDGE_PROMPT.format(question=question, answer=answer, response=response)


def parse_judgement(text: str | None) -> bool | None:
    """True (judged correct: ``<judge>0</judge>``), False (any other tag content), None (no tag / no answer)."""
    if not text:
        return None
    found = _JUDGE_TAG.findall(text)
    if not found:
        return None
    return " ".join(part.strip() for part in found).strip() == "0"


@dataclass
class JudgeClient:
    """POSTs to ``{url}/chat/completions`` (``url`` like ``http://host:port/v1``)."""

    url: str
    model: str
    api_key: str | None = None
    retries: int = 3
    timeout: float = 180.0
    workers: int = 8

    def complete(self, prompt: str) -> str | None:
        """The judge's reply to ``prompt``, or None after ``retries`` failed tries. Redirects are not followed: the
        API key goes to ``url`` and nowhere else, so an answer that redirects is an ``EndpointError``."""
        import httpx

        body = {"model": self.model, "messages": [{"role": "user", "content": prompt}], "temperature": 0,
                "max_tokens": 4000}
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        endpoint = self.url.rstrip("/") + "/chat/completions"
        from .bounded_reply import first_message, post_json

        for attempt in range(self.retries):
            try:
                with httpx.Client() as client:  # bounded: size cap and a total deadline (bounded_reply.py)
                    reply = post_json(client, endpoint, body, headers=headers, timeout_s=self.timeout)
                if reply.is_redirect:
                    raise EndpointError(
                        f"the judge at {endpoint} answered HTTP {reply.status} (a redirect to "
                        f"{reply.headers.get('location', '?')}); redirects are not followed, so the judge's key "
                        "reaches no other address. Pass the final URL as --judge-url."
                    )
                if reply.status == 200:
                    content = (first_message(endpoint, reply.json).get("message") or {}).get("content")
                    if isinstance(content, str):
                        return content
            except EndpointError as error:
                if "redirect" in str(error):
                    raise
            except httpx.HTTPError:
                pass
            if attempt + 1 < self.retries:
                time.sleep(min(2 ** attempt, 10))
        return None

    def judge(self, items: list[tuple[str, str, str]]) -> list[tuple[bool | None, str | None]]:
        """(question, reference, response) triples -> (verdict, the judge's raw reply), in order."""
        prompts = [judge_prompt(q, a, r) for q, a, r in items]
        with ThreadPoolExecutor(max_workers=max(1, min(self.workers, len(prompts) or 1))) as pool:
            replies = list(pool.map(self.complete, prompts))
        return [(parse_judgement(reply), reply) for reply in replies]
