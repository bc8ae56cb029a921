"""The device and dtype rule every backend shares: cuda > mps > cpu; bf16 on CUDA, fp32 elsewhere, or a name."""

from __future__ import annotations

import torch

_DTYPE_NAMES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32", "half": "float16", "float": "float32"}


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """The requested device, else cuda, then mps, then cpu."""
    if device is not None:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def pick_dtype(device: torch.device | str | None, dtype: str | torch.dtype | None = None) -> torch.dtype:
    """The requested dtype, else bf16 on CUDA and fp32 elsewhere."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is not None:
        resolved = getattr(torch, _DTYPE_NAMES.get(dtype, dtype), None)
        if not isinstance(resolved, torch.dtype):
            raise ValueError(f"unknown dtype {dtype!r}; use bfloat16, float16 or float32")
        return resolved
    return torch.bfloat16 if pick_device(device).type == "cuda" else torch.float32
