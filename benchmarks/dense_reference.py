"""Upstream's dense-mask vision attention, kept as the plain path for equivalence tests and benchmarks.

Upstream's ``sdpa`` encoder packs every frame of every item into one sequence of P patches and builds a
(1, P, P) boolean block-diagonal mask — O(P^2) memory (a 128-slice volume at 256 patches per slice is a
32k x 32k mask, and SDPA materialises float scores of that size too). Its ``eager`` path adds that boolean
mask to the scores (+1 inside a frame, +0 elsewhere) instead of masking, so frames leak into each other.

``dense_encode`` runs a ``HulumedVisionEncoder``'s own weights through that dense formulation:
``mode="masked"`` is upstream's sdpa semantics (correct, quadratic memory), ``mode="plus_one"`` is upstream's
eager bug (only for showing the difference). Never used by the model itself.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers.models.video_llama_3.modeling_video_llama_3 import apply_rotary_pos_emb_vision
from transformers.vision_utils import get_vision_cu_seqlens, get_vision_position_ids

from hulumed.model.vision_encoder import HulumedVisionEncoder


def block_diagonal_mask(grid_sizes: torch.Tensor, device: torch.device) -> torch.Tensor:  # (P, P) bool
    """True where two patches belong to the same frame (upstream builds exactly this, densely)."""
    cu = get_vision_cu_seqlens(grid_sizes).tolist()
    frame_of = torch.repeat_interleave(
        torch.arange(len(cu) - 1, device=device), torch.tensor(cu[1:], device=device) - torch.tensor(cu[:-1], device=device)
    )  # (P,)
    return frame_of[:, None] == frame_of[None, :]


@torch.no_grad()
def dense_encode(
    encoder: HulumedVisionEncoder,
    pixel_values: torch.Tensor,  # (P, 588)
    grid_sizes: torch.Tensor,  # (items, 3)
    merge_sizes: torch.Tensor,  # (items,)
    mode: str = "masked",
) -> torch.Tensor:  # (tokens, C)
    """The encoder forward with one dense (P, P) mask for all frames (``mode``: "masked" or "plus_one")."""
    config = encoder.config
    heads = config.num_attention_heads
    hidden = encoder.embeddings(pixel_values.to(encoder.dtype))  # (P, C)
    patches, channels = hidden.shape
    head_dim = channels // heads
    positions = get_vision_position_ids(grid_sizes, merge_sizes)  # (P, 2)
    cos, sin = encoder.rotary_pos_emb(hidden, positions)  # (P, head_dim) each
    mask = block_diagonal_mask(grid_sizes, hidden.device)  # (P, P)
    for layer in encoder.encoder.layers:
        residual = hidden
        x = layer.layer_norm1(hidden)
        attn = layer.self_attn
        q = attn.q_proj(x).view(patches, heads, head_dim)
        k = attn.k_proj(x).view(patches, heads, head_dim)
        v = attn.v_proj(x).view(patches, heads, head_dim)
        q, k = apply_rotary_pos_emb_vision(q, k, cos, sin)
        q, k, v = (t.transpose(0, 1).unsqueeze(0) for t in (q, k, v))  # (1, heads, P, head_dim)
        if mode == "masked":
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[None, None])
        elif mode == "plus_one":
            scores = torch.matmul(q, k.transpose(2, 3)) * attn.scaling + mask.to(q.dtype)[None, None]
            out = torch.matmul(torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype), v)
        else:
            raise ValueError(f"mode must be 'masked' or 'plus_one', not {mode!r}")
        out = out.squeeze(0).transpose(0, 1).reshape(patches, channels)  # (P, C)
        hidden = residual + attn.out_proj(out)
        hidden = hidden + layer.mlp(layer.layer_norm2(hidden))
    hidden = encoder.post_layernorm(hidden)
    return encoder.pixel_unshuffle(hidden, grid_sizes, merge_sizes)
