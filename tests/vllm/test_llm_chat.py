"""vLLM's own chat path on a Hulu-Med folder with no chat flags: ``vllm.LLM(model=folder).chat(messages)``.

No ``chat_template``, no ``chat_template_kwargs``, no ``media_io_kwargs``: the plugin gives vLLM the template
defaults (image token, system prompt as our engine) and our video / volume loader. Greedy tokens and prompt lengths
equal the transformers engine's on text, image, two images, interleaved, video and a NIfTI volume. ``dtype`` and
``enforce_eager`` are precision and CPU-speed settings (the reference runs in fp32), not chat settings.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

pytest.importorskip("vllm")

from .conftest import MAX_NEW, hf_reference


def _uri(path: Path, mime: str) -> str:
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode()


@pytest.fixture(scope="module")
def llm(tiny_vllm_checkpoint):
    import gc

    from vllm import LLM

    llm = LLM(model=str(tiny_vllm_checkpoint), dtype="float32", enforce_eager=True, max_model_len=4096)
    yield llm
    del llm
    gc.collect()


def _conversations(media: dict[str, Path]) -> dict[str, tuple[list, list]]:
    """name -> (OpenAI-style messages for vLLM, the same conversation for our engine)."""
    image_a = {"type": "image_url", "image_url": {"url": _uri(media["a"], "image/png")}}
    image_b = {"type": "image_url", "image_url": {"url": _uri(media["b"], "image/png")}}
    ours_a, ours_b = {"type": "image", "image": str(media["a"])}, {"type": "image", "image": str(media["b"])}

    def text(value: str) -> dict:
        return {"type": "text", "text": value}

    return {
        "text": ([{"role": "user", "content": "What is a pneumothorax?"}],
                 [{"role": "user", "content": "What is a pneumothorax?"}]),
        "image": ([{"role": "user", "content": [image_a, text("Describe the image.")]}],
                  [{"role": "user", "content": [ours_a, text("Describe the image.")]}]),
        "two_images": ([{"role": "user", "content": [image_a, image_b, text("Compare them.")]}],
                       [{"role": "user", "content": [ours_a, ours_b, text("Compare them.")]}]),
        "interleaved": ([{"role": "user", "content": [text("First:"), image_a, text("then:"), image_b]}],
                        [{"role": "user", "content": [text("First:"), ours_a, text("then:"), ours_b]}]),
        "video": ([{"role": "user", "content": [
                       {"type": "video_url", "video_url": {"url": _uri(media["clip"], "video/mp4")}},
                       text("What happens?")]}],
                  [{"role": "user", "content": [{"type": "video", "video": {"video_path": str(media["clip"])}},
                                                text("What happens?")]}]),
        "volume": ([{"role": "user", "content": [
                        {"type": "video_url", "video_url": {"url": _uri(media["nii"], "application/gzip")}},
                        text("Findings?")]}],
                   [{"role": "user", "content": [{"type": "3d", "3d": {"image_path": str(media["nii"])}},
                                                 text("Findings?")]}]),
    }


@pytest.mark.parametrize("name", ["text", "image", "two_images", "interleaved", "video", "volume"])
def test_llm_chat_with_default_arguments_equals_our_engine(llm, tiny_vllm_checkpoint, media, name):
    from vllm import SamplingParams

    import hulumed
    from hulumed.generation import GenerationParams

    messages, ours = _conversations(media)[name]
    hf = hulumed.load(tiny_vllm_checkpoint)
    prompt, _ = hf_reference(hf, ours, max_new=1)
    # plain greedy (vLLM's own repetition penalty would also count the prompt; ours counts generated tokens)
    [expected] = hf.generate(ours, GenerationParams.greedy(MAX_NEW, repetition_penalty=1.0))
    [output] = llm.chat(messages, SamplingParams(temperature=0, max_tokens=MAX_NEW))
    assert list(output.prompt_token_ids) == prompt
    assert list(output.outputs[0].token_ids) == expected.token_ids
