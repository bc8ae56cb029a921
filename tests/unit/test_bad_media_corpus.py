"""The broken-media corpus (tests/fixtures/bad): every file gives a typed `MediaError` with a useful message.

Each file is rejected by its loader with a message matching the manifest, again through the processor (as an
image, video or 3d item), and no message or log record ever contains the fake patient data of the DICOM files.
"""

from __future__ import annotations

import json
import logging
import re
from functools import lru_cache
from pathlib import Path

import pytest

from hulumed import MediaError
from hulumed.processing import HulumedProcessor, load_image, load_video, load_volume

BAD = Path(__file__).resolve().parent.parent / "fixtures" / "bad"
GOLDEN = Path(__file__).resolve().parent.parent / "fixtures" / "golden"
MANIFEST: dict[str, dict[str, str]] = json.loads((BAD / "manifest.json").read_text())
LOADERS = {"image": load_image, "video": load_video, "volume": load_volume}
SECRETS = ("Secretname", "Hiddenperson", "PID-7731-SECRET", "19451231", "20240229", "Secret Hospital")


@lru_cache(maxsize=None)
def _processor() -> HulumedProcessor:
    return HulumedProcessor.from_pretrained(GOLDEN / "tiny-qwen2")


def _item(loader: str, path: Path) -> dict:
    if loader == "image":
        return {"type": "image", "image": {"image_path": str(path)}}
    if loader == "video":
        return {"type": "video", "video": {"video_path": str(path)}}
    return {"type": "3d", "3d": {"image_path": str(path)}}


def test_corpus_is_complete_and_small():
    files = {p.name for p in BAD.iterdir() if p.name not in ("manifest.json", "make_corpus.py", "__pycache__")}
    assert files == set(MANIFEST)
    assert len(MANIFEST) >= 40
    assert {entry["loader"] for entry in MANIFEST.values()} == set(LOADERS)
    assert sum((BAD / name).stat().st_size for name in MANIFEST) < 200_000


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_bad_file_gives_typed_error(name: str, caplog: pytest.LogCaptureFixture):
    entry = MANIFEST[name]
    path = BAD / name
    caplog.set_level(logging.DEBUG)
    with pytest.raises(MediaError) as info:
        LOADERS[entry["loader"]](path)
    message = str(info.value)
    assert re.search(entry["match"], message, re.IGNORECASE), message
    assert name in message  # says which file
    with pytest.raises(MediaError) as through_processor:
        _processor()(conversation=[{"role": "user", "content": [_item(entry["loader"], path)]}])
    logged = " ".join(record.getMessage() for record in caplog.records)
    for secret in SECRETS:
        assert secret not in message and secret not in str(through_processor.value) and secret not in logged
