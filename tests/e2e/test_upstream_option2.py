"""Upstream's README "Option 2" (original method) examples, verbatim, on CPU with our package.

The code blocks (``upstream_option2.py``) run with only the model path and the device lines changed, on a tiny
checkpoint in the ORIGINAL layout (doubled vision-encoder prefix, ``pytorch_model.bin``, no chat template). The
tiny model's end-token row gets a push along its mean hidden state so sampled answers end after tens of tokens
instead of running to the examples' ``max_new_tokens=8192``. Each example's output tokens are then compared with the
Option 1 path (the HF-Version processor on the same conversation, same model, same seed), and the media the examples
load are checked against upstream's original rules computed here independently (nibabel, PyAV).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import GOLDEN

from . import upstream_option2 as option2

INPUTS = GOLDEN / "inputs"
EOS = 2002  # <|im_end|> of the tiny tokenizer


def _original_folder(root: Path) -> Path:
    """tiny-qwen2 in the original layout, with an end token the sampled answers reach."""
    from safetensors.torch import load_file

    import hulumed
    from hulumed.generation import GenerationParams

    engine = hulumed.load(GOLDEN / "tiny-qwen2", device="cpu")
    hidden: list[torch.Tensor] = []
    hook = engine.model.model.norm.register_forward_hook(
        lambda module, args, out: hidden.append(out.detach().reshape(-1, out.shape[-1])))
    for prompt in ("hi", "Describe", "What is a CT?"):
        engine.generate([{"role": "user", "content": prompt}], GenerationParams.greedy(30, repetition_penalty=1.0))
    hook.remove()
    mean = torch.cat(hidden).mean(0)
    state = load_file(str(GOLDEN / "tiny-qwen2" / "model.safetensors"))
    state["lm_head.weight"] = state["lm_head.weight"].clone()
    state["lm_head.weight"][EOS] += 1.3 * mean / mean.norm()
    folder = root / "Hulu-Med-tiny-original"
    folder.mkdir()
    state = {k.replace("model.vision_encoder.", "model.vision_encoder.vision_encoder.", 1): v for k, v in state.items()}
    torch.save(state, folder / "pytorch_model.bin")
    config = json.loads((GOLDEN / "tiny-qwen2" / "config.json").read_text())
    config.pop("auto_map")
    (folder / "config.json").write_text(json.dumps(config))
    for file in (GOLDEN / "tiny-qwen2").iterdir():  # tokenizer + image processor config; no chat template
        if file.name.startswith(("tokenizer", "vocab", "merges", "special_tokens", "added_tokens",
                                 "generation_config", "preprocessor")):
            shutil.copy(file, folder / file.name)
    return folder


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """The examples' working folder (./demo/ with their file names) and the loaded Option 2 namespace."""
    import nibabel as nib
    from PIL import Image

    root = tmp_path_factory.mktemp("option2")
    demo = root / "demo"
    demo.mkdir()
    Image.open(INPUTS / "image_a.png").convert("RGB").save(demo / "demo.jpg", quality=95)
    volume = nib.load(str(INPUTS / "volume.nii.gz"))
    nib.save(nib.Nifti1Image(np.asarray(volume.dataobj), volume.affine), str(demo / "amos_0013.nii"))
    shutil.copy(INPUTS / "video.mp4", demo / "1min_demo.mp4")
    folder = _original_folder(root)
    code = (option2.LOAD.replace("path/to/your/model", str(folder)).replace("cuda:0", "cpu"))
    namespace: dict = {}
    with _cwd(root):
        exec(compile(code, "README Option 2 (load)", "exec"), namespace)  # noqa: S102 - the README's own code
    return root, namespace


class _cwd:
    def __init__(self, path: Path) -> None:
        self.path, self.old = path, None

    def __enter__(self) -> None:
        import os

        self.old = os.getcwd()
        os.chdir(self.path)

    def __exit__(self, *exc: object) -> None:
        import os

        os.chdir(self.old)


