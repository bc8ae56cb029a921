"""Checkpoint configurations: the vision encoder and the two decoder families.

What goes in: an official Hulu-Med ``config.json`` (HF-Version layout): a *flat* Qwen2 / Qwen3 config plus the
Hulu-Med keys ``vision_encoder`` (null in released checkpoints), ``vision_encoder_config`` (a nested dict with
``model_type: hulumed_vision_encoder``), ``mm_projector_type``, ``image_token_index`` and
``use_token_compression``, and training left-overs (``image_aspect_ratio``, ``mm_projector_lr``, ...), which
are kept untouched.

What comes out: ``HulumedQwen2Config`` (``model_type: hulumed_qwen2``, Hulu-Med-7B/32B) and
``HulumedQwen3Config`` (``hulumed_qwen3``, Hulu-Med-4B/14B), subclasses of transformers' ``Qwen2Config`` /
``Qwen3Config``, and ``HulumedVisionEncoderConfig`` (``hulumed_vision_encoder``), a subclass of transformers'
``VideoLlama3VisionConfig`` (Hulu-Med's encoder is that architecture).

Round trip: ``to_dict`` writes the keys an upstream (transformers 4.51) reader needs — ``rope_theta``,
``rope_scaling`` and ``torch_dtype`` are written flat next to transformers 5's ``rope_parameters`` / ``dtype``,
so a folder saved by hulumed still loads in the upstream remote code. ``vision_encoder_config`` is stored as
the plain dict it was read as, so it is written back exactly.

References: the official checkpoints' `config.json` (keys and sizes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from huggingface_hub.dataclasses import strict
from transformers import Qwen2Config, Qwen3Config
from transformers.models.video_llama_3.configuration_video_llama_3 import VideoLlama3VisionConfig

# The HF-Version remote-code class paths, written into ``auto_map`` of configs that have none, so that a
# folder saved by hulumed is also loadable by upstream's ``trust_remote_code`` files placed beside it.
_UPSTREAM_AUTO_MAP = {
    "hulumed_qwen2": {
        "AutoConfig": "configuration_hulumed_qwen2.HulumedQwen2Config",
        "AutoModelForCausalLM": "modeling_hulumed_qwen2.HulumedQwen2ForCausalLM",
    },
    "hulumed_qwen3": {
        "AutoConfig": "configuration_hulumed_qwen3.HulumedQwen3Config",
        "AutoModelForCausalLM": "modeling_hulumed_qwen3.HulumedQwen3ForCausalLM",
    },
}

# Keys of ``vision_encoder_config`` that upstream's encoder config understands (others are passed through).
_DEFAULT_VISION_ENCODER = {
    "model_type": "hulumed_vision_encoder",
    "hidden_size": 1152,
    "intermediate_size": 4304,
    "num_hidden_layers": 27,
    "num_attention_heads": 16,
    "patch_size": 14,
}


@strict
class HulumedVisionEncoderConfig(VideoLlama3VisionConfig):
    """SigLIP-NaViT encoder config (``model_type: hulumed_vision_encoder``).

    Defaults are the released encoder (SigLIP-so400m widths, patch 14, 2D RoPE with theta 10000 on
    head_dim/2 channels per axis). Only the sizes are stored in checkpoints; everything else is a default.
    """

    model_type = "hulumed_vision_encoder"
    base_config_key = "vision_encoder_config"

    hidden_size: int = 1152
    intermediate_size: int = 4304
    num_hidden_layers: int = 27
    num_attention_heads: int = 16
    patch_size: int | list[int] | tuple[int, int] = 14

    def __post_init__(self, **kwargs: Any) -> None:
        if self.rope_parameters is None:
            self.rope_parameters = {"rope_type": "axial", "rope_theta": 10000.0}
        super().__post_init__(**kwargs)


@dataclass(repr=False)
class _HulumedConfigMixin:
    """The Hulu-Med keys shared by both decoder families, and the upstream-compatible ``to_dict``."""

    vision_encoder: str | None = None  # path of a stand-alone encoder; null in released checkpoints
    vision_encoder_config: dict | None = None  # encoder sizes, kept as the dict read from config.json
    mm_projector_type: str = "mlp2x_gelu"
    use_token_compression: bool = True  # upstream's class default; released configs set it explicitly
    image_token_index: int = -1  # vocabulary id of "<image>" (151665 Qwen2.5 models, 151669 Qwen3 models)

    # Official config.json files carry ``torch_dtype`` (transformers 4.x); read it as ``dtype`` without the
    # deprecation warning transformers 5 prints for every Hulu-Med load.
    @property
    def torch_dtype(self) -> Any:
        return self.dtype

    @torch_dtype.setter
    def torch_dtype(self, value: Any) -> None:
        self.dtype = value

    def vision_config(self) -> HulumedVisionEncoderConfig:
        """Build the encoder config from the stored ``vision_encoder_config`` dict (a fresh object)."""
        raw = dict(self.vision_encoder_config or _DEFAULT_VISION_ENCODER)
        raw.pop("model_type", None)
        return HulumedVisionEncoderConfig(**raw)

    def _hulumed_post_init(self) -> None:
        if self.vision_encoder_config is None:
            self.vision_encoder_config = dict(_DEFAULT_VISION_ENCODER)
        elif isinstance(self.vision_encoder_config, VideoLlama3VisionConfig):
            self.vision_encoder_config = self.vision_encoder_config.to_diff_dict()
        if getattr(self, "auto_map", None) is None:
            self.auto_map = dict(_UPSTREAM_AUTO_MAP[self.model_type])

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()  # type: ignore[misc]
        rope = out.get("rope_parameters") or {}
        # Upstream (transformers 4.51) reads the flat keys; without them it would silently use theta 10000.
        out["rope_theta"] = rope.get("rope_theta", out.get("rope_theta"))
        scaling = {k: v for k, v in rope.items() if k != "rope_theta"}
        out["rope_scaling"] = None if scaling.get("rope_type", "default") == "default" else scaling
        if "dtype" in out and out["dtype"] is not None:
            out["torch_dtype"] = str(out["dtype"]).replace("torch.", "")
        return out


@strict
class HulumedQwen2Config(_HulumedConfigMixin, Qwen2Config):
    """Hulu-Med-7B / -32B: Qwen2.5 decoder + vision encoder + projector (``model_type: hulumed_qwen2``)."""

    model_type = "hulumed_qwen2"

    def __post_init__(self, **kwargs: Any) -> None:
        super().__post_init__(**kwargs)
        self._hulumed_post_init()


@strict
class HulumedQwen3Config(_HulumedConfigMixin, Qwen3Config):
    """Hulu-Med-4B / -14B: Qwen3 decoder + vision encoder + projector (``model_type: hulumed_qwen3``)."""

    model_type = "hulumed_qwen3"

    def __post_init__(self, **kwargs: Any) -> None:
        super().__post_init__(**kwargs)
        self._hulumed_post_init()

