"""One rank of a sharded training check, launched by tests/e2e/test_train_sharded.py with torchrun (gloo, CPU).

    torchrun --nproc_per_node 2 tests/e2e/sharded_worker.py ENGINE VISION OUT.json

ENGINE: "fsdp2" (torch's `fully_shard` per decoder / encoder layer, then the whole model), "zero2" or "zero3" (the
DeepSpeed engine with configs/train/deepspeed/zeroN.json, DS_ACCELERATOR=cpu). VISION: "full" or "frozen".
Rank 0 trains on a text-only batch, rank 1 on an image batch, for 3 optimizer steps through the model's own
forward (no Trainer). Each rank writes its losses and a digest of the full parameters it ends with.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "tests" / "fixtures" / "golden" / "tiny-qwen2"
INPUTS = ROOT / "tests" / "fixtures" / "golden" / "inputs"


def batch(processor, rank: int) -> dict:
    if rank == 0:
        conversation = [{"role": "user", "content": "What is the normal resting heart rate?"},
                        {"role": "assistant", "content": "Sixty to one hundred beats per minute."}]
    else:
        image = {"type": "image", "image": {"image_path": str(INPUTS / "image_a.png")}}
        conversation = [{"role": "user", "content": [image, {"type": "text", "text": "Describe the image."}]},
                        {"role": "assistant", "content": "A small test pattern."}]
    inputs = dict(processor(conversation=conversation, return_tensors="pt"))
    inputs.pop("attention_mask", None)
    labels = inputs["input_ids"].clone()
    labels[labels == processor.tokenizer.convert_tokens_to_ids("<image>")] = -100
    inputs["labels"] = labels
    return inputs


def digest(model) -> str:
    hasher = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        if hasattr(tensor, "full_tensor"):
            tensor = tensor.full_tensor()
        hasher.update(name.encode())
        hasher.update(tensor.detach().float().contiguous().numpy().tobytes())
    return hasher.hexdigest()[:16]


def main() -> None:
    engine, vision, out = sys.argv[1], sys.argv[2], sys.argv[3]
    from transformers import AutoProcessor

    import hulumed  # noqa: F401  (Auto classes)
    from hulumed.model.modeling import HulumedQwen2ForCausalLM

    torch.manual_seed(0)
    processor = AutoProcessor.from_pretrained(TINY)
    model = HulumedQwen2ForCausalLM.from_pretrained(TINY).train()
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(vision == "full" or "vision_encoder" not in name)
    if engine == "fsdp2":
        dist.init_process_group("gloo")
        from torch.distributed.fsdp import fully_shard

        for layer in [*model.model.vision_encoder.encoder.layers, *model.model.layers]:
            fully_shard(layer)
        fully_shard(model)
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
        step_model = model
    else:
        import deepspeed

        deepspeed.init_distributed(dist_backend="gloo")
        config = json.loads((ROOT / "configs" / "train" / "deepspeed" / f"{engine}.json").read_text())
        config.update({"train_micro_batch_size_per_gpu": 1, "gradient_accumulation_steps": 1,
                       "train_batch_size": dist.get_world_size(), "bf16": {"enabled": False},
                       "fp16": {"enabled": False}, "gradient_clipping": 1.0,
                       "optimizer": {"type": "AdamW", "params": {"lr": 1e-3, "torch_adam": True}}})
        config.pop("scheduler", None)
        for key, value in list(config["zero_optimization"].items()):
            if value == "auto":  # what transformers' integration fills in from the model; DeepSpeed's defaults here
                del config["zero_optimization"][key]
        step_model, optimizer, _, _ = deepspeed.initialize(
            model=model, model_parameters=[p for p in model.parameters() if p.requires_grad], config=config)
    rank = dist.get_rank()
    inputs = batch(processor, rank)
    losses = []
    for _ in range(3):
        loss = step_model(**inputs).loss
        if engine == "fsdp2":
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        else:
            step_model.backward(loss)
            step_model.step()
        losses.append(float(loss.detach()))
    if engine == "zero3":
        import deepspeed

        with deepspeed.zero.GatheredParameters(list(model.parameters())):
            final = digest(model)
    else:
        final = digest(model)
    Path(f"{out}.{rank}").write_text(json.dumps({"losses": losses, "digest": final}))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
