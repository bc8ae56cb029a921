"""``hulumed merge-lora``: a base checkpoint + a LoRA adapter folder -> merged weights in the official layout.

In:  an adapter folder written by ``hulumed train --lora`` (``adapter_config.json``, ``adapter_model.safetensors``;
     projector / vision weights trained in full travel in it as peft ``modules_to_save``) and its base model
     (default: the ``base_model_name_or_path`` recorded in the adapter config).
Out: ``config.json`` + ``model.safetensors`` (or shards) + processor files: a plain Hulu-Med checkpoint that
     loads with ``AutoModelForCausalLM.from_pretrained`` after ``import hulumed`` (and upstream remote code).

peft does the merge (``merge_and_unload``: W + B·A·alpha/r on every adapted layer, ``modules_to_save`` copies
put in place). The base is reloaded in 16/32-bit even after QLoRA training: merging into 4-bit weights would
round the update away.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from hulumed.train.output import base_folder, copy_processor_files
from hulumed.train.recipe import RecipeError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def merge_lora(
    adapter: str | os.PathLike,
    output: str | os.PathLike,
    base: str | os.PathLike | None = None,
    dtype: str = "float32",
) -> Any:
    """Merge ``adapter`` into ``base`` and save to ``output``; returns the merged model."""
    try:
        from peft import PeftConfig, PeftModel
    except ImportError as error:
        raise RecipeError("merge-lora needs peft: pip install 'hulumed[train]'") from error
    from hulumed.loading import load_model, pick_dtype

    if not (Path(adapter) / "adapter_config.json").is_file():
        raise RecipeError(f"{adapter} has no adapter_config.json: pass the output folder of a LoRA run")
    if dtype not in DTYPES:
        raise RecipeError(f"dtype must be one of {', '.join(DTYPES)}")
    base = base or PeftConfig.from_pretrained(str(adapter)).base_model_name_or_path
    if not base:
        raise RecipeError("the adapter does not name its base model: pass --base")
    model, _ = load_model(base, device="cpu", dtype=pick_dtype("cpu", dtype), attn_implementation=None)
    merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    merged.save_pretrained(output)
    has_processor = (Path(adapter) / "preprocessor_config.json").is_file()
    copy_processor_files(Path(adapter) if has_processor else base_folder(base), output)
    return merged
