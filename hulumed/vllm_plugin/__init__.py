"""vLLM plugin: makes vLLM load Hulu-Med checkpoints with no fork and no ``trust_remote_code``.

Entry point ``vllm.general_plugins`` -> ``register``. vLLM calls it in every process it starts; it registers the
Hulu-Med configs with transformers (``import hulumed``) and the two architectures of the official ``config.json``
files with vLLM's ``ModelRegistry`` (lazily, by import path, so nothing here runs before vLLM asks for the model).
This sub-package and ``backends/vllm.py`` (the engine over vLLM) are the only places in hulumed that import
vllm; without vLLM installed the entry point is never
loaded and nothing else changes.

    model.py       vLLM model classes: vLLM's Qwen2/Qwen3 decoder + our vision encoder and projector
    processing.py  vLLM multimodal processor: placeholders, fields and cache identity of Hulu-Med items
    media.py       vLLM video loader "hulumed": videos and volumes (NIfTI, DICOM) read by our loaders
    chat.py        vLLM's chat path with no flags: template defaults (AutoProcessor), "hulumed" loader by default
    chat_template.jinja  ``chat.for_vllm`` of upstream's template, for an explicit ``--chat-template``
    items.py       (vLLM-free) conversation -> prompt ids with one placeholder per item + processed item payloads
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
    from .chat import register_chat_processor, register_video_loader_default
    from .media import LOADER_NAME, register_video_loader

    register_video_loader()
    register_chat_processor()  # vLLM's chat path renders the checkpoint's template with no extra flags
    register_video_loader_default(LOADER_NAME)  # Hulu-Med videos and volumes through our loaders by default


#: Upstream's template with ``chat.for_vllm`` applied. Not needed by vLLM's chat path (the plugin gives it the same
#: template through AutoProcessor); kept for ``--chat-template`` over a checkpoint whose own template is another.
CHAT_TEMPLATE = str(__import__("pathlib").Path(__file__).with_name("chat_template.jinja"))
