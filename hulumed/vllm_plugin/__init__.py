"""vLLM plugin: makes vLLM load Hulu-Med checkpoints with no fork and no ``trust_remote_code``.

Entry point ``vllm.general_plugins`` -> ``register``. vLLM calls it in every process it starts; it registers the
Hulu-Med configs with transformers (``import hulumed``) and the two architectures of the official ``config.json``
files with vLLM's ``ModelRegistry`` (lazily, by import path, so nothing here runs before vLLM asks for the model).
This sub-package is the only place in hulumed that imports vllm; without vLLM installed the entry point is never
loaded and nothing else changes.

    model.py       vLLM model classes: vLLM's Qwen2/Qwen3 decoder + our vision encoder and projector
    processing.py  vLLM multimodal processor: placeholders, fields and cache identity of Hulu-Med items
    media.py       vLLM video loader "hulumed": videos and volumes (NIfTI, DICOM) read by our loaders
    chat_template.jinja  upstream's template, plus one <|video_pad|> placeholder for a video part vLLM renders
    items.py       (vLLM-free) conversation -> prompt ids with one placeholder per item + processed item payloads
    engine.py      ``VllmEngine`` (hulumed.interface.Engine over vLLM) and ``load_vllm_engine``
"""

from __future__ import annotations

ARCHITECTURES = ("HulumedQwen2ForCausalLM", "HulumedQwen3ForCausalLM")


def register() -> None:
    """Register the Hulu-Med architectures with vLLM (idempotent)."""
    from vllm import ModelRegistry

    from hulumed.registration import register_auto_classes

    register_auto_classes()  # the Hulu-Med configs / processor with transformers' Auto classes, before vLLM reads them

    supported = set(ModelRegistry.get_supported_archs())
    for name in ARCHITECTURES:
        if name not in supported:
            ModelRegistry.register_model(name, f"hulumed.vllm_plugin.model:{name}")
    from .media import register_video_loader

    register_video_loader()


#: Chat template for vLLM's OpenAI server (``--chat-template``): upstream's, and a ``video`` part without loaded
#: frames (as vLLM renders it) becomes one ``<|video_pad|>`` placeholder that the plugin expands.
CHAT_TEMPLATE = str(__import__("pathlib").Path(__file__).with_name("chat_template.jinja"))
