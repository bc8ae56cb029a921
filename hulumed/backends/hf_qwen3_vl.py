"""The transformers backend for the second generation: ``Qwen3VLEngine``, the same scheduler as ``HFEngine``.

    engine = hulumed.load("ZJU-AI4H/Hulu-Med-30A3")      # model_type qwen3_vl_moe: this engine (model/family.py)

Only what differs from the first generation is here; batching, streaming, cancellation, failure isolation,
admission by tokens and structured output are ``HFEngine``'s:

* inputs come from our media front end over the stock processor (``processing/qwen3_vl_inputs.py``); every
  placeholder is a visual token (this family has no inter-frame reduction);
* rows are left-padded into one batch with their ``mm_token_type_ids``; the visual tensors are concatenated in
  row order (what the stock processor gives for the rows together);
* ``think`` is the chat template's ``enable_thinking`` switch, not the first generation's appended instruction;
* ``estimate`` / ``info`` count mixture-of-experts weights: every expert resident, ``active_parameters`` per token.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..conversation import Conversation, validate
from ..generation import GenerationParams
from ..interface import Prepared, model_revision
from ..processing.qwen3_vl_inputs import prepare_inputs
from .hf import HFEngine
from .scheduler import Row

_VISUAL_KEYS = ("pixel_values", "pixel_values_videos")


class Qwen3VLEngine(HFEngine):
    """A stock transformers ``*ForConditionalGeneration`` of the second generation behind ``HFEngine``."""

    @property
    def vision_dtype(self) -> torch.dtype:
        return self.model.model.visual.dtype

    def _pad_token_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        return pad if pad is not None else min(self.eos_ids)

    def _conversations(self, conversations: Sequence[Conversation], params: GenerationParams) -> list[Conversation]:
        return [validate(c) for c in conversations]  # think: the template's switch (_prepare_row)

    def _visual_ids(self) -> list[int]:
        config = self.model.config
        return [config.image_token_id, config.video_token_id]

    def _visual_slots(self, inputs: dict[str, Any]) -> int:  # every placeholder is a visual token (no reduction)
        ids = torch.tensor(self._visual_ids(), device=inputs["input_ids"].device)
        return int(torch.isin(inputs["input_ids"], ids).sum())

    def _prepare_row(self, conversation: Conversation, params: GenerationParams) -> Row:
        with self._processor_lock:
            batch = prepare_inputs(self.processor, conversation, volume_input=self.options.volume_input,
                                   think=params.think)
        inputs: dict[str, Any] = {}
        for key, value in batch.items():
            if isinstance(value, torch.Tensor):
                value = value.to(self.device)
                if key in _VISUAL_KEYS:
                    value = value.to(self.vision_dtype)
            inputs[key] = value
        visual = self._visual_slots(inputs)
        return Row(inputs=inputs, prompt_tokens=int(inputs["attention_mask"].sum()), visual_tokens=visual,
                    slots=visual)

    def _collate(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        return collate_rows(rows, self.pad_id)

    def _model_kwargs(self) -> dict[str, Any]:
        return {}

    def _prompt_columns(self, inputs: dict[str, Any]) -> int:
        return int(inputs["input_ids"].shape[1])  # stock generate runs on ids: the padded prompt comes first

    def _new_tokens(self, output: torch.Tensor, inputs: dict[str, Any]) -> torch.Tensor:
        return output[:, self._prompt_columns(inputs):]  # stock generate returns prompt + answer

    def estimate(self, conversation: Conversation | Prepared, params: GenerationParams | None = None
                 ) -> dict[str, Any]:
        from ..qwen3_vl_estimate import estimate_inputs

        if isinstance(conversation, Prepared):
            if len(conversation.inputs) != 1:
                raise ValueError(f"estimate takes one conversation; got {len(conversation.inputs)}")
            params = params or conversation.params or GenerationParams()
            inputs = conversation.inputs[0].inputs
        else:
            params = params or GenerationParams()
            inputs = self._prepare_row(validate(conversation), params).inputs
        return estimate_inputs(self.model.config, inputs, params, dtype=self.dtype, parameters=self._parameters())

    def info(self) -> dict[str, Any]:
        from ..qwen3_vl_estimate import describe_model

        info = describe_model(self.model.config, path=self.path, dtype=self.dtype, device=self.device,
                              parameters=self._parameters())
        info.update(backend="hf", revision=model_revision(self.path, self.options.revision))
        return info

    def _parameters(self) -> dict[str, int]:
        from ..qwen3_vl_estimate import count_parameters

        if not hasattr(self, "_parameter_counts"):
            self._parameter_counts = count_parameters(self.model, self.model.config)
        return self._parameter_counts


def collate_rows(rows: list[dict[str, Any]], pad_id: int) -> dict[str, Any]:
    """Single-row stock processor outputs -> one left-padded batch: ids, mask and ``mm_token_type_ids`` padded on
    the left, visual tensors and their grids concatenated in row order."""
    if len(rows) == 1:
        return dict(rows[0])
    width = max(int(r["input_ids"].shape[1]) for r in rows)
    out: dict[str, Any] = {}
    for key, fill in (("input_ids", pad_id), ("attention_mask", 0), ("mm_token_type_ids", 0)):
        if key in rows[0]:
            out[key] = torch.cat([torch.nn.functional.pad(r[key], (width - int(r[key].shape[1]), 0), value=fill)
                                  for r in rows])  # (B, width)
    for key in ("pixel_values", "image_grid_thw", "pixel_values_videos", "video_grid_thw"):
        present = [r[key] for r in rows if key in r]
        if present:
            out[key] = torch.cat(present)  # (patches, C x t x p x p) / (items, 3)
    return out
