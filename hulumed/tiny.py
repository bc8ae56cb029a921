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
from typing import Any

from .errors import HulumedError

ASSETS = Path(__file__).parent / "assets"
VARIANTS = ("qwen2", "qwen3", "qwen3_vl_moe", "qwen3_5")
#: Second-generation variants: a stock transformers class (``model.family``), our tiny tokenizer, a Qwen3-VL processor.
SECOND_GENERATION = ("qwen3_vl_moe", "qwen3_5")
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

    from .model.configuration import HulumedQwen2Config, HulumedQwen3Config
    from .model.modeling import HulumedQwen2ForCausalLM, HulumedQwen3ForCausalLM

    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, not {variant!r}")
    _check_target(Path(out), force)
    if variant in SECOND_GENERATION:
        return _make_tiny_qwen3_vl(Path(out), variant, seed)
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
    model = model_cls(config).eval()
    _randomize(model, seed, _tokenizer_size(source))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    for name in _PROCESSOR_FILES:
        shutil.copyfile(source / name, out / name)
    return out


def _check_target(target: Path, force: bool) -> None:
    if target.exists() and not target.is_dir():
        raise HulumedError(f"{target} exists and is a file; choose a folder name for the checkpoint")
    if target.is_dir() and any(target.iterdir()) and not force:
        raise HulumedError(f"{target} is not empty (it may hold a checkpoint); choose a new folder or pass --force")


def _tokenizer_size(source: Path) -> int:
    return len(json.loads((source / "vocab.json").read_text())) + len(
        json.loads((source / "added_tokens.json").read_text())
    )


