"""Upstream's "Option 2: Using Custom Loading (Original Method)" entry points, on our classes.

    from hulumed import disable_torch_init, model_init, mm_infer
    from hulumed.model import load_pretrained_model
    from hulumed.mm_utils import load_images, load_video, ...                       # hulumed/mm_utils.py
    from hulumed.model.processor import HulumedProcessor                             # hulumed/model/processor.py

Upstream's README (ZJU-AI4H Hulu-Med, "Option 2") runs these names from its own ``hulumed`` package, which has the
same import name as ours, so the two cannot be installed together: here they are, with upstream's signatures and
return values, built on our loader (both checkpoint layouts), processor and model. Where upstream's code fails, these
do what it evidently meant; each docstring says where:

* ``load_pretrained_model`` honours ``device_map`` (upstream always put the model on ``"cuda"``) and picks the
  best device when none is given (never assumes CUDA); its LoRA branch (a NameError upstream) loads the base and
  merges the adapter with peft.
* ``mm_infer`` moves inputs to the model's device and casts pixels to the vision encoder's dtype (upstream: CUDA
  and bf16 always).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .errors import CheckpointError


def disable_torch_init() -> None:
    """Upstream: skip torch's random initialisation of ``Linear`` / ``LayerNorm`` to build models faster.

    transformers' ``from_pretrained`` (which every loader here uses) already builds the model without running
    initialisation, so there is nothing left to skip; patching torch's classes process-wide, as upstream did, would
    also break any model built from scratch later in the process (training, tests). Kept so upstream's code runs.
    """
    return None


def load_pretrained_model(
    model_path: str | os.PathLike, model_base: str | os.PathLike | None, model_name: str, load_8bit: bool = False,
    load_4bit: bool = False, device_map: Any = None, **kwargs: Any,
) -> tuple[Any, Any, Any, int]:
    """``(tokenizer, model, image_processor, context_len)`` as upstream's loader returns them.

    ``model_path``: an official HF-Version folder or hub id, an original-layout folder (doubled vision-encoder
    prefix, ``pytorch_model.bin``), or a LoRA adapter folder written by ``hulumed train --lora`` / upstream's
    trainer (``adapter_config.json``; ``model_base`` or the adapter's recorded base is loaded and the adapter
    merged — upstream's LoRA branch raised NameError). ``model_name`` is accepted for upstream compatibility
    (upstream chose branches by substrings of it; here the folder's files decide). ``device_map``: ``"cpu"``,
    ``"cuda"``, ``"cuda:1"``, ``"mps"``, ``{"": device}`` or None (best available; upstream: always CUDA).
    ``torch_dtype`` / ``attn_implementation`` keyword arguments as upstream (defaults: the checkpoint's dtype on
    CUDA, float32 elsewhere; ``sdpa``).
    ``context_len``: the config's ``max_sequence_length``, else 2048, as upstream.
    """
    from .loading import load_model, load_processor
    from .processing.image_processing import HulumedImageProcessor

    del model_name  # upstream used it to pick a branch; the files do here
    device = _device_of(device_map)
    quantization = "8bit" if load_8bit else "4bit" if load_4bit else None
    dtype = kwargs.pop("torch_dtype", kwargs.pop("dtype", None))
    attn = kwargs.pop("attn_implementation", "sdpa")
    folder = Path(model_path)
    adapter = folder / "adapter_config.json"
    if adapter.is_file():
        base = model_base or json.loads(adapter.read_text()).get("base_model_name_or_path")
        if not base:
            raise CheckpointError(f"{adapter}: no base_model_name_or_path; pass model_base")
        model, base_path = load_model(base, device=device, dtype=dtype, attn_implementation=attn, place=False)
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(folder)).merge_and_unload().to(_torch_device(device))
        files = folder if (folder / "tokenizer_config.json").is_file() else base_path
    elif model_base is not None:
        raise CheckpointError(
            f"{model_path}: model_base is given but the folder is not a LoRA adapter; upstream's other base branch "
            "loads a projector-only stage-1 checkpoint (mm_projector.bin), which no released Hulu-Med model is"
        )
    else:
        model, files = load_model(model_path, device=device, dtype=dtype, attn_implementation=attn,
                                  quantization=quantization)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(files)
    if (Path(files) / "preprocessor_config.json").is_file():
        image_processor = load_processor(files).image_processor
    else:  # an original-layout folder: upstream read it from the stand-alone encoder; Hulu-Med's values
        image_processor = HulumedImageProcessor()
    context_len = int(getattr(model.config, "max_sequence_length", 2048))
    return tokenizer, model, image_processor, context_len


def model_init(model_path: str | os.PathLike | None = None, max_visual_tokens: int | None = None,
               **kwargs: Any) -> tuple[Any, Any]:
    """``(model, processor)``: ``load_pretrained_model`` + upstream's original-method ``HulumedProcessor``.
    ``max_visual_tokens`` caps the image processor's tokens per item, as upstream."""
    from .mm_utils import get_model_name_from_path
    from .model.processor import HulumedProcessor

    model_path = "ZJU-AI4H/Hulu-Med-7B" if model_path is None else model_path
    tokenizer, model, image_processor, _ = load_pretrained_model(
        model_path, None, get_model_name_from_path(str(model_path)), **kwargs)
    if max_visual_tokens is not None:
        image_processor.max_tokens = max_visual_tokens
    if tokenizer.pad_token is None and tokenizer.unk_token is not None:
        tokenizer.pad_token = tokenizer.unk_token
    return model, HulumedProcessor(image_processor, tokenizer)


def mm_infer(data_dict: dict[str, Any], model: Any, tokenizer: Any, modal: str = "video", **kwargs: Any) -> str:
    """Upstream's one-call inference on a processor output: greedy unless ``do_sample``, upstream's sampling
    defaults (temperature 0.2 / top-p 0.9 / top-k 20 when sampling), ``max_new_tokens`` 2048, stopping at the
    tokenizer's end string; returns the decoded, stripped answer. Inputs go to the model's device (upstream: CUDA)."""
    import torch

    from .mm_utils import KeywordsStoppingCriteria

    do_sample = kwargs.get("do_sample", False)
    inputs = {key: value.to(model.device) if isinstance(value, torch.Tensor) else value
              for key, value in data_dict.items()}
    inputs["modals"] = [modal]
    stop = KeywordsStoppingCriteria([tokenizer.eos_token], tokenizer, inputs["input_ids"])
    with torch.inference_mode():
        output_ids = model.generate(
            **inputs, do_sample=do_sample,
            temperature=kwargs.get("temperature", 0.2 if do_sample else 1.0),
            top_p=kwargs.get("top_p", 0.9 if do_sample else 1.0),
            top_k=kwargs.get("top_k", 20 if do_sample else 50),
            max_new_tokens=kwargs.get("max_new_tokens", 2048), use_cache=True, stopping_criteria=[stop],
            pad_token_id=tokenizer.eos_token_id,
        )
    return tokenizer.batch_decode(output_ids, skip_special_tokens=True)[0].strip()


def _device_of(device_map: Any) -> str | None:
    if device_map is None or device_map == "auto":
        return None
    if isinstance(device_map, dict):
        devices = set(map(str, device_map.values()))
        if len(devices) != 1:
            raise CheckpointError(f"device_map spreads the model over {sorted(devices)}; give one device")
        device_map = devices.pop()
    text = str(device_map)
    return f"cuda:{text}" if text.isdigit() else text


def _torch_device(device: str | None) -> Any:
    from .devices import pick_device

    return pick_device(device)
