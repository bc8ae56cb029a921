"""What a training output folder holds beyond the weights: the base checkpoint's processor and tokenizer files.

Every ``checkpoint-N/``, the final output and a merged LoRA model get the base folder's processor files copied
verbatim (tokenizer, ``chat_template.json``, ``preprocessor_config.json``, ``processor_config.json``) plus its
remote-code ``*.py`` files, so the folder is a complete official HF-Version checkpoint: it loads with
``AutoModelForCausalLM`` / ``AutoProcessor`` after ``import hulumed`` and with upstream's ``trust_remote_code``.
Copying, rather than ``processor.save_pretrained``, keeps the exact upstream file formats (transformers 5
would write ``chat_template.jinja``, which upstream's transformers 4.51 does not read).
"""

from __future__ import annotations

import fnmatch
import os
import shutil
from pathlib import Path

PROCESSOR_FILE_PATTERNS = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.json",
    "merges.txt",
    "added_tokens.json",
    "special_tokens_map.json",
    "chat_template.json",
    "chat_template.jinja",
    "preprocessor_config.json",
    "processor_config.json",
    "video_preprocessor_config.json",
    "*.py",
)


def base_folder(model: str | os.PathLike) -> Path:
    """The local folder of a checkpoint: itself, or the hub cache snapshot of its small files."""
    if Path(model).is_dir():
        return Path(model)
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(str(model), allow_patterns=list(PROCESSOR_FILE_PATTERNS)))


def copy_processor_files(source: str | os.PathLike, target: str | os.PathLike) -> list[str]:
    """Copy the processor / tokenizer / remote-code files of ``source`` into ``target``; returns their names."""
    source, target = Path(source), Path(target)
    target.mkdir(parents=True, exist_ok=True)
    copied = []
    for path in sorted(source.iterdir()):
        if path.is_file() and any(fnmatch.fnmatch(path.name, pattern) for pattern in PROCESSOR_FILE_PATTERNS):
            if path.resolve() != (target / path.name).resolve():
                shutil.copyfile(path, target / path.name)
            copied.append(path.name)
    return copied
