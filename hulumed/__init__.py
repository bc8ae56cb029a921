"""hulumed: Hulu-Med (medical vision-language model) with upstream-identical outputs on a clean install.

Importing this package registers the Hulu-Med classes with transformers' Auto classes, so that

    import hulumed
    from transformers import AutoModelForCausalLM, AutoProcessor
    model = AutoModelForCausalLM.from_pretrained("ZJU-AI4H/Hulu-Med-7B")   # no trust_remote_code
    processor = AutoProcessor.from_pretrained("ZJU-AI4H/Hulu-Med-7B")

work on official HF-Version folders, and gives the engine:

    engine = hulumed.load("ZJU-AI4H/Hulu-Med-7B")
    [result] = engine.generate(conversation, hulumed.GenerationParams.greedy(256))
"""

from __future__ import annotations

from .engine import HFEngine
from .errors import CheckpointError, HulumedError, MediaError
from .generation import GenerationParams, GenerationResult
from .interface import Engine, LoadOptions, Prepared, ReductionOptions, StreamDelta, StreamFinal
from .loading import load
from .model.configuration import HulumedQwen2Config, HulumedQwen3Config, HulumedVisionEncoderConfig
from .model.modeling import (
    HulumedQwen2ForCausalLM,
    HulumedQwen2Model,
    HulumedQwen3ForCausalLM,
    HulumedQwen3Model,
)
from .model.vision_encoder import HulumedVisionEncoder
from .registration import register_auto_classes

register_auto_classes()

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "Engine",
    "GenerationParams",
    "GenerationResult",
    "HFEngine",
    "HulumedError",
    "HulumedQwen2Config",
    "HulumedQwen2ForCausalLM",
    "HulumedQwen2Model",
    "HulumedQwen3Config",
    "HulumedQwen3ForCausalLM",
    "HulumedQwen3Model",
    "HulumedVisionEncoder",
    "HulumedVisionEncoderConfig",
    "LoadOptions",
    "MediaError",
    "Prepared",
    "ReductionOptions",
    "StreamDelta",
    "StreamFinal",
    "load",
    "register_auto_classes",
]
