"""Upstream's repetition penalty for vLLM: it counts generated tokens only.

Upstream generates from ``inputs_embeds``, so transformers' ``RepetitionPenaltyLogitsProcessor`` never sees the
prompt ids and penalises only the new tokens; vLLM's built-in ``repetition_penalty`` counts prompt and output
tokens, which changes answers (a prompt's ``\\n`` becomes less likely). This per-request logits processor applies
the transformers rule (logit < 0: times p, else divided by p, once per distinct token) to the generated tokens of
requests whose ``SamplingParams.extra_args`` carry ``hulumed_repetition_penalty``; ``VllmEngine`` sends it there.
With ``vllm serve``: ``--logits-processors hulumed.vllm_plugin.penalty:GeneratedTokensRepetitionPenalty`` and
``"vllm_xargs": {"hulumed_repetition_penalty": 1.05}`` in the request.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from vllm import SamplingParams
from vllm.v1.sample.logits_processor import AdapterLogitsProcessor

EXTRA_ARG = "hulumed_repetition_penalty"


def penalise_generated(penalty: float) -> Callable[[list[int], torch.Tensor], torch.Tensor]:
    """transformers' repetition penalty over ``output_ids`` only, on one request's logits (vocab,)."""

    def apply(output_ids: list[int], logits: torch.Tensor) -> torch.Tensor:
        if not output_ids:
            return logits
        ids = torch.tensor(sorted(set(output_ids)), dtype=torch.long, device=logits.device)
        score = logits[ids]
        logits[ids] = torch.where(score < 0, score * penalty, score / penalty)
        return logits

    return apply


class GeneratedTokensRepetitionPenalty(AdapterLogitsProcessor):
    """vLLM v1 logits processor: upstream's penalty for requests that ask for it."""

    @classmethod
    def validate_params(cls, params: SamplingParams) -> None:
        value = (params.extra_args or {}).get(EXTRA_ARG)
        if value is not None and float(value) <= 0:
            raise ValueError(f"{EXTRA_ARG} must be > 0, got {value}")

    def is_argmax_invariant(self) -> bool:
        return False

    def new_req_logits_processor(self, params: SamplingParams) -> Callable | None:
        value = (params.extra_args or {}).get(EXTRA_ARG)
        if value is None or float(value) == 1.0:
            return None
        return penalise_generated(float(value))
