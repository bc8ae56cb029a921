"""Model resolution: a local folder, or a hub id downloaded / found in the cache through huggingface_hub.

``resolve_model(id_or_path, revision=None)`` returns a local folder. A hub id is fetched with
``snapshot_download`` (which honours ``HF_HOME``, ``HF_HUB_CACHE`` and ``HF_HUB_OFFLINE``); when offline and
not cached, a ``CheckpointError`` says so and how to fix it instead of a stack of HTTP errors.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import CheckpointError

# Files a Hulu-Med folder needs (weights are matched by pattern: single or sharded, safetensors or bin).
_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja", "*.bin"]


def resolve_model(model: str | os.PathLike, revision: str | None = None, cache_dir: str | None = None) -> Path:
    """A local folder with the checkpoint ``model`` (a path, or a hub id such as ``ZJU-AI4H/Hulu-Med-7B``)."""
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            if (path / "adapter_config.json").is_file():
                raise CheckpointError(
                    f"{path} holds a LoRA adapter, not a full checkpoint; merge it first: "
                    f"`hulumed merge-lora {path} --output {path}-merged`, then use --model {path}-merged"
                )
            raise CheckpointError(f"{path} has no config.json; point at a Hulu-Med checkpoint folder")
        return path
    text = str(model)
    if path.exists() or text.startswith((".", "/", "~")) or text.count("/") != 1:
        raise CheckpointError(
            f"{text!r} is neither a checkpoint folder nor a hub id like 'ZJU-AI4H/Hulu-Med-7B' "
            "(try `hulumed make-tiny ./tiny` for a small local checkpoint)"
        )
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    try:
        return Path(snapshot_download(text, revision=revision, cache_dir=cache_dir, allow_patterns=_PATTERNS))
    except LocalEntryNotFoundError as error:
        raise CheckpointError(
            f"{text} is not in the local hub cache and downloading is off or failed "
            f"(HF_HUB_OFFLINE={os.environ.get('HF_HUB_OFFLINE', '0')}). Download it once with network access "
            f"(`hf download {text}`), or pass a local folder."
        ) from error
    except (RepositoryNotFoundError, RevisionNotFoundError) as error:
        raise CheckpointError(f"no such model on the hub: {text} (revision {revision or 'main'}): {error}") from error
