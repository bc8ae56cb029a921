"""Checkpoint layouts: official HF-Version (single, sharded), original layout, strict errors, save round trip."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import hulumed
from hulumed import CheckpointError, HulumedQwen2ForCausalLM, HulumedQwen3ForCausalLM
from hulumed.model.checkpoint import detect_layout
from tests.conftest import GOLDEN, load_case


def _logits(model, case: str = "volume_3d") -> torch.Tensor:
    meta, t = load_case(model.config.model_type.replace("hulumed_", "tiny-"), case)
    with torch.no_grad():
        return model(
            input_ids=t["input_ids"], pixel_values=t["pixel_values"], grid_sizes=t["grid_sizes"],
            merge_sizes=t["merge_sizes"], modals=meta["modals"],
        ).logits


def _copy(variant: str, tmp_path: Path) -> Path:
    folder = tmp_path / variant
    shutil.copytree(GOLDEN / variant, folder)
    return folder


@pytest.mark.parametrize("variant", ["tiny-qwen2", "tiny-qwen3"])
def test_auto_classes_load_official_folder_without_remote_code(variant):
    from transformers import AutoConfig, AutoImageProcessor, AutoModelForCausalLM, AutoProcessor

    assert type(AutoImageProcessor.from_pretrained(GOLDEN / variant)).__name__ == "HulumedImageProcessor"
    assert type(AutoProcessor.from_pretrained(GOLDEN / variant)).__name__ == "HulumedProcessor"
    config = AutoConfig.from_pretrained(GOLDEN / variant)
    model = AutoModelForCausalLM.from_pretrained(GOLDEN / variant)
    expected = HulumedQwen2ForCausalLM if variant == "tiny-qwen2" else HulumedQwen3ForCausalLM
    assert type(model) is expected and type(config) is expected.config_class
    _, t = load_case(variant, "volume_3d")
    torch.testing.assert_close(_logits(model), t["logits"], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("variant", ["tiny-qwen2", "tiny-qwen3"])
def test_save_pretrained_writes_the_official_layout(variant, tmp_path, golden_model):
    model = golden_model(variant)
    model.save_pretrained(tmp_path / "saved")
    with safe_open(str(tmp_path / "saved" / "model.safetensors"), "pt") as saved, safe_open(
        str(GOLDEN / variant / "model.safetensors"), "pt"
    ) as official:
        assert set(saved.keys()) == set(official.keys())
        assert saved.metadata() == {"format": "pt"}
    written = json.loads((tmp_path / "saved" / "config.json").read_text())
    official_config = json.loads((GOLDEN / variant / "config.json").read_text())
    for key, value in official_config.items():  # every official key is written back, with its value
        if key != "transformers_version":
            assert written[key] == value, key
    reloaded = type(model).from_pretrained(tmp_path / "saved")
    assert torch.equal(_logits(reloaded), _logits(model))


def test_sharded_safetensors_with_index(tmp_path, golden_model):
    model = golden_model("tiny-qwen2")
    model.save_pretrained(tmp_path / "sharded", max_shard_size="300KB")
    files = sorted(p.name for p in (tmp_path / "sharded").glob("*.safetensors"))
    assert len(files) > 1 and (tmp_path / "sharded" / "model.safetensors.index.json").is_file()
    assert torch.equal(_logits(HulumedQwen2ForCausalLM.from_pretrained(tmp_path / "sharded")), _logits(model))


def _original_folder(tmp_path, variant: str = "tiny-qwen2"):
    folder = tmp_path / "original"
    folder.mkdir()
    state = load_file(str(GOLDEN / variant / "model.safetensors"))
    state = {k.replace("model.vision_encoder.", "model.vision_encoder.vision_encoder.", 1): v for k, v in state.items()}
    torch.save(state, folder / "pytorch_model.bin")
    config = json.loads((GOLDEN / variant / "config.json").read_text())
    config.pop("auto_map")
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize("variant", ["tiny-qwen2", "tiny-qwen3"])
def test_original_layout_doubled_prefix_and_bin(variant, tmp_path):
    folder = _original_folder(tmp_path, variant)
    config = json.loads((folder / "config.json").read_text())
    config["model_type"] = "hulumed_qwen2"  # the original code calls the Qwen3 models hulumed_qwen2 too
    config["vision_encoder"] = "ZJU-AI4H/SigLip-NaViT"
    (folder / "config.json").write_text(json.dumps(config))
    assert detect_layout(folder) == "original"
    model = HulumedQwen2ForCausalLM.from_pretrained(folder)
    expected = HulumedQwen2ForCausalLM if variant == "tiny-qwen2" else HulumedQwen3ForCausalLM
    assert type(model) is expected
    _, t = load_case(variant, "volume_3d")
    torch.testing.assert_close(_logits(model), t["logits"], atol=1e-4, rtol=1e-4)


def test_original_layout_keeps_dtype_and_device_placement(tmp_path):
    """Regression: the original-layout path used to drop device_map (and quantization_config)."""
    folder = _original_folder(tmp_path)
    model = HulumedQwen2ForCausalLM.from_pretrained(folder, dtype=torch.bfloat16)
    assert model.dtype == torch.bfloat16 and model.model.vision_encoder.dtype == torch.bfloat16
    placed = HulumedQwen2ForCausalLM.from_pretrained(folder, device_map={"": "meta"})  # placed by transformers
    assert {p.device.type for p in placed.parameters()} == {"meta"}


def test_original_layout_honours_quantization_config(tmp_path):
    """A quantization config reaches transformers' quantizer for both layouts (here: it asks for bitsandbytes)."""
    from transformers import BitsAndBytesConfig

    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("bitsandbytes is installed: the refusal below is what a machine without it shows")
    quantization = BitsAndBytesConfig(load_in_4bit=True)
    for folder in (GOLDEN / "tiny-qwen2", _original_folder(tmp_path)):
        with pytest.raises(ImportError, match="bitsandbytes"):
            HulumedQwen2ForCausalLM.from_pretrained(folder, quantization_config=quantization, device_map={"": "cpu"})


