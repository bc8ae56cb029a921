"""Upstream's original-method ``hulumed.model.processor.HulumedProcessor`` (its README "Option 2"), on ours.

    processor = HulumedProcessor(image_processor, tokenizer)          # as load_pretrained_model returns them
    inputs = processor(images=[slices], text=conversation, merge_size=2, return_tensors="pt")

Differences from the HF-Version processor (``hulumed.processing.processor``), all upstream's:
* without ``chat_template`` it renders upstream's original template (``ORIGINAL_CHAT_TEMPLATE``: no system prompt;
  ``{"type": "video", "num_frames": N}`` becomes N ``<image>`` joined by commas; ``time`` / ``timestamps`` keys
  rendered when present), not the checkpoint's;
* ``text`` may be a conversation (a list of messages): it is rendered with the generation prompt, then processed
  with ``images`` in plain mode (the HF-Version processor takes only a string there);
* ``merge_size`` defaults to 1 for every item;
* the output has no ``modals``: upstream's callers pass ``modals=[modal]`` to ``generate``.
``return_labels=True`` (upstream's training path) is refused: ``hulumed train`` builds labels.
"""

from __future__ import annotations

from typing import Any, Optional

from ..processing.processor import HulumedProcessor as _HfVersionProcessor

#: Upstream's original chat template, rewritten: the same text for every conversation.
ORIGINAL_CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- set tag = 'stream' if message['role'] == 'stream' else 'im' -%}"
    "{{- '<|' + tag + '_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['content'] is string -%}"
    "{{- message['content'] -}}"
    "{%- else -%}"
    "{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' or 'image' in part or 'image_url' in part -%}"
    "{%- if 'time' in part -%}{{- 'Time ' + part['time'] | round(1) | string + 's: ' -}}{%- endif -%}"
    "{{- '<image>\\n' -}}"
    "{%- elif part['type'] == 'video' or 'video' in part or 'video_url' in part -%}"
    "{%- for i in range(part['num_frames']) -%}"
    "{%- if 'timestamps' in part -%}{{- 'Time ' + part['timestamps'][i] | round(1) | string + 's:' -}}{%- endif -%}"
    "{{- '<image>' + (',' if i < part['num_frames'] - 1 else '\\n') -}}"
    "{%- endfor -%}"
    "{%- elif part['type'] == 'text' or 'text' in part -%}"
    "{{- part['text'] -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- endif -%}"
    "{{- '<|' + tag + '_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)


class HulumedProcessor(_HfVersionProcessor):
    """The original-method processor: our processing with upstream's original template and call conventions."""

    def __init__(self, image_processor: Any = None, tokenizer: Any = None, chat_template: Optional[str] = None,
                 **kwargs: Any) -> None:
        super().__init__(image_processor, tokenizer, chat_template=chat_template or ORIGINAL_CHAT_TEMPLATE, **kwargs)

    def __call__(  # type: ignore[override]
        self, text: Any = None, images: Any = None, merge_size: Any = 1, return_labels: bool = False,
        **kwargs: Any,
    ) -> Any:
        if return_labels:
            raise NotImplementedError("return_labels (upstream's training path) is not supported; "
                                      "fine-tune with `hulumed train` (docs/training.md)")
        if kwargs.get("conversation") is not None:  # the HF-Version call works too
            return super().__call__(text=text, images=images, merge_size=merge_size, **kwargs)
        if isinstance(text, (list, tuple)) and text and isinstance(text[0], dict):
            text = self.apply_chat_template(list(text), add_generation_prompt=True)
        elif isinstance(text, (list, tuple)) and len(text) == 1 and isinstance(text[0], str):
            text = text[0]
        out = super().__call__(text=text, images=images, merge_size=merge_size, **kwargs)
        out.pop("modals", None)  # upstream's original output has none: the caller passes modals= to generate
        return out

    def load_images(self, *args: Any, **kwargs: Any) -> list[Any]:
        from ..mm_utils import load_images

        return load_images(*args, **kwargs)

    def load_video(self, *args: Any, **kwargs: Any) -> Any:
        from ..mm_utils import load_video

        return load_video(*args, **kwargs)
