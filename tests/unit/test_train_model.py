"""Training on the tiny checkpoints (CPU): loss goes down, save -> load is exact, LoRA merges exactly,
parts freeze and get their own learning rates, token reduction works in training, QLoRA fails clearly."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from hulumed.train.recipe import build_recipe
from hulumed.train.trainer import build_trainer, part_of, run_training
from tests.conftest import GOLDEN
from tests.unit.test_train_data import RECORDS, write_dataset

STATIC_VIDEO = {"conversation": [
    {"role": "user", "content": [{"type": "video", "video": {"video_path": "static", "fps": 3, "max_frames": 4}},
                                 {"type": "text", "text": "Does anything move?"}]},
    {"role": "assistant", "content": "Nothing moves."},
]}


def _dataset(folder):
    """RECORDS (text, image, volume) plus a video of four identical frames (token reduction removes most)."""
    path = write_dataset(folder, [*RECORDS, STATIC_VIDEO])
    (folder / "static").mkdir()
    for index in range(4):
        shutil.copyfile(GOLDEN / "inputs" / "image_b.png", folder / "static" / f"frame_{index:03d}.png")
    return path


def _recipe(tmp_path, data, **overrides):
    values = {"model": str(GOLDEN / "tiny-qwen2"), "data": [str(data)], "output": str(tmp_path / "out"), "lr": 1e-3,
              "max_steps": 24, "batch_size": 2, "logging_steps": 1, "save_steps": 1000, "workers": 0, "warmup": 0.0,
              "precision": "fp32", "resume": "never"}
    values.update(overrides)
    return build_recipe(**values)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """A full fine-tune of LLM + projector with token reduction on: 24 steps on 5 records."""
    tmp_path = tmp_path_factory.mktemp("full")
    data = _dataset(tmp_path / "data")
    return run_training(_recipe(tmp_path, data, use_token_compression=True)), data


def _logits(model, batch):
    model.eval()
    with torch.no_grad():
        return model(**{k: v for k, v in batch.items() if k != "labels"}).logits


def _batch(trainer, indices=(1, 2, 4), reduced=True):
    """A collated batch; ``reduced=False``: the processor's full ids (every visual token; the model-side path)."""
    dataset = trainer.train_dataset
    if not reduced:
        from hulumed.train.dataset import ConversationDataset

        dataset = ConversationDataset(dataset.examples, dataset.encoder)
    return trainer.data_collator([dataset[i] for i in indices])


def test_loss_decreases_on_text_image_volume_and_video(full_run):
    result, _ = full_run
    losses = result.losses
    assert len(losses) == 24 and all(torch.isfinite(torch.tensor(losses)))
    first, last = sum(losses[:4]) / 4, sum(losses[-4:]) / 4
    assert last < 0.5 * first, losses
    assert result.trainable["vision"][0] == 0 and result.trainable["projector"][0] > 0


def test_save_then_load_gives_identical_logits(full_run):
    from transformers import AutoModelForCausalLM, AutoProcessor

    import hulumed  # noqa: F401
    from hulumed.model.checkpoint import tensor_names

    result, _ = full_run
    out = result.output
    loaded = AutoModelForCausalLM.from_pretrained(out)
    assert loaded.config.use_token_compression is True  # trained with reduction: saved with it
    assert tensor_names(out) == tensor_names(GOLDEN / "tiny-qwen2")  # official HF-Version names
    config = json.loads((GOLDEN / "tiny-qwen2" / "config.json").read_text())
    saved = json.loads((Path(out) / "config.json").read_text())
    assert saved["use_cache"] is True and saved["rope_theta"] == config["rope_theta"]
    assert AutoProcessor.from_pretrained(out).image_token_id == config["image_token_index"]
    batch = _batch(result.trainer)
    assert torch.equal(_logits(loaded, batch), _logits(result.trainer.model, batch))


def _prepare(model, batch):
    return model.prepare_multimodal_inputs(
        batch["input_ids"], batch["attention_mask"], batch["labels"], batch.get("position_ids"),
        batch["pixel_values"], batch["grid_sizes"], batch["merge_sizes"], batch["modals"],
    )