def _run(workspace, block: str) -> dict:
    """Run one example as published (device lines changed), seeded; its namespace afterwards."""
    root, loaded = workspace
    code = block.replace("v.cuda().to('cpu')", "v.to('cpu')").replace("cuda:0", "cpu").replace(".cuda()", "")
    assert "cuda" not in code
    namespace = dict(loaded)
    torch.manual_seed(0)
    with _cwd(root):
        exec(compile(code, "README Option 2 example", "exec"), namespace)  # noqa: S102 - the README's own code
    return namespace


def _option1(namespace: dict, conversation: list, modal: str, images=None, merge_size=None) -> torch.Tensor:
    """The same model through the HF-Version processor (Option 1's API), same generate call, same seed."""
    from transformers import AutoProcessor

    import hulumed  # noqa: F401

    processor = AutoProcessor.from_pretrained(GOLDEN / "tiny-qwen2")
    if images is None:
        inputs = processor(conversation=conversation, add_system_prompt=False, add_generation_prompt=True,
                           return_tensors="pt")
    else:  # frames the example loaded itself: the prompt from the checkpoint's (HF-Version) template
        prompt = processor.apply_chat_template(conversation, add_generation_prompt=True)
        inputs = processor(text=prompt, images=images, merge_size=merge_size, return_tensors="pt")
    inputs = {k: v for k, v in inputs.items() if k != "modals"}
    if "pixel_values" in inputs:
        inputs["pixel_values"] = inputs["pixel_values"].to(torch.bfloat16)
    tokenizer = namespace["tokenizer"]
    torch.manual_seed(0)
    with torch.inference_mode():
        return namespace["model"].generate(**inputs, do_sample=True, modals=[modal], temperature=0.6,
                                           max_new_tokens=8192, use_cache=True, pad_token_id=tokenizer.eos_token_id)


def _answered(namespace: dict) -> None:
    ids = namespace["output_ids"]
    assert 0 < ids.shape[1] < 8192 and int(ids[0, -1]) in (EOS, 2000)  # ended on its own
    assert isinstance(namespace["outputs"], str)


def test_2d_example_runs_and_equals_option1(workspace):
    namespace = _run(workspace, option2.IMAGE_2D)
    _answered(namespace)
    root, _ = workspace
    image = {"type": "image", "image": {"image_path": str(root / "demo/demo.jpg")}}
    conversation = [{"role": "user", "content": [image, {"type": "text", "text": "Describe this image in detail."}]}]
    assert torch.equal(namespace["output_ids"], _option1(namespace, conversation, "image"))


def test_text_example_runs_and_equals_option1(workspace):
    namespace = _run(workspace, option2.TEXT)
    _answered(namespace)
    text = {"type": "text", "text": "Hello, I have a headache, what should I do?"}
    conversation = [{"role": "user", "content": [text]}]
    assert torch.equal(namespace["output_ids"], _option1(namespace, conversation, "text"))


def test_3d_example_loads_upstreams_slices_and_equals_option1(workspace):
    import nibabel as nib

    namespace = _run(workspace, option2.VOLUME_3D)
    _answered(namespace)
    root, _ = workspace
    data = nib.load(str(root / "demo/amos_0013.nii")).get_fdata()
    indices = np.linspace(0, data.shape[2] - 1, 160, dtype=int)  # upstream: always 160, repeating slices
    slices = namespace["slices"]
    assert len(slices) == 160
    for got, index in zip(slices[:: 23], indices[:: 23]):
        plane = data[:, :, index]
        if plane.max() > plane.min():
            plane = (plane - plane.min()) / (plane.max() - plane.min()) * 255.0
        expected = np.stack([plane.astype(np.uint8)] * 3, axis=-1)  # PIL from the (X, Y) plane: (X, Y, 3)
        assert np.array_equal(np.asarray(got), expected)
    reference = _option1(namespace, namespace["conversation"], "video", images=[slices], merge_size=2)
    assert torch.equal(namespace["output_ids"], reference)


