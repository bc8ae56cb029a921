"""Registration of the Hulu-Med classes with transformers' Auto classes (done once, on ``import hulumed``).

After it, ``AutoConfig`` / ``AutoModel`` / ``AutoModelForCausalLM`` / ``AutoImageProcessor`` /
``AutoProcessor`` ``.from_pretrained(folder)`` resolve ``model_type`` ``hulumed_qwen2`` / ``hulumed_qwen3`` /
``hulumed_vision_encoder`` to hulumed's classes. Official folders carry an ``auto_map`` pointing at upstream's
remote code; transformers prefers registered local classes when ``trust_remote_code`` is not set.
"""

from __future__ import annotations


def register_auto_classes() -> None:
    """Idempotent: safe to call more than once."""
    from transformers import (
        AutoConfig,
        AutoImageProcessor,
        AutoModel,
        AutoModelForCausalLM,
        AutoProcessor,
    )

    from .model.configuration import HulumedVisionEncoderConfig
    from .model.modeling import FAMILIES
    from .model.vision_encoder import HulumedVisionEncoder

    AutoConfig.register("hulumed_vision_encoder", HulumedVisionEncoderConfig, exist_ok=True)
    AutoModel.register(HulumedVisionEncoderConfig, HulumedVisionEncoder, exist_ok=True)
    for family in FAMILIES:
        AutoConfig.register(family.config_class.model_type, family.config_class, exist_ok=True)
        AutoModel.register(family.config_class, family.model_class, exist_ok=True)
        AutoModelForCausalLM.register(family.config_class, family.causal_lm_class, exist_ok=True)

    try:
        from .processing.image_processing import HulumedImageProcessor
        from .processing.processor import HulumedProcessor
    except ImportError:  # the processing package is optional only while it is being built
        return
    for config_class in (family.config_class for family in FAMILIES):
        AutoImageProcessor.register(config_class, image_processor_classes={"pil": HulumedImageProcessor}, exist_ok=True)
        AutoProcessor.register(config_class, HulumedProcessor, exist_ok=True)
