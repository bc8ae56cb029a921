"""hulumed: Hulu-Med (medical vision-language model) with upstream-identical outputs on a clean install.

After ``import hulumed`` transformers' Auto classes know the Hulu-Med classes, so that

    import hulumed
    from transformers import AutoModelForCausalLM, AutoProcessor
    model = AutoModelForCausalLM.from_pretrained("ZJU-AI4H/Hulu-Med-7B")   # no trust_remote_code
    processor = AutoProcessor.from_pretrained("ZJU-AI4H/Hulu-Med-7B")

work on official HF-Version folders, and gives the engine:

    engine = hulumed.load("ZJU-AI4H/Hulu-Med-7B")
    [result] = engine.generate(conversation, hulumed.GenerationParams.greedy(256))

Importing is cheap (no torch, no transformers): the public names below are imported on first access
(module ``__getattr__``), and the Auto-class registration happens as soon as transformers' Auto classes are
imported (``registration.install_import_hook``) or a model-side name of this package is first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .registration import install_import_hook, register_auto_classes

__version__ = "0.1.0"

# public name -> (module, registers the Auto classes when first used)
_LAZY: dict[str, tuple[str, bool]] = {
    "CheckpointError": (".errors", False),
    "HulumedError": (".errors", False),
    "MediaError": (".errors", False),
    "GenerationParams": (".generation", False),
    "GenerationResult": (".generation", False),
    "Engine": (".interface", False),
    "LoadOptions": (".interface", False),
    "Prepared": (".interface", False),
    "ReductionOptions": (".interface", False),
    "StreamDelta": (".interface", False),
    "StreamFinal": (".interface", False),
    "HFEngine": (".backends.hf", True),
    "load": (".loading", True),
    "HulumedQwen2Config": (".model.configuration", True),
    "HulumedQwen3Config": (".model.configuration", True),
    "HulumedVisionEncoderConfig": (".model.configuration", True),
    "HulumedQwen2ForCausalLM": (".model.modeling", True),
    "HulumedQwen2Model": (".model.modeling", True),
    "HulumedQwen3ForCausalLM": (".model.modeling", True),
    "HulumedQwen3Model": (".model.modeling", True),
    "HulumedVisionEncoder": (".model.vision_encoder", True),
    # upstream's README "Option 2" (original method) names
    "disable_torch_init": (".upstream_api", False),
    "model_init": (".upstream_api", True),
    "mm_infer": (".upstream_api", True),
}

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
    "disable_torch_init",
    "load",
    "mm_infer",
    "model_init",
    "register_auto_classes",
]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'hulumed' has no attribute {name!r}")
    module_name, model_side = _LAZY[name]
    value = getattr(importlib.import_module(module_name, __name__), name)
    if model_side:
        register_auto_classes()
    globals()[name] = value  # later accesses skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


if TYPE_CHECKING:  # for type checkers and IDEs; never executed
    from .backends.hf import HFEngine
    from .errors import CheckpointError, HulumedError, MediaError
    from .generation import GenerationParams, GenerationResult
    from .interface import Engine, LoadOptions, Prepared, ReductionOptions, StreamDelta, StreamFinal
    from .loading import load
    from .model.configuration import HulumedQwen2Config, HulumedQwen3Config, HulumedVisionEncoderConfig
    from .model.modeling import HulumedQwen2ForCausalLM, HulumedQwen2Model, HulumedQwen3ForCausalLM, HulumedQwen3Model
    from .model.vision_encoder import HulumedVisionEncoder
    from .upstream_api import disable_torch_init, mm_infer, model_init

install_import_hook()
