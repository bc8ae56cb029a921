"""vLLM plugin: makes vLLM load Hulu-Med checkpoints with no fork and no ``trust_remote_code``.

Entry point ``vllm.general_plugins`` -> ``register``. vLLM calls it in every process it starts; it registers the
Hulu-Med configs with transformers (``import hulumed``) and the two architectures of the official ``config.json``
files with vLLM's ``ModelRegistry`` (lazily, by import path, so nothing here runs before vLLM asks for the model).
This sub-package is the only place in hulumed that imports vllm; without vLLM installed the entry point is never
loaded and nothing else changes.

    model.py       vLLM model classes: vLLM's Qwen2/Qwen3 decoder + our vision encoder and projector
    processing.py  vLLM multimodal processor: placeholders, fields and cache identity of Hulu-Med items
    items.py       (vLLM-free) conversation -> prompt ids with one placeholder per item + processed item payloads
    engine.py      ``VllmEngine`` (hulumed.interface.Engine over vLLM) and ``load_vllm_engine``
"""

from __future__ import annotations

ARCHITECTURES = ("HulumedQwen2ForCausalLM", "HulumedQwen3ForCausalLM")


def register() -> None:
    """Register the Hulu-Med architectures with vLLM (idempotent)."""
    from vllm import ModelRegistry

    import hulumed  # noqa: F401 - registers the Hulu-Med configs with transformers' AutoConfig

    supported = set(ModelRegistry.get_supported_archs())
    for name in ARCHITECTURES:
        if name not in supported:
            ModelRegistry.register_model(name, f"hulumed.vllm_plugin.model:{name}")
