"""Upstream's README "Option 1: Using HuggingFace Transformers" code blocks, as published (Hulu-Med README.md,
ZJU-AI4H / youkangqi fork), kept here so ``test_readme.py`` can run them. Only trailing spaces were removed; the
test applies the documented changes (``import hulumed``, the model path, no ``trust_remote_code``, ``.cuda()``).
"""

LOAD = '''from transformers import AutoModelForCausalLM, AutoProcessor
import torch

model_path = "ZJU-AI4H/Hulu-Med-7B"

# Load model and processor
model = AutoModelForCausalLM.from_pretrained(
    model_path,
    trust_remote_code=True,
    torch_dtype="bfloat16",
    device_map="auto",
    attn_implementation="flash_attention_2",
)

processor = AutoProcessor.from_pretrained(
    model_path,
    trust_remote_code=True
)

tokenizer = processor.tokenizer
'''

TEXT = '''conversation = [
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "Hello, I have a headache, what should I eat?"},
        ]
    }
]

modal = 'text'
inputs = processor(
    conversation=conversation,
    return_tensors="pt",
    add_generation_prompt=True
)

inputs = {k: v.to(model.device) if isinstance(v, torch.Tensor) else v
          for k, v in inputs.items()}

with torch.inference_mode():
    output_ids = model.generate(
        **inputs,
        do_sample=True,
        modals=[modal],
        temperature=0.6,
        max_new_tokens=4096,
        use_cache=True,
        pad_token_id=tokenizer.eos_token_id,
    )

# Decode output
# Enable thinking mode by adding: "Please reason step by step, and put your final answer within \\\\boxed{}."
# use_think=False: Only return the final answer without thinking process
# use_think=True: Include the model's reasoning/thinking process in the output
outputs = processor.batch_decode(
    output_ids,
    skip_special_tokens=True,
    use_think=False  # Set to True to see the thinking process
)[0].strip()
print(outputs)
'''

IMAGE = '''conversation = [
    {
        "role": "user",
        "content": [
            {
                "type": "image",
                "image": {
                    "image_path": "./demo/demo.jpg",
                }
            },
            {
                "type": "text",
                "text": "Generate a medical report for this image."
            },
        ]
    }
]

inputs = processor(
    conversation=conversation,
    add_system_prompt=True,
    add_generation_prompt=True,
    return_tensors="pt"
)

inputs = {k: v.cuda() if isinstance(v, torch.Tensor) else v
          for k, v in inputs.items()}

if "pixel_values" in inputs:
    inputs["pixel_values"] = inputs["pixel_values"].to(torch.bfloat16)

output_ids = model.generate(**inputs, max_new_tokens=1024)
outputs = processor.batch_decode(
    output_ids,
    skip_special_tokens=True,
    use_think=False
)[0].strip()
print(outputs)
'''

MULTI_IMAGE = '''conversation = [
    {
        "role": "user",
        "content": [
            {
                "type": "image",
                "image": {
                    "image_path": "./demo/demo1.jpg",
                }
            },
            {
                "type": "image",
                "image": {
                    "image_path": "./demo/demo2.jpg",
                }
            },
            {
                "type": "text",
                "text": "Are these two images the same?"
            },
        ]
    }
]

inputs = processor(
    conversation=conversation,
    add_system_prompt=True,
    add_generation_prompt=True,
    return_tensors="pt"
)

inputs = {k: v.cuda() if isinstance(v, torch.Tensor) else v
          for k, v in inputs.items()}
if "pixel_values" in inputs:
    inputs["pixel_values"] = inputs["pixel_values"].to(torch.bfloat16)

output_ids = model.generate(**inputs, max_new_tokens=1024)
outputs_no_think = processor.batch_decode(
    output_ids,
    skip_special_tokens=True,
    use_think=False
)[0].strip()
print(outputs_no_think)
'''

INTERLEAVED = '''conversation = [
    {
        "role": "user",
        "content": [
            {
                "type": "text",
                "text": "Image A:"
            },
            {
                "type": "image",
                "image": {
                    "image_path": "./demo/XRay.jpg",
                }
            },
             {
                "type": "text",
                "text": "Image B:"
            },
            {
                "type": "image",
                "image": {
                    "image_path": "./demo/pathology.png",
                }
            },
            {
                "type": "text",
                "text": "Which image is the pathology slide?"
            },
        ]
    }
]

inputs = processor(
    conversation=conversation,
    add_system_prompt=True,
    add_generation_prompt=True,
    return_tensors="pt"
)

inputs = {k: v.cuda() if isinstance(v, torch.Tensor) else v
          for k, v in inputs.items()}
if "pixel_values" in inputs:
    inputs["pixel_values"] = inputs["pixel_values"].to(torch.bfloat16)

output_ids = model.generate(**inputs, max_new_tokens=1024)
outputs_no_think = processor.batch_decode(
    output_ids,
    skip_special_tokens=True,
    use_think=False
)[0].strip()
print(outputs_no_think)
'''

VOLUME = '''# Requires: pip install nibabel

conversation = [
    {
        "role": "user",
        "content": [
            {
                "type": "3d",
                "3d": {
                    "image_path": "./demo/amos_0013.nii",
                    "nii_num_slices": 180,
                    "nii_axis": 2,  # 0=sagittal, 1=coronal, 2=axial
                }
            },
            {
                "type": "text",
                "text": "Generate a medical report for this 3D CT scan."
            },
        ]
    }
]

inputs = processor(
    conversation=conversation,
    add_system_prompt=True,
    add_generation_prompt=True,
    return_tensors="pt"
)

inputs = {k: v.cuda() if isinstance(v, torch.Tensor) else v
          for k, v in inputs.items()}

if "pixel_values" in inputs:
    inputs["pixel_values"] = inputs["pixel_values"].to(torch.bfloat16)

output_ids = model.generate(**inputs, max_new_tokens=1024)
outputs = processor.batch_decode(
    output_ids,
    skip_special_tokens=True,
    use_think=False
)[0].strip()
print(outputs)
'''

VIDEO = '''conversation = [
    {
        "role": "user",
        "content": [
            {
                "type": "video",
                "video": {
                    "video_path": "./demo/1min_demo.mp4",
                    "fps": 1,
                    "max_frames": 1800
                }
            },
            {
                "type": "text",
                "text": "Describe this video in detail."
            },
        ]
    }
]

inputs = processor(
    conversation=conversation,
    add_system_prompt=True,
    add_generation_prompt=True,
    return_tensors="pt"
)

inputs = {k: v.cuda() if isinstance(v, torch.Tensor) else v
          for k, v in inputs.items()}

if "pixel_values" in inputs:
    inputs["pixel_values"] = inputs["pixel_values"].to(torch.bfloat16)

output_ids = model.generate(**inputs, max_new_tokens=1024)
outputs = processor.batch_decode(
    output_ids,
    skip_special_tokens=True,
    use_think=False
)[0].strip()
print(outputs)
'''

EXAMPLES = {"text": TEXT, "2d": IMAGE, "multi-image": MULTI_IMAGE, "interleaved": INTERLEAVED, "3d": VOLUME,
            "video": VIDEO}
