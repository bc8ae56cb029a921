"""SigLIP-NaViT vision encoder with 2D RoPE, per-frame attention and the 2x2 bilinear merge.

Hulu-Med's encoder is architecturally transformers' ``VideoLlama3VisionModel``: the checkpoint tensors
``model.vision_encoder.{embeddings,encoder,post_layernorm}.*`` load into it unchanged and it reproduces the
upstream outputs (see tests/parity). We therefore subclass it and add only what Hulu-Med needs:

* the Hulu-Med argument names (``grid_sizes`` instead of ``grid_thw``) and a plain tensor return value;
* frame chunking: frames never attend to each other, so long videos / volumes are encoded ``frame_chunk_size``
  frames at a time with bounded peak memory and bit-identical results.

* frame batching: transformers' sdpa / eager paths call attention once per frame in a Python loop (27 layers
  x 128 slices = 3456 calls for one volume). ``HulumedVisionAttention`` stacks consecutive frames of equal
  length (all frames of one item) into the batch dimension of one call instead; equal to the loop (tested),
  and the loop stays available (``frame_batching=False``).

Attention backends (``config._attn_implementation``), none of which builds a P x P mask:
  ``sdpa``               SDPA over (frames, heads, L, d) batches (memory linear in the number of frames) — default;
  ``eager``              matmul + softmax per frame (correct masking; upstream's eager adds the mask as +1);
  ``flash_attention_2``  varlen kernel over ``cu_seqlens`` when flash-attn is installed.
Upstream's dense-mask path is kept only as a test/benchmark reference in ``benchmarks/dense_reference.py``.

Glossary: P = patches of all frames of all items; t, gh, gw = frames and patch grid of one item; m = merge
size (1 images, 2 video/3D); C = encoder hidden size; tokens = sum over items of t * (gh/m) * (gw/m).
Reference: upstream's HF-Version remote code (`modeling_hulumed_encoder.py`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.models.video_llama_3.modeling_video_llama_3 import (
    VideoLlama3VisionAttention,
    VideoLlama3VisionModel,
    apply_rotary_pos_emb_vision,
    eager_attention_forward,
)
from transformers.utils.generic import is_flash_attention_requested

from .configuration import HulumedVisionEncoderConfig

# Upper bound on attention scores materialised by one batched call (eager path): frames * heads * L * L.
_MAX_SCORES_PER_CALL = 2**27


class HulumedVisionAttention(VideoLlama3VisionAttention):
    """Per-frame attention with equal-length frames batched into one call (same weights and names)."""

    frame_batching: bool = True

    def forward(  # type: ignore[override]
        self,
        hidden_states: torch.Tensor,  # (P, C)
        cu_seqlens: torch.Tensor,  # (frames + 1,) int32
        position_embeddings: tuple[torch.Tensor, torch.Tensor],  # cos, sin: (P, head_dim)
        max_seqlen: int | None = None,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, None]:
        if not self.frame_batching or is_flash_attention_requested(self.config):
            return super().forward(hidden_states, cu_seqlens, position_embeddings, max_seqlen=max_seqlen, **kwargs)
        patches = hidden_states.shape[0]
        shape = (patches, self.num_heads, self.head_dim)
        query = self.q_proj(hidden_states).view(shape)
        key = self.k_proj(hidden_states).view(shape)
        value = self.v_proj(hidden_states).view(shape)
        cos, sin = position_embeddings
        query, key = apply_rotary_pos_emb_vision(query, key, cos, sin)  # (P, heads, d) each
        attention: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        outputs = []
        for start, frames, length in _equal_length_runs(cu_seqlens, self.num_heads):
            stop = start + frames * length
            q, k, v = (
                t[start:stop].view(frames, length, self.num_heads, self.head_dim).transpose(1, 2)
                for t in (query, key, value)
            )  # (frames, heads, L, d)
            out, _ = attention(
                self, q, k, v, attention_mask=None, scaling=self.scaling,
                dropout=0.0 if not self.training else self.attention_dropout, is_causal=False,
            )  # (frames, L, heads, d)
            outputs.append(out.reshape(frames * length, -1))
        attn_output = torch.cat(outputs, dim=0) if len(outputs) > 1 else outputs[0]  # (P, C)
        return self.out_proj(attn_output), None


def _equal_length_runs(cu_seqlens: torch.Tensor, heads: int) -> list[tuple[int, int, int]]:
    """(first patch, frames, frame length) for runs of consecutive equal-length frames, split to bound memory."""
    bounds = cu_seqlens.tolist()
    runs: list[tuple[int, int, int]] = []
    for begin, end in zip(bounds[:-1], bounds[1:]):
        length = end - begin
        cap = max(1, _MAX_SCORES_PER_CALL // max(heads * length * length, 1))
        if runs and runs[-1][2] == length and runs[-1][1] < cap:
            first, frames, _ = runs[-1]
            runs[-1] = (first, frames + 1, length)
        else:
            runs.append((begin, 1, length))
    return runs


class HulumedVisionEncoder(VideoLlama3VisionModel):
    """(P, 3*14*14) patches -> (tokens, C) merged features, frames attending only within themselves."""

    config_class = HulumedVisionEncoderConfig
    config: HulumedVisionEncoderConfig

    def __init__(self, config: HulumedVisionEncoderConfig) -> None:
        super().__init__(config)
        for layer in self.encoder.layers:
            layer.self_attn = HulumedVisionAttention(config)
        self.post_init()

    def set_frame_batching(self, enabled: bool) -> None:
        """True (default): one attention call per run of equal frames; False: transformers' per-frame loop."""
        for layer in self.encoder.layers:
            layer.self_attn.frame_batching = enabled

    def forward(  # type: ignore[override]
        self,
        pixel_values: torch.Tensor,  # (P, 3*patch*patch), rows in merge-block order
        grid_sizes: torch.Tensor,  # (items, 3) int64: t, gh, gw in patches, before merging
        merge_sizes: torch.Tensor,  # (items,) int64
        frame_chunk_size: int | None = None,
    ) -> torch.Tensor:  # (tokens, C)
        if frame_chunk_size is None or int(grid_sizes[:, 0].sum()) <= frame_chunk_size:
            return super().forward(pixel_values, grid_thw=grid_sizes, merge_sizes=merge_sizes).last_hidden_state
        return self._forward_chunked(pixel_values, grid_sizes, merge_sizes, frame_chunk_size)

    def _forward_chunked(
        self,
        pixel_values: torch.Tensor,  # (P, 588)
        grid_sizes: torch.Tensor,  # (items, 3)
        merge_sizes: torch.Tensor,  # (items,)
        frame_chunk_size: int,
    ) -> torch.Tensor:  # (tokens, C)
        """Encode at most ``frame_chunk_size`` frames per pass; identical to one pass since frames are independent."""
        outputs: list[torch.Tensor] = []
        row = 0
        for (t, gh, gw), m in zip(grid_sizes.tolist(), merge_sizes.tolist()):
            per_frame = gh * gw
            for start in range(0, t, frame_chunk_size):
                frames = min(frame_chunk_size, t - start)
                chunk = pixel_values[row : row + frames * per_frame]  # (frames*gh*gw, 588)
                grid = torch.tensor([[frames, gh, gw]], dtype=grid_sizes.dtype, device=grid_sizes.device)
                merge = torch.tensor([m], dtype=merge_sizes.dtype, device=merge_sizes.device)
                outputs.append(super().forward(chunk, grid_thw=grid, merge_sizes=merge).last_hidden_state)
                row += frames * per_frame
        return torch.cat(outputs, dim=0)
