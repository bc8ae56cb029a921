"""A checkpoint folder as untrusted input: sizes checked against sane bounds and against the weights' headers
before anything is built or allocated.

Building a model from ``config.json`` allocates what the config declares: ``num_hidden_layers: 1000000`` makes
even a meta-device instance (``hulumed info``) hang, ``hidden_size: 16384`` over small weights allocates
gigabytes of random weights before transformers notices the shapes differ, and negative or zero sizes end in raw
``ValueError`` / ``ZeroDivisionError``. A safetensors header may declare 10^12 elements. ``check_checkpoint``
reads only ``config.json`` and the weight files' headers (never the data) and raises one ``CheckpointError``
naming the file and the field:

* every size field a positive integer within ``BOUNDS`` (the largest released Hulu-Med, 32B, is far inside);
* heads divide the hidden size (unless ``head_dim`` is given), KV heads divide the heads;
* each safetensors header: at most ``MAX_HEADER_BYTES``, well-formed, every tensor's shape x dtype equal to its
  byte range, ranges inside the file;
* the weights agree with the config where a mismatch would otherwise cost memory first: the embedding is
  (vocab_size, hidden_size), the decoder has exactly ``num_hidden_layers`` layers, the vision patch embedding
  is (vision hidden, 3, patch, patch).

The processor's own files are checked where they are read (``processing.image_processing`` for
``preprocessor_config.json``; the chat template is rendered bounded, ``processing.chat_template``).
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
from pathlib import Path
from typing import Any

from ..errors import CheckpointError

#: Upper bounds of size fields: 4-64x the largest released model, far below what would exhaust a machine.
BOUNDS = {
    "hidden_size": 65_536,
    "intermediate_size": 262_144,
    "num_hidden_layers": 1_024,
    "num_attention_heads": 1_024,
    "num_key_value_heads": 1_024,
    "head_dim": 4_096,
    "vocab_size": 4_194_304,
    "max_position_embeddings": 16_777_216,
    "max_window_layers": 1_024,
    "moe_intermediate_size": 262_144,
    "num_experts": 4_096,
    "num_experts_per_tok": 4_096,
}
VISION_BOUNDS = {
    "hidden_size": 16_384,
    "intermediate_size": 65_536,
    "num_hidden_layers": 256,
    "num_attention_heads": 256,
    "patch_size": 64,
}
#: A second-generation ``vision_config`` (stock Qwen3-VL names).
VISION_CONFIG_BOUNDS = {
    "hidden_size": 16_384,
    "intermediate_size": 65_536,
    "depth": 256,
    "num_heads": 256,
    "patch_size": 64,
    "out_hidden_size": 65_536,
    "num_position_embeddings": 1_048_576,
    "spatial_merge_size": 16,
    "temporal_patch_size": 16,
}
MAX_CONFIG_BYTES = 4 * 2**20
MAX_HEADER_BYTES = 100 * 2**20  # safetensors' own limit
_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
                "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1, "U16": 2, "U32": 4, "U64": 8, "F8_E8M0": 1, "F4": 1}
_LAYER = re.compile(r"^model\.(?:language_model\.)?layers\.(\d+)\.")
_EMBEDDINGS = ("model.embed_tokens.weight", "model.language_model.embed_tokens.weight")


def _size(where: str, name: str, value: Any, bound: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise CheckpointError(f"{where}: {name} must be a whole number, not {str(value)[:40]!r}")
    if not 1 <= value <= bound:
        raise CheckpointError(f"{where}: {name} = {value} is outside 1..{bound:,}; is this a Hulu-Med config.json?")
    return value


def read_config(folder: str | os.PathLike) -> dict[str, Any]:
    """``config.json`` of ``folder`` as a dict, read bounded; ``CheckpointError`` when missing or not JSON."""
    path = Path(folder) / "config.json"
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise CheckpointError(f"{path} is over {MAX_CONFIG_BYTES // 2**20} MiB; a config.json is a few KiB")
        raw = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise CheckpointError(f"{folder} has no config.json; is it a checkpoint folder?") from None
    except (OSError, ValueError, RecursionError) as error:
        raise CheckpointError(f"{path} is not readable JSON ({type(error).__name__})") from None
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path} must hold a JSON object")
    return raw


def _sub_config(raw: dict[str, Any], name: str, where: str) -> dict[str, Any] | None:
    value = raw.get(name)
    if value is not None and not isinstance(value, dict):
        raise CheckpointError(f"{where}: {name} must be an object")
    return value


def check_config(raw: dict[str, Any], where: str = "config.json") -> None:
    """Every size field of a Hulu-Med ``config.json`` dict within ``BOUNDS`` and consistent (a second-generation
    config: its ``text_config`` and ``vision_config`` too)."""
    from .family import family_of

    family_of(raw, where)
    text = _sub_config(raw, "text_config", where)
    if text is not None:
        check_config({**text, "model_type": raw["model_type"]}, f"{where} text_config")
    vision_config = _sub_config(raw, "vision_config", where)
    if vision_config is not None:
        for name, bound in VISION_CONFIG_BOUNDS.items():
            if vision_config.get(name) is not None and not isinstance(vision_config[name], list):
                _size(f"{where} vision_config", name, vision_config[name], bound)
    experts, active = raw.get("num_experts"), raw.get("num_experts_per_tok")
    if isinstance(experts, int) and isinstance(active, int) and active > experts:
        raise CheckpointError(f"{where}: num_experts_per_tok {active} is more than num_experts {experts}")
    for name, bound in BOUNDS.items():
        if raw.get(name) is not None:
            _size(where, name, raw[name], bound)
    hidden, heads = raw.get("hidden_size"), raw.get("num_attention_heads")
    if hidden and heads and raw.get("head_dim") is None and hidden % heads:
        raise CheckpointError(f"{where}: hidden_size {hidden} is not a multiple of num_attention_heads {heads}")
    kv = raw.get("num_key_value_heads")
    if heads and kv and heads % kv:
        raise CheckpointError(f"{where}: num_attention_heads {heads} is not a multiple of num_key_value_heads {kv}")
    vision = raw.get("vision_encoder_config")
    if vision is not None:
        if not isinstance(vision, dict):
            raise CheckpointError(f"{where}: vision_encoder_config must be an object")
        for name, bound in VISION_BOUNDS.items():
            if vision.get(name) is not None and not (name == "patch_size" and isinstance(vision[name], list)):
                _size(f"{where} vision_encoder_config", name, vision[name], bound)
        v_hidden, v_heads = vision.get("hidden_size"), vision.get("num_attention_heads")
        if v_hidden and v_heads and v_hidden % v_heads:
            raise CheckpointError(f"{where}: vision_encoder_config.hidden_size {v_hidden} is not a multiple of its "
                                  f"num_attention_heads {v_heads}")
    index = raw.get("image_token_index")
    if index is not None and (isinstance(index, bool) or not isinstance(index, int) or index < -1
                              or (raw.get("vocab_size") and index >= raw["vocab_size"])):
        raise CheckpointError(f"{where}: image_token_index {str(index)[:40]} is not an id in the vocabulary")


def safetensors_header(path: Path) -> dict[str, tuple[str, list[int]]]:
    """{name: (dtype, shape)} of one safetensors file, from its header alone, every entry checked against the
    file's size (``CheckpointError`` naming the file and tensor otherwise)."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{path.name} is truncated: no safetensors header")
        (length,) = struct.unpack("<Q", head)
        if length > min(MAX_HEADER_BYTES, size - 8):
            raise CheckpointError(f"{path.name}: the safetensors header declares {length:,} bytes, more than the "
                                  "file holds or 100 MiB; the file is damaged")
        try:
            header = json.loads(handle.read(length))
        except (ValueError, RecursionError):
            raise CheckpointError(f"{path.name}: the safetensors header is not JSON; the file is damaged") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path.name}: the safetensors header is not an object")
    data_size = size - 8 - length
    out: dict[str, tuple[str, list[int]]] = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (start, end) = entry["dtype"], list(entry["shape"]), entry["data_offsets"]
            width = _DTYPE_BYTES[dtype]
            if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in [*shape, start, end]):
                raise ValueError
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"{path.name}: tensor {name[:200]} has a malformed header entry") from None
        need = math.prod(shape) * width if dtype != "F4" else math.ceil(math.prod(shape) / 2)
        if end - start != need or not 0 <= start <= end <= data_size:
            raise CheckpointError(
                f"{path.name}: tensor {name[:200]} declares shape {shape[:8]} ({dtype}) but the header gives it bytes "
                f"{start:,}..{end:,} of {data_size:,}; the file is damaged or not a safetensors file"
            )
        out[name] = (dtype, shape)
    return out


