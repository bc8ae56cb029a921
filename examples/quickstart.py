"""Ask Hulu-Med about an image, a video, a 3D volume or plain text through plain transformers + ``import hulumed``.

    python examples/quickstart.py --model ZJU-AI4H/Hulu-Med-7B --image chest_xray.png "Describe this image."
    python examples/quickstart.py --model ZJU-AI4H/Hulu-Med-7B --volume ct.nii.gz --slices 64 "Write a report."

Without downloaded weights, point ``--model`` at the tiny random checkpoint shipped with the tests
(``tests/fixtures/golden/tiny-qwen2``): every step runs the same way, but its answers are random words.
"""

from __future__ import annotations

import argparse

import torch
from transformers import AutoModelForCausalLM, AutoProcessor

import hulumed  # noqa: F401  (registers Hulu-Med with the Auto classes: no trust_remote_code needed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("prompt")
    parser.add_argument("--model", default="ZJU-AI4H/Hulu-Med-7B", help="hub id or local folder (HF-Version layout)")
    parser.add_argument("--image", action="append", default=[], help="image file (repeat for several)")
    parser.add_argument("--video", help="video file or folder of frames")
    parser.add_argument("--volume", help="NIfTI volume (.nii / .nii.gz)")
    parser.add_argument("--slices", type=int, default=64, help="slices taken from --volume")
    parser.add_argument("--axis", type=int, default=2, help="slicing axis of --volume (0 sagittal, 1 coronal, 2 axial)")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    args = parser.parse_args()

    cuda = torch.cuda.is_available()
    model = AutoModelForCausalLM.from_pretrained(
        args.model, dtype=torch.bfloat16 if cuda else torch.float32, attn_implementation="sdpa"
    ).to("cuda" if cuda else "cpu")
    processor = AutoProcessor.from_pretrained(args.model)

    content: list[dict] = [{"type": "image", "image": {"image_path": path}} for path in args.image]
    if args.video:
        content.append({"type": "video", "video": {"video_path": args.video, "fps": 1, "max_frames": 128}})
    if args.volume:
        content.append({"type": "3d", "3d": {"image_path": args.volume, "nii_num_slices": args.slices, "nii_axis": args.axis}})
    content.append({"type": "text", "text": args.prompt})
    inputs = processor(
        conversation=[{"role": "user", "content": content}],
        add_system_prompt=len(content) > 1,
        add_generation_prompt=True,
        return_tensors="pt",
    )
    inputs = {k: v.to(model.device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
    if "pixel_values" in inputs:
        inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
    output_ids = model.generate(**inputs, max_new_tokens=args.max_new_tokens, do_sample=False)
    print(processor.batch_decode(output_ids, skip_special_tokens=True, use_think=False)[0].strip())


if __name__ == "__main__":
    main()