def test_original_layout_without_encoder_config_needs_standard_encoder(tmp_path):
    folder = tmp_path / "original"
    folder.mkdir()
    state = load_file(str(GOLDEN / "tiny-qwen2" / "model.safetensors"))
    state = {k.replace("model.vision_encoder.", "model.vision_encoder.vision_encoder.", 1): v for k, v in state.items()}
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    config = json.loads((GOLDEN / "tiny-qwen2" / "config.json").read_text())
    config.pop("vision_encoder_config")
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="vision_encoder_config"):
        HulumedQwen2ForCausalLM.from_pretrained(folder)


def test_missing_tensor_is_named(tmp_path):
    folder = _copy("tiny-qwen2", tmp_path)
    state = load_file(str(folder / "model.safetensors"))
    del state["model.mm_projector.readout.2.bias"]
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=r"missing tensors \(1\): model\.mm_projector\.readout\.2\.bias"):
        HulumedQwen2ForCausalLM.from_pretrained(folder)


def test_unexpected_tensor_is_named(tmp_path):
    folder = _copy("tiny-qwen3", tmp_path)
    state = load_file(str(folder / "model.safetensors"))
    state["model.vision_encoder.head.weight"] = torch.zeros(2)
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=r"unexpected tensors \(1\): model\.vision_encoder\.head\.weight"):
        HulumedQwen3ForCausalLM.from_pretrained(folder)


def test_wrong_shape_is_an_error(tmp_path):
    folder = _copy("tiny-qwen2", tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config["vision_encoder_config"]["intermediate_size"] = 80
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="wrong shape"):
        HulumedQwen2ForCausalLM.from_pretrained(folder)


def test_folder_without_weights(tmp_path):
    folder = _copy("tiny-qwen2", tmp_path)
    (folder / "model.safetensors").unlink()
    with pytest.raises((CheckpointError, OSError)):
        HulumedQwen2ForCausalLM.from_pretrained(folder)


def test_config_round_trip_keeps_unknown_keys_and_upstream_keys(tmp_path):
    config = hulumed.HulumedQwen3Config.from_pretrained(GOLDEN / "tiny-qwen3")
    assert config.image_token_index == 2026 and config.use_token_compression is False
    assert config.mm_vision_select_layer == -1 and config.image_aspect_ratio == "avt"
    assert config.vision_config().hidden_size == 32 and config.head_dim == 32
    written = config.to_dict()
    assert written["rope_theta"] == 5e6 and written["rope_scaling"] is None
    assert written["vision_encoder_config"] == json.loads((GOLDEN / "tiny-qwen3" / "config.json").read_text())[
        "vision_encoder_config"
    ]
    fresh = hulumed.HulumedQwen2Config()
    assert fresh.auto_map["AutoModelForCausalLM"] == "modeling_hulumed_qwen2.HulumedQwen2ForCausalLM"
    assert fresh.vision_config().num_hidden_layers == 27


def test_hub_kernels_are_off_unless_asked(tmp_path):
    """transformers 5.25 turns Hub kernels on by default (they fetch code while loading and break meta-device
    loading); a Hulu-Med load keeps the checkpoint's own layers unless use_kernels=True is passed."""
    model = HulumedQwen2ForCausalLM.from_pretrained(GOLDEN / "tiny-qwen2")
    assert model.use_kernels is False
    placed = HulumedQwen2ForCausalLM.from_pretrained(GOLDEN / "tiny-qwen2", device_map={"": "meta"})
    assert {p.device.type for p in placed.parameters()} == {"meta"}
