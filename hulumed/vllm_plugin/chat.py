"""vLLM's chat path on a Hulu-Med checkpoint with no flags: the template vLLM renders and the video loader it picks.

vLLM's chat path (``LLM.chat``, its OpenAI server) renders the template of the checkpoint's ``AutoProcessor``
(``vllm/renderers/hf.py`` ``resolve_chat_template``: a ``--chat-template`` first, then the processor's, then the
tokenizer's). Upstream's template needs three things only our processor gives it: an ``image_token`` variable, an
``add_system_prompt`` flag, and ``num_frames`` on every video part (vLLM renders a video part before decoding it).
Under vLLM, ``AutoProcessor`` therefore gives ``VllmChatProcessor`` — our processor (identical processing) whose
``chat_template`` is the checkpoint's with ``for_vllm`` applied:

* ``image_token`` defaults to the processor's image token;
* ``add_system_prompt`` defaults to what our engine does (on when a message has a media part, off for text only;
  ``chat_template_kwargs`` still override both);
* a video part without ``num_frames`` renders as one ``<|video_pad|>`` that the plugin's processing expands to the
  frames our loader read (with timestamps), exactly as our processor would have.

vLLM decodes a ``video_url`` part with the loader its registry maps the checkpoint's video processor to
(``vllm/multimodal/video.py`` ``VIDEO_LOADER_REGISTRY.register(name, video_processor=...)``, resolved from the
``model_type`` through transformers' ``VIDEO_PROCESSOR_MAPPING_NAMES``). ``register_video_loader_default`` maps
the Hulu-Med model types to the plugin's ``hulumed`` loader (our PyAV decoding at 1 fps / 128 frames, NIfTI and
DICOM volumes), so videos and volumes need no ``--media-io-kwargs``; other models keep their loaders.
"""

from __future__ import annotations

from typing import Any

from ..processing.processor import HulumedProcessor

#: Prepended to the checkpoint's template: defaults for the variables only our processor passes.
DEFAULTS = (
    "{%- if image_token is not defined -%}{%- set image_token = '<image>' -%}{%- endif -%}\n"
    "{%- if add_system_prompt is not defined -%}\n"
    "    {%- set media = namespace(found=false) -%}\n"
    "    {%- for message in messages -%}{%- if message['content'] is not string -%}"
    "{%- for part in message['content'] -%}"
    "{%- if part is not string and part['type'] is defined and part['type'] != 'text' -%}"
    "{%- set media.found = true -%}{%- endif -%}{%- endfor -%}{%- endif -%}{%- endfor -%}\n"
    "    {%- set add_system_prompt = media.found -%}\n"
    "{%- endif -%}\n"
)
VIDEO_PLACEHOLDER = "<|video_pad|>"
#: upstream's video branch; vLLM's video parts (no ``num_frames`` yet) get a branch of their own before it
VIDEO_BRANCH = "{% elif content['type'] == 'video' or 'video' in content %}"
VLLM_VIDEO_BRANCH = (
    "{% elif (content['type'] == 'video' or 'video' in content) and 'num_frames' not in content %}\n"
    "                {{- '" + VIDEO_PLACEHOLDER + "' + '\\n' -}}\n            "
)
#: the name vLLM's registry maps Hulu-Med's model types to (no transformers class has it)
VIDEO_PROCESSOR_NAME = "HulumedVideoFrames"


def for_vllm(template: str | None) -> str | None:
    """The checkpoint's template with defaults for vLLM's chat path (idempotent; None stays None)."""
    if not template or template.startswith(DEFAULTS):
        return template
    if VIDEO_BRANCH in template and VLLM_VIDEO_BRANCH not in template:
        template = template.replace(VIDEO_BRANCH, VLLM_VIDEO_BRANCH + VIDEO_BRANCH, 1)
    return DEFAULTS + template


class VllmChatProcessor(HulumedProcessor):
    """``HulumedProcessor`` whose ``chat_template`` carries ``for_vllm``'s defaults (what ``AutoProcessor`` gives in
    a vLLM process). Processing is unchanged: our processor passes every variable the defaults cover."""

    # a property, not an __init__ override: transformers reads the sub-processors off __init__'s signature

    @property  # type: ignore[override]
    def chat_template(self) -> Any:
        return self.__dict__.get("_chat_template_for_vllm")

    @chat_template.setter
    def chat_template(self, value: Any) -> None:
        self.__dict__["_chat_template_for_vllm"] = for_vllm(value) if isinstance(value, str) else value


VllmChatProcessor.__name__ = VllmChatProcessor.__qualname__ = "HulumedProcessor"  # found by processor_class name


def register_chat_processor() -> None:
    """``AutoProcessor`` on a Hulu-Med checkpoint gives ``VllmChatProcessor`` in this process."""
    from transformers import AutoProcessor

    from ..model.modeling import FAMILIES

    for family in FAMILIES:
        AutoProcessor.register(family.config_class, VllmChatProcessor, exist_ok=True)


def register_video_loader_default(loader_name: str) -> None:
    """vLLM decodes Hulu-Med videos (and volumes) with ``loader_name`` unless a request names another backend."""
    from transformers.models.auto.video_processing_auto import VIDEO_PROCESSOR_MAPPING_NAMES
    from vllm.multimodal.video import VIDEO_LOADER_REGISTRY

    from ..model.modeling import FAMILIES

    for family in FAMILIES:
        # transformers >= 5.19 stores {"torchvision": name}; vLLM reads both forms; keys unknown to transformers'
        # CONFIG_MAPPING_NAMES are skipped by its own lookups, so only vLLM's loader choice sees this entry
        VIDEO_PROCESSOR_MAPPING_NAMES.setdefault(family.config_class.model_type, {"torchvision": VIDEO_PROCESSOR_NAME})
    VIDEO_LOADER_REGISTRY.processor2backend.setdefault(VIDEO_PROCESSOR_NAME, loader_name)
