"""Tiny random checkpoints in the official Hulu-Med HF-Version layout (``hulumed make-tiny``).

So that every command can be tried without downloading 8-66 GB: the tokenizer, chat template and processor
files are the tiny ones shipped in ``hulumed/assets/tiny-{qwen2,qwen3}`` (a 2k-token byte-level BPE with the
Qwen special tokens and ``<image>``), the weights are random (seeded). Shapes: decoder hidden 64, 2 layers;
vision encoder hidden 32, 2 layers; projector mlp2x_gelu. Answers are random words.

``head_dim=32`` (2 query / 2 key-value heads of 32 for qwen2; qwen3 already has head_dim 32) gives a decoder that
vLLM's CPU attention accepts (it needs head_dim >= 32); ``token_compression`` overrides ``use_token_compression``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from .errors import HulumedError

ASSETS = Path(__file__).parent / "assets"
VARIANTS = ("qwen2", "qwen3")
_PROCESSOR_FILES = (
    "added_tokens.json",
    "chat_template.json",
    "generation_config.json",
    "merges.txt",
    "preprocessor_config.json",
    "processor_config.json",
    "special_tokens_map.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.json",
)


def make_tiny_checkpoint(
    out: str | os.PathLike, variant: str = "qwen2", seed: int = 0, force: bool = False, head_dim: int | None = None,
    token_compression: bool | None = None,
) -> Path:
    """Write a random tiny checkpoint to ``out`` (created) and return its path.

    Refuses (``HulumedError``) an existing file, and an existing non-empty folder unless ``force`` (which could
    hold a real checkpoint that would be overwritten). ``head_dim`` changes the decoder's head size (vLLM's CPU
    attention needs at least 32); ``token_compression`` overrides the config's ``use_token_compression``.
    """
    import torch

    from .model.configuration import HulumedQwen2Config, HulumedQwen3Config
    from .model.modeling import HulumedQwen2ForCausalLM, HulumedQwen3ForCausalLM

    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, not {variant!r}")
    target = Path(out)
    if target.exists() and not target.is_dir():
        raise HulumedError(f"{target} exists and is a file; choose a folder name for the checkpoint")
    if target.is_dir() and any(target.iterdir()) and not force:
        raise HulumedError(f"{target} is not empty (it may hold a checkpoint); choose a new folder or pass --force")
    source = ASSETS / f"tiny-{variant}"
    raw = json.loads((source / "config.json").read_text())
    if head_dim is not None:
        heads = raw["hidden_size"] // head_dim if variant == "qwen2" else raw["num_attention_heads"]
        raw.update(head_dim=head_dim, num_attention_heads=heads, num_key_value_heads=min(2, heads))
    if token_compression is not None:
        raw["use_token_compression"] = token_compression
    config_cls, model_cls = (
        (HulumedQwen2Config, HulumedQwen2ForCausalLM)
        if variant == "qwen2"
        else (HulumedQwen3Config, HulumedQwen3ForCausalLM)
    )
    config = config_cls.from_dict(raw)
    generator = torch.Generator().manual_seed(seed)
    model = model_cls(config).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("norm.weight") or "layer_norm" in name or "layernorm" in name:
                parameter.copy_(1 + 0.1 * torch.randn(parameter.shape, generator=generator))
            elif parameter.ndim == 1:
                parameter.copy_(0.05 * torch.randn(parameter.shape, generator=generator))
            else:
                fan_in = parameter[0].numel()
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * min(0.2, 1.5 / fan_in**0.5))
        # Rows past the tokenizer are zero, like the padded rows of the real 151936/152064-row vocabularies.
        used = len(json.loads((source / "vocab.json").read_text())) + len(
            json.loads((source / "added_tokens.json").read_text())
        )
        model.get_input_embeddings().weight[used:] = 0
        model.get_output_embeddings().weight[used:] = 0
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    for name in _PROCESSOR_FILES:
        shutil.copyfile(source / name, out / name)
    return out