def _weight_headers(folder: Path) -> dict[str, list[int]] | None:
    """{tensor: shape} over the folder's safetensors files (single or sharded), or None for .bin weights."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            weight_map = json.loads(index.read_bytes())["weight_map"]
            files = sorted({str(v) for v in weight_map.values()})
        except (OSError, ValueError, RecursionError, KeyError, TypeError, AttributeError):
            raise CheckpointError(f"{index} is not a safetensors index (no weight_map)") from None
    elif (folder / "model.safetensors").is_file():
        files = ["model.safetensors"]
    else:
        return None
    shapes: dict[str, list[int]] = {}
    for name in files:
        path = folder / name
        if Path(name).name != name or not path.is_file():
            raise CheckpointError(f"the index of {folder} names {name[:200]}, which is missing")
        shapes.update({k: shape for k, (_, shape) in safetensors_header(path).items()})
    return shapes


def check_checkpoint(folder: str | os.PathLike) -> dict[str, Any]:
    """Check ``folder``'s ``config.json`` and weight headers (no tensor data read); returns the raw config."""
    folder = Path(folder)
    raw = read_config(folder)
    check_config(raw, str(folder / "config.json"))
    shapes = _weight_headers(folder)
    if not shapes:
        return raw
    where = f"{folder}/config.json"
    text = raw.get("text_config") or raw  # second generation: the decoder's sizes are in text_config
    embed = next((shapes[k] for k in _EMBEDDINGS if k in shapes), None)
    if embed is not None and text.get("vocab_size") and text.get("hidden_size"):
        if list(embed) != [text["vocab_size"], text["hidden_size"]]:
            raise CheckpointError(
                f"{where}: vocab_size {text['vocab_size']} x hidden_size {text['hidden_size']} does not match the "
                f"weights' embedding {tuple(embed)}; config.json does not belong to these weights"
            )
    layers = {int(m.group(1)) for name in shapes if (m := _LAYER.match(name))}
    if layers and text.get("num_hidden_layers") and text["num_hidden_layers"] != len(layers):
        raise CheckpointError(f"{where}: num_hidden_layers {text['num_hidden_layers']} but the weights hold "
                              f"{len(layers)} decoder layers; config.json does not belong to these weights")
    patch = next((shapes[k] for k in shapes if k.endswith("vision_encoder.embeddings.patch_embedding.weight")), None)
    vision = raw.get("vision_encoder_config") or {}
    if patch is not None and vision.get("hidden_size") and int(patch[0]) != vision["hidden_size"]:
        raise CheckpointError(f"{where}: vision_encoder_config.hidden_size {vision['hidden_size']} but the weights' "
                              f"patch embedding has {patch[0]} channels")
    return raw
