"""The vision-to-language projector (``mm_projector``).

``mlp{N}x_gelu``: Linear(C_vision -> H), then (N-1) x [GELU (exact erf), Linear(H -> H)], held in a
``readout`` Sequential so the checkpoint names are ``model.mm_projector.readout.{0,2}.*`` for ``mlp2x_gelu``
(index 1 is the parameter-free GELU). ``linear`` is a single Linear (``readout.0``).
Reference: upstream's `mlp2x_gelu` projector (HF-Version remote code).
"""

from __future__ import annotations

import re

import torch
from torch import nn

from ..errors import CheckpointError


class HulumedProjector(nn.Module):
    """(tokens, C_vision) -> (tokens, H)."""

    def __init__(self, projector_type: str, vision_hidden_size: int, hidden_size: int) -> None:
        super().__init__()
        layers: list[nn.Module]
        if projector_type == "linear":
            layers = [nn.Linear(vision_hidden_size, hidden_size)]
        else:
            match = re.fullmatch(r"mlp(\d+)x_gelu", projector_type)
            if match is None:
                raise CheckpointError(
                    f"unsupported mm_projector_type {projector_type!r}; Hulu-Med checkpoints use 'mlp2x_gelu' "
                    "(also accepted: 'mlpNx_gelu', 'linear')"
                )
            layers = [nn.Linear(vision_hidden_size, hidden_size)]
            for _ in range(int(match.group(1)) - 1):
                layers += [nn.GELU(), nn.Linear(hidden_size, hidden_size)]
        self.readout = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:  # (tokens, C_vision) -> (tokens, H)
        return self.readout(features)
