"""SigLIP-NaViT vision encoder with 2D RoPE, per-frame attention and the 2x2 bilinear merge.

Hulu-Med's encoder is architecturally transformers' ``VideoLlama3VisionModel``: the checkpoint tensors
``model.vision_encoder.{embeddings,encoder,post_layernorm}.*`` load into it unchanged and it reproduces the
upstream outputs (see tests/parity). We therefore subclass it and add only what Hulu-Med needs:

* the Hulu-Med argument names (``grid_sizes`` instead of ``grid_thw``) and a plain tensor return value;
* frame chunking: frames never attend to each other, so long videos / volumes are encoded ``frame_chunk_size``
  frames at a time with bounded peak memory and bit-identical results.

Attention backends (``config._attn_implementation``), none of which builds a P x P mask:
  ``sdpa``               one SDPA call per frame (memory linear in the number of frames) — default;
  ``eager``              matmul + softmax per frame (correct masking; upstream's eager adds the mask as +1);
  ``flash_attention_2``  varlen kernel over ``cu_seqlens`` when flash-attn is installed.
Upstream's dense-mask path is kept only as a test/benchmark reference in ``dense_reference.py``.

Glossary: P = patches of all frames of all items; t, gh, gw = frames and patch grid of one item; m = merge
size (1 images, 2 video/3D); C = encoder hidden size; tokens = sum over items of t * (gh/m) * (gw/m).
Reference: UPSTREAM.md §2.
"""

from __future__ import annotations

import torch
from transformers.models.video_llama_3.modeling_video_llama_3 import VideoLlama3VisionModel

from .configuration import HulumedVisionEncoderConfig


class HulumedVisionEncoder(VideoLlama3VisionModel):
    """(P, 3*14*14) patches -> (tokens, C) merged features, frames attending only within themselves."""

    config_class = HulumedVisionEncoderConfig
    config: HulumedVisionEncoderConfig

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
