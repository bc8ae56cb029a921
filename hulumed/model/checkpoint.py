"""Checkpoint layouts: detection, key remapping and strict loading.

Two on-disk layouts exist (the official HF-Version checkpoints and upstream's original layout):

* **HF-Version** (the hub's ``main``): tensor names are exactly our module names (``model.vision_encoder.*``,
  ``model.mm_projector.*``, ``model.layers.*``, ``lm_head.weight``); single ``model.safetensors`` or shards +
  ``model.safetensors.index.json`` (always follow ``weight_map``: the 7B stores ``lm_head`` in a shard named
  ``model-00004-of-00003``). Loaded by transformers' own ``from_pretrained``.
* **original** (pre-HF): the vision tensors carry a doubled ``model.vision_encoder.vision_encoder.`` prefix,
  weights may be ``pytorch_model.bin`` (+ index), the config may say ``hulumed_qwen2`` for a Qwen3 decoder and
  may lack ``vision_encoder_config`` (it named a stand-alone encoder folder instead). Read here, remapped,
  and loaded into the same classes.

Either way a missing, unexpected or mis-shaped tensor raises ``CheckpointError`` naming it, instead of
transformers' warning plus silently random weights.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError

ORIGINAL_VISION_PREFIX = "model.vision_encoder.vision_encoder."
VISION_PREFIX = "model.vision_encoder."
_MAX_NAMES = 12


def _weight_files(folder: Path) -> list[Path]:
    """The weight files of a folder, in the preference order of transformers (safetensors first)."""
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index = folder / index_name
        if index.is_file():
            weight_map = json.loads(index.read_text())["weight_map"]
            return [folder / name for name in sorted(set(weight_map.values()))]
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (folder / name).is_file():
            return [folder / name]
    raise CheckpointError(
        f"no weights in {folder}: expected model.safetensors, model.safetensors.index.json, pytorch_model.bin "
        "or pytorch_model.bin.index.json (an official Hulu-Med folder has them; is the download complete?)"
    )


def tensor_names(folder: str | os.PathLike) -> list[str]:
    """Names of all tensors stored in a checkpoint folder (reads headers / the index, not the data)."""
    folder = Path(folder)
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        if (folder / index_name).is_file():
            return sorted(json.loads((folder / index_name).read_text())["weight_map"])
    names: list[str] = []
    for file in _weight_files(folder):
        if file.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(file), framework="pt") as handle:
                names.extend(handle.keys())
        else:
            names.extend(_read_bin(file))
    return sorted(names)


def _read_bin(file: Path) -> dict[str, torch.Tensor]:
    try:
        return torch.load(file, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:  # noqa: BLE001 - any failure of a weight file is a checkpoint error
        raise CheckpointError(f"cannot read {file.name}: {error}") from error


def read_state_dict(folder: str | os.PathLike) -> dict[str, torch.Tensor]:
    """All tensors of a checkpoint folder (safetensors or .bin, single or sharded)."""
    state: dict[str, torch.Tensor] = {}
    for file in _weight_files(Path(folder)):
        if not file.is_file():
            raise CheckpointError(f"the index of {folder} names {file.name}, which is missing")
        if file.suffix == ".safetensors":
            from safetensors.torch import load_file

            try:
                state.update(load_file(str(file)))
            except Exception as error:  # noqa: BLE001
                raise CheckpointError(f"cannot read {file.name}: {error}") from error
        else:
            state.update(_read_bin(file))
    return state


def detect_layout(folder: str | os.PathLike) -> str:
    """``"original"`` when the vision tensors carry the doubled prefix, else ``"hf"``."""
    names = tensor_names(folder)
    return "original" if any(name.startswith(ORIGINAL_VISION_PREFIX) for name in names) else "hf"


def remap_original_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``model.vision_encoder.vision_encoder.X`` -> ``model.vision_encoder.X``; other names are already ours."""
    return {
        (VISION_PREFIX + key[len(ORIGINAL_VISION_PREFIX) :] if key.startswith(ORIGINAL_VISION_PREFIX) else key): value
        for key, value in state.items()
    }


def _names(keys: Any) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:_MAX_NAMES])
    return shown + (f" ... and {len(keys) - _MAX_NAMES} more" if len(keys) > _MAX_NAMES else "")


