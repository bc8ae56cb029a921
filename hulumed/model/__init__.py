"""The Hulu-Med network: configs, vision encoder, projector, token reduction, decoder glue, checkpoints.

``processor.py`` and ``load_pretrained_model`` are upstream's original-method names (README "Option 2"), kept at
the paths upstream's code imports them from (``hulumed/upstream_api.py``)."""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    """``load_pretrained_model``: upstream's original-method loader (README "Option 2"), imported on first use."""
    if name == "load_pretrained_model":
        from ..upstream_api import load_pretrained_model

        return load_pretrained_model
    raise AttributeError(f"module 'hulumed.model' has no attribute {name!r}")