def test_video_example_loads_upstreams_frames_and_equals_option1(workspace):
    import av

    namespace = _run(workspace, option2.VIDEO)
    _answered(namespace)
    root, _ = workspace
    with av.open(str(root / "demo/1min_demo.mp4")) as container:
        stream = container.streams.video[0]
        rate = float(stream.average_rate)
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    indices = list(range(len(decoded)))[:: max(1, int(rate / 1))]  # upstream: every int(fps_video / fps)-th
    frames, timestamps = namespace["frames"], namespace["timestamps"]
    assert timestamps == [i / rate for i in indices]
    assert np.array_equal(frames, np.stack([decoded[i] for i in indices]))
    reference = _option1(namespace, namespace["conversation"], "video", images=[frames], merge_size=2)
    assert torch.equal(namespace["output_ids"], reference)


def test_helpers_behave_as_upstreams(workspace):
    from hulumed.mm_utils import KeywordsStoppingCriteria, get_model_name_from_path, tokenizer_multimodal_token

    _, namespace = workspace
    tokenizer = namespace["tokenizer"]
    assert get_model_name_from_path("/ckpt/Hulu-Med-7B/") == "Hulu-Med-7B"
    assert get_model_name_from_path("runs/lora/checkpoint-200") == "lora_checkpoint-200"
    ids = tokenizer_multimodal_token("a <image> b", tokenizer)
    assert ids.count(-200) == 1 and ids[0] != -200
    assert tokenizer_multimodal_token("a <image>", tokenizer, return_tensors="pt").dtype == torch.long
    stop = KeywordsStoppingCriteria([tokenizer.eos_token], tokenizer, torch.zeros(1, 5, dtype=torch.long))
    assert stop(torch.tensor([[5, 6, EOS], [5, 6, 7]]), None).tolist() == [True, False]
    assert namespace["context_len"] == 2048 and namespace["model"].device.type == "cpu"


def test_model_init_and_mm_infer(workspace):
    import hulumed

    root, _ = workspace
    model, processor = hulumed.model_init(str(root / "Hulu-Med-tiny-original"), device_map="cpu")
    answer = hulumed.mm_infer(processor(text=[{"role": "user", "content": "hi"}], return_tensors="pt"), model,
                              processor.tokenizer, modal="text", max_new_tokens=16)
    assert isinstance(answer, str)
    hulumed.disable_torch_init()
    assert torch.nn.Linear(2, 2).weight.abs().sum() > 0  # torch's own init still runs (not patched process-wide)


def test_load_pretrained_model_merges_a_lora_adapter(tmp_path):
    """Upstream's LoRA branch (a NameError there): base from the adapter config, adapter merged."""
    from peft import LoraConfig, get_peft_model

    import hulumed
    from hulumed.model import load_pretrained_model

    base = hulumed.load(GOLDEN / "tiny-qwen2", device="cpu").model
    peft_model = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    for name, parameter in peft_model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(parameter, std=0.1)  # a trained adapter changes the outputs
    peft_model.save_pretrained(tmp_path / "run-lora")
    ids = torch.tensor([[1, 5, 9, 14, 20]])
    with torch.no_grad():
        expected = peft_model(input_ids=ids).logits
    tokenizer, model, image_processor, _ = load_pretrained_model(tmp_path / "run-lora", None, "run-lora",
                                                                 device_map="cpu")
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids).logits, expected, atol=1e-5, rtol=1e-5)
    assert not hasattr(model, "peft_config") and tokenizer.eos_token and image_processor is not None
    with pytest.raises(Exception, match="not a LoRA adapter"):
        load_pretrained_model(GOLDEN / "tiny-qwen2", GOLDEN / "tiny-qwen2", "x-base", device_map="cpu")