def test_token_reduction_is_decided_while_encoding_and_equals_the_model_side_path(full_run):
    """Training rows hold only the kept visual tokens (+ ``visual_keep``), as the engine's do; the reference is
    the model-side path on the processor's full ids (``_drop_positions``): the same supervised labels in order,
    the same loss, and a reduced row gives in a batch the logits it gives alone."""
    result, _ = full_run
    model = result.trainer.model.eval()
    assert model.config.use_token_compression
    alone = _batch(result.trainer, (4,))  # the static video: most of its tokens are reduced away
    alone_full = _batch(result.trainer, (4,), reduced=False)
    assert "visual_keep" in alone and "visual_keep" not in alone_full
    assert alone["labels"].shape[1] < alone_full["labels"].shape[1] - 60
    assert _prepare(model, alone_full)["labels"].shape[1] == alone["labels"].shape[1]  # the model drops as many
    batch, batch_full = _batch(result.trainer, (4, 0)), _batch(result.trainer, (4, 0), reduced=False)  # + text
    for row in range(2):
        before = batch_full["labels"][row][batch_full["labels"][row] != -100]
        after = batch["labels"][row][batch["labels"][row] != -100]
        assert torch.equal(before, after)  # the same supervised tokens, in order
    with torch.no_grad():
        loss = model(**batch).loss
        reference = model(**batch_full).loss  # the model-side path
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
        row_logits = model(**{k: v for k, v in alone.items() if k != "labels"}).logits
    torch.testing.assert_close(loss, reference)
    labels = batch["labels"][:, 1:]
    manual = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), labels.flatten(), ignore_index=-100)
    torch.testing.assert_close(loss, manual)
    n = row_logits.shape[1]  # the reduced row in the batch gives the logits it gives alone
    torch.testing.assert_close(logits[0, :n], row_logits[0], atol=1e-5, rtol=1e-5)


def test_freeze_parts_and_per_part_learning_rates(tmp_path):
    data = write_dataset(tmp_path / "data")
    recipe = _recipe(tmp_path, data, max_steps=2, vision="full", projector="frozen", llm="full",
                     vision_lr=1e-4, llm_lr=3e-3, weight_decay=0.1)
    trainer = build_trainer(recipe)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    optimizer = trainer.create_optimizer()
    rates = {g["name"]: (g["lr"], g["weight_decay"]) for g in optimizer.param_groups}
    assert rates == {"vision": (1e-4, 0.1), "vision/no_decay": (1e-4, 0.0),
                     "llm": (3e-3, 0.1), "llm/no_decay": (3e-3, 0.0)}
    trainer.train()
    for name, parameter in trainer.model.named_parameters():
        changed = not torch.equal(parameter, before[name])
        if part_of(name) == "projector":
            assert not changed and not parameter.requires_grad, name
    assert any(not torch.equal(p, before[n]) for n, p in trainer.model.named_parameters() if part_of(n) == "vision")