def check_loading_info(folder: Any, missing: Any, unexpected: Any, mismatched: Any = ()) -> None:
    """Raise ``CheckpointError`` if any tensor is missing, unexpected or of the wrong shape."""
    problems = []
    if missing:
        problems.append(f"missing tensors ({len(missing)}): {_names(missing)}")
    if unexpected:
        problems.append(f"unexpected tensors ({len(unexpected)}): {_names(unexpected)}")
    if mismatched:
        shown = [f"{item[0]} {tuple(item[1])} vs model {tuple(item[2])}" for item in list(mismatched)[:_MAX_NAMES]]
        problems.append(f"tensors with the wrong shape ({len(mismatched)}): {', '.join(shown)}")
    if problems:
        raise CheckpointError(
            f"checkpoint {folder} does not match the model built from its config.json: "
            + "; ".join(problems)
            + ". Check that config.json belongs to these weights (sizes, vision_encoder_config, tie_word_embeddings)."
        )


def _infer_vision_encoder_config(state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Encoder sizes from the tensors (original layout configs point at a separate encoder folder instead)."""
    try:
        patch = state[VISION_PREFIX + "embeddings.patch_embedding.weight"]  # (C, 3, p, p)
        fc1 = state[VISION_PREFIX + "encoder.layers.0.mlp.fc1.weight"]  # (I, C)
    except KeyError as error:
        raise CheckpointError(f"the checkpoint has no vision encoder tensor {error}") from error
    layers = {int(k[len(VISION_PREFIX + "encoder.layers.") :].split(".")[0]) for k in state if ".encoder.layers." in k}
    hidden = int(patch.shape[0])
    head_dim = 72  # SigLIP-so400m, the encoder of every released Hulu-Med size
    if hidden % head_dim:
        raise CheckpointError(
            f"cannot infer the encoder's head count for hidden size {hidden}; add vision_encoder_config to config.json"
        )
    return {
        "model_type": "hulumed_vision_encoder",
        "hidden_size": hidden,
        "intermediate_size": int(fc1.shape[0]),
        "num_hidden_layers": len(layers),
        "num_attention_heads": hidden // head_dim,
        "patch_size": int(patch.shape[-1]),
    }


def load_checkpoint(cls: Any, path: str | os.PathLike, *args: Any, families: Sequence[Any] = (), **kwargs: Any) -> Any:
    """Strict ``from_pretrained`` for both layouts (``cls`` is a Hulu-Med ``*ForCausalLM``; ``families`` the
    model-family table, ``modeling.FAMILIES``, used to pick the class of an original-layout folder)."""
    want_info = bool(kwargs.pop("output_loading_info", False))
    folder = Path(path)
    original = folder.is_dir() and detect_layout(folder) == "original"
    try:
        if original:
            model, info = _load_original(cls, folder, families, *args, **kwargs)
        else:
            model, info = cls._hf_from_pretrained(path, *args, output_loading_info=True, **kwargs)
    except RuntimeError as error:
        if "mismatch" not in str(error).lower():
            raise
        raise CheckpointError(
            f"checkpoint {path} has tensors with the wrong shape for its config.json: {error}. "
            "Check that config.json belongs to these weights (sizes, vision_encoder_config)."
        ) from error
    check_loading_info(path, info.get("missing_keys"), info.get("unexpected_keys"), info.get("mismatched_keys"))
    return (model, info) if want_info else model


def _load_original(
    cls: Any, folder: Path, families: Sequence[Any], *args: Any, **kwargs: Any
) -> tuple[Any, dict[str, Any]]:
    """Load an original-layout folder through transformers' own loader, with the vision prefix remapped.

    The config is repaired here (model type from the tensors, an inferred ``vision_encoder_config``) and the
    doubled prefix is undone by transformers' ``key_mapping``, so every other ``from_pretrained`` argument —
    dtype, ``device_map``, ``quantization_config``, attention — applies exactly as for an HF-Version folder.
    """
    names = tensor_names(folder)
    raw = json.loads((folder / "config.json").read_text())
    family = next(  # the original code calls every family hulumed_qwen2: recognise it by its tensors
        f for f in families if f.marker_tensor is None or any(name.endswith(f.marker_tensor) for name in names)
    )
    target = family.causal_lm_class
    if cls not in [f.causal_lm_class for f in families]:
        target = cls  # a subclass asked for itself
    config_cls = target.config_class
    raw["model_type"] = config_cls.model_type
    raw["architectures"] = [target.__name__]
    raw.pop("auto_map", None)
    raw["vision_encoder"] = None  # the tensors are in this checkpoint; never fetch the stand-alone encoder
    if not raw.get("vision_encoder_config"):
        raw["vision_encoder_config"] = _infer_vision_encoder_config(remap_original_keys(read_state_dict(folder)))
    kwargs.pop("config", None)
    config = config_cls.from_dict(raw)
    mapping = {"^" + re.escape(ORIGINAL_VISION_PREFIX): VISION_PREFIX}
    return target._hf_from_pretrained(
        folder, *args, config=config, key_mapping=mapping, output_loading_info=True, **kwargs
    )