def _randomize(model: Any, seed: int, used: int) -> None:
    """Seeded random weights of a sane scale; embedding rows past the tokenizer zero, like the padded rows of the
    real 151936/152064-row vocabularies."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("norm.weight") or "layer_norm" in name or "layernorm" in name:
                parameter.copy_(1 + 0.1 * torch.randn(parameter.shape, generator=generator))
            elif parameter.ndim == 1:
                parameter.copy_(0.05 * torch.randn(parameter.shape, generator=generator))
            else:
                fan_in = parameter[0].numel() if parameter.ndim == 2 else parameter.shape[-2]  # experts: (E, in, out)
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * min(0.2, 1.5 / fan_in**0.5))
        model.get_input_embeddings().weight[used:] = 0
        model.get_output_embeddings().weight[used:] = 0


#: The tiny second-generation shapes: decoder hidden 64, 2 layers, heads of 32 (vLLM's CPU attention needs >= 32),
#: 4 experts (2 active) of width 32; vision hidden 32, 2 blocks, patch 16 merged 2x2, one deepstack layer.
_TINY_QWEN3_VL_MOE = {
    "model_type": "qwen3_vl_moe",
    "architectures": ["Qwen3VLMoeForConditionalGeneration"],
    "image_token_id": 2012,  # <|image_pad|> of the tiny tokenizer
    "video_token_id": 2013,  # <|video_pad|>
    "vision_start_token_id": 2009,
    "vision_end_token_id": 2010,
    "tie_word_embeddings": False,
    "text_config": {
        "model_type": "qwen3_vl_moe_text", "vocab_size": 2048, "hidden_size": 64, "intermediate_size": 128,
        "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 32,
        "moe_intermediate_size": 32, "num_experts": 4, "num_experts_per_tok": 2, "decoder_sparse_step": 1,
        "max_position_embeddings": 32768, "rms_norm_eps": 1e-6, "tie_word_embeddings": False,
        "bos_token_id": 2000, "eos_token_id": 2002, "pad_token_id": 2000,
        "rope_parameters": {"rope_type": "default", "rope_theta": 5000000.0, "mrope_section": [6, 5, 5],
                            "mrope_interleaved": True},
    },
    "vision_config": {
        "model_type": "qwen3_vl_moe_vision", "depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2,
        "patch_size": 16, "spatial_merge_size": 2, "temporal_patch_size": 2, "out_hidden_size": 64,
        "num_position_embeddings": 64, "deepstack_visual_indexes": [1],
    },
}


#: Tiny ``qwen3_5`` (the type Flash-Preview-27B is reported with): dense, alternating linear (gated delta net) and
#: full attention layers, the same vision tower shapes.
_TINY_QWEN3_5 = {
    "model_type": "qwen3_5",
    "architectures": ["Qwen3_5ForConditionalGeneration"],
    "image_token_id": 2012, "video_token_id": 2013, "vision_start_token_id": 2009, "vision_end_token_id": 2010,
    "tie_word_embeddings": False,
    "text_config": {
        "model_type": "qwen3_5_text", "vocab_size": 2048, "hidden_size": 64, "intermediate_size": 128,
        "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 32,
        "layer_types": ["linear_attention", "full_attention"], "linear_conv_kernel_dim": 4,
        "linear_key_head_dim": 16, "linear_value_head_dim": 16, "linear_num_key_heads": 2,
        "linear_num_value_heads": 2, "max_position_embeddings": 32768, "rms_norm_eps": 1e-6,
        "tie_word_embeddings": False, "bos_token_id": 2000, "eos_token_id": 2002, "pad_token_id": 2000,
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000000.0, "mrope_section": [2, 1, 1],
                            "mrope_interleaved": True, "partial_rotary_factor": 0.25},
    },
    "vision_config": {
        "model_type": "qwen3_5_vision", "depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2,
        "patch_size": 16, "spatial_merge_size": 2, "temporal_patch_size": 2, "out_hidden_size": 64,
        "num_position_embeddings": 64,
    },
}
_TINY_SECOND_GENERATION = {"qwen3_vl_moe": _TINY_QWEN3_VL_MOE, "qwen3_5": _TINY_QWEN3_5}


def _make_tiny_qwen3_vl(out: Path, variant: str, seed: int) -> Path:
    """A tiny random second-generation checkpoint in the hub layout: stock ``Qwen3VLMoeForConditionalGeneration``
    weights + config, our tiny tokenizer with a Qwen3-VL chat template, a stock ``Qwen3VLProcessor`` (image and
    video processors with small pixel budgets so tests stay fast)."""
    from transformers import (
        AutoConfig,
        AutoModelForImageTextToText,
        AutoTokenizer,
        GenerationConfig,
        Qwen2VLImageProcessorPil,
    )

    source = ASSETS / "tiny-qwen3"
    raw = json.loads(json.dumps(_TINY_SECOND_GENERATION[variant]))
    config = AutoConfig.for_model(**raw)
    model = AutoModelForImageTextToText.from_config(config).eval()
    _randomize(model, seed, _tokenizer_size(source))
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    GenerationConfig(bos_token_id=2000, eos_token_id=[2002, 2000], pad_token_id=2000, do_sample=True,
                     temperature=0.7, top_k=20, top_p=0.8).save_pretrained(out)
    AutoTokenizer.from_pretrained(source).save_pretrained(out)
    shutil.copyfile(ASSETS / "tiny-qwen3-vl" / "chat_template.jinja", out / "chat_template.jinja")
    pixels = {"shortest_edge": 32 * 32 * 4, "longest_edge": 32 * 32 * 64}  # 4..64 merged tokens per image
    Qwen2VLImageProcessorPil(patch_size=16, merge_size=2, temporal_patch_size=2, size=pixels, image_mean=[0.5] * 3,
                             image_std=[0.5] * 3).save_pretrained(out)
    # The processor and video processor settings as data (the video processor class needs torchvision, which this
    # package does not; transformers builds it from this file where torchvision is installed).
    (out / "processor_config.json").write_text(json.dumps({"processor_class": "Qwen3VLProcessor"}, indent=2) + "\n")
    (out / "video_preprocessor_config.json").write_text(json.dumps({
        "video_processor_type": "Qwen3VLVideoProcessor", "processor_class": "Qwen3VLProcessor",
        "patch_size": 16, "merge_size": 2, "temporal_patch_size": 2, "fps": 2, "min_frames": 4, "max_frames": 64,
        "do_sample_frames": True, "image_mean": [0.5] * 3, "image_std": [0.5] * 3,
        "size": {"shortest_edge": 32 * 32 * 4, "longest_edge": 32 * 32 * 256},
    }, indent=2) + "\n")
    return out