def test_lora_merged_model_equals_adapter_model(tmp_path):
    from transformers import AutoModelForCausalLM

    import hulumed  # noqa: F401
    from hulumed.cli import main

    data = write_dataset(tmp_path / "data")
    recipe = _recipe(tmp_path, data, model=str(GOLDEN / "tiny-qwen3"), llm="lora", vision="lora", projector="full",
                     lora_r=4, lora_alpha=8, lr=1e-2, max_steps=4, save_steps=2)
    result = run_training(recipe)
    adapter = result.trainer.model
    lora_b = [p for n, p in adapter.named_parameters() if "lora_B" in n]
    assert lora_b and all(p.abs().sum() > 0 for p in lora_b)  # the adapters moved: the check is not vacuous
    assert any("vision_encoder" in n for n, _ in adapter.named_parameters() if "lora_B" in n)
    assert (tmp_path / "out" / "adapter_config.json").is_file() and (tmp_path / "out" / "chat_template.json").is_file()
    assert main(["merge-lora", str(tmp_path / "out"), "--output", str(tmp_path / "merged")]) == 0
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    base = AutoModelForCausalLM.from_pretrained(GOLDEN / "tiny-qwen3")
    batch = _batch(result.trainer, (1, 2, 3))
    expected = _logits(adapter, batch)
    torch.testing.assert_close(_logits(merged, batch), expected, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(_logits(base, batch), expected, atol=1e-3)


def test_length_grouping_uses_estimates(tmp_path):
    from transformers.trainer_pt_utils import LengthGroupedSampler

    data = write_dataset(tmp_path / "data")
    trainer = build_trainer(_recipe(tmp_path, data, group_by_length=True))
    sampler = trainer._get_train_sampler()
    assert isinstance(sampler, LengthGroupedSampler)
    assert sampler.lengths == trainer.train_dataset.estimated_lengths() and len(sampler.lengths) == 4


def test_a_text_only_training_forward_runs_the_vision_encoder_with_zero_weight():
    """Every rank runs the vision encoder and projector each step: in training, a batch without media adds a blank
    image's features with weight zero, so vision weights get (zero) gradients, and the loss and the LLM's gradients
    are bit-identical to the forward without that pass."""
    from hulumed.model.modeling import HulumedQwen2ForCausalLM

    torch.manual_seed(0)
    model = HulumedQwen2ForCausalLM.from_pretrained(GOLDEN / "tiny-qwen2").train()
    ids = torch.randint(0, 100, (2, 12))

    def step(**inputs):
        model.zero_grad(set_to_none=True)
        loss = model(labels=ids, **inputs).loss
        loss.backward()
        return loss.detach(), {n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()}

    with_pass, grads = step(input_ids=ids)
    without, plain = step(inputs_embeds=model.model.embed_tokens(ids))  # embeddings given: no vision pass
    assert torch.equal(with_pass, without)
    for name, grad in grads.items():
        if part_of(name) == "llm":
            assert torch.equal(grad, plain[name]), name
        else:
            assert grad is not None and not grad.any(), name  # reached, with exactly zero gradient
            assert plain[name] is None
    model.eval()
    calls = []
    hook = model.model.vision_encoder.register_forward_hook(lambda *args: calls.append(1))
    with torch.no_grad():
        model(input_ids=ids)
    hook.remove()
    assert calls == []  # inference is untouched


def test_lora_defaults_to_a_lora_learning_rate_and_counts_the_projector_once(tmp_path):
    """`--lora` without `--lr` trains at 2e-4 (2e-5 barely moves adapters); an explicit lr wins; a fully trained
    projector beside LoRA is counted once (peft keeps a frozen original beside its trainable copy)."""
    from hulumed.train.recipe import DEFAULT_FULL_LR, DEFAULT_LORA_LR

    data = write_dataset(tmp_path / "data")
    values = {"model": str(GOLDEN / "tiny-qwen2"), "data": [str(data)], "output": str(tmp_path / "out")}
    assert build_recipe(**values).base_lr == DEFAULT_FULL_LR == 2e-5
    assert build_recipe(**values, llm="lora").part_lr("llm") == DEFAULT_LORA_LR == 2e-4
    assert build_recipe(**values, llm="lora", lr=5e-5).part_lr("projector") == 5e-5
    trainer = build_trainer(_recipe(tmp_path, data, llm="lora", projector="full", lr=None))
    assert trainer.args.learning_rate == DEFAULT_LORA_LR
    from hulumed.train.trainer import trainable_summary

    trained, total = trainable_summary(trainer.model)["projector"]
    from safetensors.torch import load_file

    weights = load_file(str(GOLDEN / "tiny-qwen2" / "model.safetensors"))
    projector = sum(t.numel() for n, t in weights.items() if "mm_projector" in n)
    assert trained == total == projector


def test_a_reporter_that_is_not_installed_is_refused_before_loading(tmp_path):
    import importlib.util

    from hulumed.errors import RecipeError

    if importlib.util.find_spec("tensorboard") is not None:
        pytest.skip("tensorboard is installed")
    data = write_dataset(tmp_path / "data")
    with pytest.raises(RecipeError, match="report_to: tensorboard needs the tensorboard package"):
        build_trainer(_recipe(tmp_path, data, report_to="tensorboard"))


def test_shipped_recipes_and_fsdp_configs_load_and_name_no_wrap_class():
    """Each checkpoint has one decoder layer class: the FSDP configs leave wrapping to the model's own
    `_no_split_modules` (a fixed list naming both families fails for every model)."""
    import yaml

    from hulumed.model.modeling import HulumedQwen2ForCausalLM, HulumedQwen3ForCausalLM

    configs = Path(__file__).resolve().parents[2] / "configs" / "train"
    assert "transformer_layer_cls_to_wrap" not in json.loads((configs / "fsdp" / "fsdp.json").read_text())
    assert "cls_to_wrap" not in (configs / "accelerate" / "fsdp.yaml").read_text()
    assert HulumedQwen2ForCausalLM._no_split_modules[0] == "Qwen2DecoderLayer"
    assert HulumedQwen3ForCausalLM._no_split_modules[0] == "Qwen3DecoderLayer"
    for path in configs.glob("*.yaml"):
        values = yaml.safe_load(path.read_text())
        assert values.get("report_to", "none") == "none", path.name  # no extra needed to start a shipped recipe


@pytest.mark.skipif(torch.cuda.is_available(), reason="the error is for machines without CUDA")
def test_qlora_without_cuda_fails_with_a_clear_message(tmp_path, capsys):
    from hulumed.cli import main

    data = write_dataset(tmp_path / "data")
    code = main(["train", "--model", str(GOLDEN / "tiny-qwen2"), "--data", str(data), "--output",
                 str(tmp_path / "out"), "--max-steps", "1", "--qlora"])
    assert code == 1
    error = capsys.readouterr().err
    assert "QLoRA" in error and "CUDA" in error and "--lora" in error
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("llm", ["full", "lora"])
def test_gradient_checkpointing_gives_the_same_gradients(tmp_path, llm):
    data = write_dataset(tmp_path / "data")
    grads = []
    for checkpointing in (False, True):
        trainer = build_trainer(_recipe(tmp_path, data, llm=llm, vision="full" if llm == "full" else "lora",
                                        gradient_checkpointing=checkpointing, lora_r=4, lora_dropout=0.0))
        model = trainer.model.train()
        if llm == "lora":  # lora_B starts at zero: give the adapters a value so their inputs get gradients
            torch.manual_seed(0)
            for name, parameter in model.named_parameters():
                if "lora_B" in name:
                    parameter.data.normal_(0, 0.02)
        model.config.use_cache = False
        batch = _batch(trainer, (1, 2, 3))
        model(**batch).loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    plain, checkpointed = grads
    assert plain.keys() == checkpointed.keys() and any("vision_encoder" in n for n in plain)
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], atol=1e-6, rtol=1e-4)
