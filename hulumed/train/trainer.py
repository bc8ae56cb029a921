"""The training run: recipe -> model set-up (freeze / LoRA / QLoRA / checkpointing) -> transformers' Trainer.

In:  a validated ``recipe.TrainRecipe``.
Out: ``recipe.output`` holding ``checkpoint-N/`` folders during training and, at the end, the model in the
     official HF-Version layout (full / partial fine-tuning) or a peft adapter (LoRA; ``merge-lora`` or
     ``merge_lora: true`` turns it into full weights); processor files are copied into each (``output.py``).

Everything distributed is transformers' and accelerate's: launch with ``torchrun`` or ``accelerate launch``
and set ``deepspeed`` / ``fsdp`` in the recipe. What this file adds to ``Trainer`` (``HulumedTrainer``):
* per-part learning rates (vision encoder, projector, LLM), each split into decay / no-decay groups;
* the processor files in every saved folder;
* length-grouped batches from cheap length estimates (no media decoded to sort).
A batch without media still runs the vision encoder and projector (the model's own training forward adds a
blank input's features with weight zero, before the LLM), so every rank runs the same modules in the same order
and DDP, ZeRO-2/3 and FSDP see the same graph and collectives on every rank.

Resume: ``resume: auto`` continues from the newest complete ``checkpoint-N`` in the output folder (one that
has ``trainer_state.json``, written last) with its optimizer, scheduler, RNG and data position, so a killed
run rerun with the same command ends where an uninterrupted one would. A run that already finished (the output's
final ``trainer_state.json`` reached ``max_steps`` / its epochs) is left as it is when rerun: no step, no save.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer, TrainerCallback

from hulumed.train.collator import HulumedCollator
from hulumed.train.data import load_examples
from hulumed.train.dataset import ConversationDataset
from hulumed.train.labels import LabelEncoder
from hulumed.train.output import base_folder, copy_processor_files
from hulumed.train.recipe import PART_MODES, RecipeError, TrainRecipe

# LoRA targets: the linear layers of each part, as full-match regexes over module names (peft).
LORA_TARGETS = {
    "llm": r"model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)",
    "vision": r"model\.vision_encoder\.encoder\.layers\.\d+\.(self_attn\.(q|k|v|out)_proj|mlp\.fc[12])",
}
MODULES_TO_SAVE = {"projector": "mm_projector", "vision": "vision_encoder"}
#: The second generation (stock Qwen3-VL-MoE names): attention projections as modules, the fused expert weights
#: (3-D parameters) through peft's ``target_parameters``; the merger(s) are the projector.
SECOND_GENERATION_LORA_TARGETS = {
    "llm": r"model\.language_model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)",
    "vision": r"model\.visual\.blocks\.\d+\.(attn\.(qkv|proj)|mlp\.linear_fc[12])",
}
SECOND_GENERATION_NO_REDUCTION = ("use_token_compression applies to first-generation checkpoints only; the second "
                                  "generation has no inter-frame token reduction")
SECOND_GENERATION_EXPERT_PARAMETERS = ["mlp.experts.gate_up_proj", "mlp.experts.down_proj"]
SECOND_GENERATION_MODULES_TO_SAVE = {"projector": r"\.(merger|deepstack_merger_list\.\d+)$", "vision": r"\.visual$"}
_CHECKPOINT_DIR = re.compile(r"^checkpoint-(\d+)$")


def part_of(name: str) -> str:
    """Which part a parameter belongs to: ``vision``, ``projector`` or ``llm`` (peft names included)."""
    if "mm_projector" in name or "merger" in name:  # first / second generation
        return "projector"
    if "vision_encoder" in name or ".visual." in name:
        return "vision"
    return "llm"


# ---------------------------------------------------------------------------------------------- checks
def check_lora_support(recipe: TrainRecipe) -> None:
    """Fail early, before any loading, with what to install or change."""
    if not recipe.uses_lora:
        return
    try:
        import peft  # noqa: F401
    except ImportError as error:
        raise RecipeError("LoRA needs peft: pip install 'hulumed[train]'") from error
    if recipe.qlora:
        if not torch.cuda.is_available():
            raise RecipeError(
                "QLoRA (4-bit base weights) needs a CUDA GPU and bitsandbytes, and this machine has no CUDA "
                "device. Use --lora (LoRA on 16/32-bit weights) here, or run --qlora on a CUDA machine."
            )
        try:
            import bitsandbytes  # noqa: F401
        except ImportError as error:
            raise RecipeError("QLoRA needs bitsandbytes on this CUDA machine: pip install bitsandbytes") from error


def resolve_precision(recipe: TrainRecipe) -> str:
    if recipe.precision != "auto":
        return recipe.precision
    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp32"


# ---------------------------------------------------------------------------------------------- model
def load_model(recipe: TrainRecipe) -> Any:
    """The base model, in bf16 for adapter training on a GPU, 4-bit for QLoRA, fp32 otherwise.

    Loaded through the one loading door (``hulumed.loading``): same dtype names, same ``BitsAndBytesConfig``
    (plus double quantization for QLoRA). Unquantized models stay on the CPU; the Trainer places them.
    """
    from hulumed.errors import CheckpointError
    from hulumed.loading import load_model as load_checkpoint_model

    precision = resolve_precision(recipe)
    device = None
    if recipe.qlora:
        dtype, quantization = torch.bfloat16, "4bit"
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    elif recipe.uses_lora and precision in ("bf16", "fp16"):
        dtype, quantization = (torch.bfloat16 if precision == "bf16" else torch.float16), None
    else:
        dtype, quantization = torch.float32, None  # master weights; bf16 / fp16 compute comes from autocast
    overrides = {}
    if recipe.use_token_compression is not None:  # built into the config when it is read, saved with the model
        from hulumed.hub import resolve_model
        from hulumed.loading import checkpoint_family

        if checkpoint_family(resolve_model(recipe.model)).generation == 2:
            raise RecipeError(SECOND_GENERATION_NO_REDUCTION)
        overrides["use_token_compression"] = recipe.use_token_compression
    try:
        model, _ = load_checkpoint_model(
            recipe.model, device=device, dtype=dtype, attn_implementation=recipe.attn_implementation,
            quantization=quantization, double_quant=True, place=False, config_overrides=overrides,
        )
    except CheckpointError as error:  # the recipe's model is not a checkpoint this package runs
        raise RecipeError(str(error)) from error
    if Path(str(recipe.model)).is_dir():
        model.name_or_path = str(Path(str(recipe.model)).resolve())  # peft records it as the adapter's base
    return model


def is_second_generation(model: Any) -> bool:
    from hulumed.model.family import family_of

    return family_of(model.config.to_dict()).generation == 2


def _has_experts(model: Any) -> bool:
    return any(name.endswith(SECOND_GENERATION_EXPERT_PARAMETERS[0]) for name, _ in model.named_parameters())


def prepare_model(model: Any, recipe: TrainRecipe) -> Any:
    """Freeze / unfreeze the parts, switch on checkpointing, wrap with peft for LoRA (token reduction is set when
    the model is loaded, ``load_model``; nothing is written onto the model here)."""
    second = is_second_generation(model)
    if recipe.use_token_compression is not None:
        if second:
            raise RecipeError(SECOND_GENERATION_NO_REDUCTION)
        if bool(model.config.use_token_compression) != recipe.use_token_compression:
            raise RecipeError(f"the model was loaded with use_token_compression={model.config.use_token_compression}"
                              f" but the recipe asks for {recipe.use_token_compression}: load it with the recipe's "
                              "value (train.trainer.load_model does)")
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(getattr(recipe, part_of(name)) == "full")
    if recipe.qlora:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=recipe.gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    elif recipe.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if not recipe.uses_lora:
        return model

    from peft import LoraConfig, get_peft_model

    table = SECOND_GENERATION_LORA_TARGETS if second else LORA_TARGETS
    targets = [table[part] for part in ("llm", "vision") if getattr(recipe, part) == "lora"]
    if second:
        saved = [name.split("model.", 1)[-1] for name, _ in model.named_modules() for p in ("projector", "vision")
                 if getattr(recipe, p) == "full" and re.search(SECOND_GENERATION_MODULES_TO_SAVE[p], name)]
        experts = SECOND_GENERATION_EXPERT_PARAMETERS if recipe.llm == "lora" and _has_experts(model) else None
        if experts and recipe.lora_dropout:
            import warnings

            warnings.warn("the expert weights get no LoRA: peft adapts fused expert parameters only with "
                          "lora_dropout 0 (set --lora-dropout 0 / lora_dropout: 0 to adapt them too); attention "
                          "projections are adapted", stacklevel=2)
            experts = None
    else:
        saved = [MODULES_TO_SAVE[p] for p in ("projector", "vision") if getattr(recipe, p) == "full"]
        experts = None
    config = LoraConfig(
        r=recipe.lora_r,
        lora_alpha=recipe.lora_alpha,
        lora_dropout=recipe.lora_dropout,
        target_modules="|".join(f"(?:{t})" for t in targets),
        target_parameters=experts,
        modules_to_save=saved or None,
        bias="none",
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, config)
    for parameter in model.parameters():  # trainable weights stay fp32 even on a bf16 base (AdamW states)
        if parameter.requires_grad and parameter.dtype != torch.float32:
            parameter.data = parameter.data.float()
    return model


def trainable_summary(model: Any) -> dict[str, tuple[int, int]]:
    """(trainable, total) parameter counts per part."""
    counts = {part: [0, 0] for part in PART_MODES}
    for name, parameter in model.named_parameters():
        if ".original_module." in name:
            continue  # peft's frozen copy beside a modules_to_save module: the same weights, counted once
        entry = counts[part_of(name)]
        entry[1] += parameter.numel()
        entry[0] += parameter.numel() if parameter.requires_grad else 0
    return {part: (a, b) for part, (a, b) in counts.items()}


# ---------------------------------------------------------------------------------------------- trainer
class HulumedTrainer(Trainer):
    """``Trainer`` with per-part learning rates, processor files in saved folders and length grouping."""

    def __init__(self, *args: Any, part_lrs: dict[str, float], processor_source: str | os.PathLike, **kwargs: Any):
        model = kwargs.get("model")
        self.saved_use_cache = getattr(getattr(model, "config", None), "use_cache", True)
        super().__init__(*args, **kwargs)  # sets config.use_cache = False for training
        self.part_lrs = part_lrs
        self.processor_source = processor_source

    def create_optimizer(self, model: Any = None) -> torch.optim.Optimizer:
        if self.optimizer is not None:
            return self.optimizer
        model = self.model if model is None else model
        decay = set(self.get_decay_parameter_names(model))
        groups = []
        for part in PART_MODES:
            for decays in (True, False):
                params = [
                    p
                    for n, p in model.named_parameters()
                    if p.requires_grad and part_of(n) == part and (n in decay) == decays
                ]
                if params:
                    groups.append({
                        "params": params,
                        "lr": self.part_lrs[part],
                        "weight_decay": self.args.weight_decay if decays else 0.0,
                        "name": f"{part}{'' if decays else '/no_decay'}",
                    })
        optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, model)
        for key in ("params", "model", "optimizer_dict"):
            optimizer_kwargs.pop(key, None)
        self.optimizer = optimizer_cls(groups, **optimizer_kwargs)
        return self.optimizer

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        config = getattr(self.accelerator.unwrap_model(self.model), "config", None)
        training_value = getattr(config, "use_cache", None)
        if config is not None:
            config.use_cache = self.saved_use_cache  # config.json keeps the base model's value
        try:
            super()._save(output_dir, state_dict)
        finally:
            if config is not None:
                config.use_cache = training_value
        if self.args.should_save:
            copy_processor_files(self.processor_source, output_dir or self.args.output_dir)

    def _get_train_sampler(self, train_dataset: Any = None) -> Any:
        dataset = self.train_dataset if train_dataset is None else train_dataset
        if self.args.train_sampling_strategy == "group_by_length" and isinstance(dataset, ConversationDataset):
            from transformers.trainer_pt_utils import LengthGroupedSampler

            size = self.args.train_batch_size * self.args.gradient_accumulation_steps
            return LengthGroupedSampler(size, lengths=dataset.estimated_lengths())
        return super()._get_train_sampler(train_dataset)


def launched_processes() -> int:
    """How many processes this run was launched with (torchrun / accelerate launch set WORLD_SIZE)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def check_engine_support(recipe: TrainRecipe) -> None:
    """Refuse, before any weight loads, what transformers' Trainer cannot run on this machine."""
    if torch.cuda.is_available():
        return
    if recipe.fsdp:
        raise RecipeError(
            "FSDP through transformers' Trainer needs GPUs (it enables FSDP only on accelerator devices), and this "
            "machine has no CUDA device. Drop fsdp here (plain DDP: torchrun --nproc_per_node N), or run on GPUs."
        )
    if recipe.deepspeed:
        raise RecipeError(
            "DeepSpeed through transformers' Trainer needs GPUs (accelerate does not drive the DeepSpeed engine on "
            "a CPU-only host), and this machine has no CUDA device. Drop deepspeed here (plain DDP: torchrun "
            "--nproc_per_node N), or run on GPUs."
        )


def training_arguments(recipe: TrainRecipe) -> Any:
    """transformers ``TrainingArguments`` for the recipe (built before the model: ZeRO-3 needs that).

    On a machine without CUDA launched with several processes, ``use_cpu`` makes transformers join them in one
    gloo process group (real DDP); without it each process trains alone on the whole data set."""
    from transformers import TrainingArguments

    precision = resolve_precision(recipe)
    warmup = recipe.warmup if recipe.warmup < 1 else int(recipe.warmup)
    return TrainingArguments(
        output_dir=recipe.output,
        max_steps=recipe.max_steps,
        num_train_epochs=recipe.epochs,
        per_device_train_batch_size=recipe.batch_size,
        gradient_accumulation_steps=recipe.grad_accum,
        learning_rate=recipe.base_lr,
        lr_scheduler_type=recipe.lr_scheduler,
        warmup_steps=warmup,
        weight_decay=recipe.weight_decay,
        max_grad_norm=recipe.max_grad_norm,
        seed=recipe.seed,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        logging_steps=recipe.logging_steps,
        save_strategy="steps",
        save_steps=recipe.save_steps,
        save_total_limit=recipe.save_total_limit,
        remove_unused_columns=False,  # the collator's media keys are not in peft's forward signature
        report_to=recipe.report_to,
        dataloader_num_workers=recipe.workers,
        train_sampling_strategy=(
            "group_by_length" if recipe.group_by_length else "random" if recipe.shuffle else "sequential"
        ),
        deepspeed=recipe.deepspeed,
        fsdp=recipe.fsdp or "",
        fsdp_config=recipe.fsdp_config,
        dataloader_pin_memory=torch.cuda.is_available(),
        disable_tqdm=True,
        use_cpu=not torch.cuda.is_available() and launched_processes() > 1,
    )


def last_checkpoint(output: str | os.PathLike) -> str | None:
    """The newest complete ``checkpoint-N`` folder (with ``trainer_state.json``) of an output folder."""
    folder = Path(output)
    if not folder.is_dir():
        return None
    found = [
        (int(match.group(1)), path)
        for path in folder.iterdir()
        if (match := _CHECKPOINT_DIR.match(path.name)) and (path / "trainer_state.json").is_file()
    ]
    return str(max(found)[1]) if found else None


def resolve_resume(recipe: TrainRecipe) -> str | None:
    if recipe.resume == "never":
        return None
    if recipe.resume == "auto":
        return last_checkpoint(recipe.output)
    if not (Path(recipe.resume) / "trainer_state.json").is_file():
        raise RecipeError(f"resume: {recipe.resume} is not a complete checkpoint folder (no trainer_state.json)")
    return recipe.resume


def finished_state(recipe: TrainRecipe) -> dict[str, Any] | None:
    """The final ``trainer_state.json`` of the output folder when that run already reached the recipe's end
    (``max_steps``, or the planned steps of the same number of epochs), else None."""
    path = Path(recipe.output) / "trainer_state.json"  # written by save_state() after the last step
    if not path.is_file():
        return None
    try:
        state = json.loads(path.read_text())
        step, planned = int(state["global_step"]), int(state.get("max_steps") or 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if recipe.max_steps > 0:
        return state if step >= recipe.max_steps else None
    same_epochs = float(state.get("num_train_epochs") or 0) == float(math.ceil(recipe.epochs))
    return state if planned > 0 and step >= planned and same_epochs else None


@dataclass
class TrainResult:
    """What a finished run reports."""

    output: str
    global_step: int
    losses: list[float]  # every logged training loss, in order
    seconds_per_step: float
    resumed_from: str | None
    trainable: dict[str, tuple[int, int]]
    trainer: Any = field(default=None, repr=False)  # the HulumedTrainer, model included (for callers and tests)


def build_trainer(recipe: TrainRecipe, callbacks: Sequence[TrainerCallback] = (), model: Any = None) -> Any:
    """Everything up to ``trainer.train()``: arguments, processor, data, model; returns the trainer."""
    recipe.validate()
    check_lora_support(recipe)
    check_engine_support(recipe)
    from transformers import AutoProcessor, set_seed

    import hulumed  # noqa: F401  (registers the Auto classes)
    from hulumed.hub import resolve_model
    from hulumed.loading import checkpoint_family, load_processor

    args = training_arguments(recipe)
    examples = load_examples(recipe.data, recipe.media_root)
    pad_multiple = 8 if torch.cuda.is_available() else None
    first_generation = checkpoint_family(resolve_model(recipe.model)).generation == 1
    if not first_generation:
        from hulumed.train.qwen3_vl_labels import Qwen3VLCollator, Qwen3VLLabelEncoder

        processor = load_processor(resolve_model(recipe.model))
        dataset = ConversationDataset(examples, Qwen3VLLabelEncoder(processor, recipe.max_length))
        pad = processor.tokenizer.pad_token_id
        collator: Any = Qwen3VLCollator(pad if pad is not None else processor.tokenizer.eos_token_id, pad_multiple)
    else:
        processor = AutoProcessor.from_pretrained(recipe.model)
        dataset = ConversationDataset(examples, LabelEncoder(processor, recipe.add_system_prompt, recipe.max_length))
        collator = HulumedCollator(processor.pad_token_id, pad_multiple)
    set_seed(recipe.seed)  # LoRA weights are initialised here, before the Trainer seeds its own run
    model = load_model(recipe) if model is None else model
    if first_generation:  # token reduction decided while encoding, as the engine does (dataset.py)
        dataset.reduction = model.processing_time_reduction()
    model = prepare_model(model, recipe)
    return HulumedTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=collator,
        callbacks=list(callbacks),
        part_lrs={part: recipe.part_lr(part) for part in PART_MODES},
        processor_source=base_folder(recipe.model),
    )


def run_training(recipe: TrainRecipe, callbacks: Sequence[TrainerCallback] = (), model: Any = None) -> TrainResult:
    """Train (resuming when asked), save the final model / adapter, optionally merge; returns a summary."""
    trainer = build_trainer(recipe, callbacks, model)
    resume = resolve_resume(recipe)
    finished = finished_state(recipe) if resume is not None else None
    if finished is not None:  # a rerun of a finished run leaves it as it is: no step, no save
        return TrainResult(
            output=str(recipe.output),
            global_step=int(finished["global_step"]),
            losses=[entry["loss"] for entry in finished.get("log_history", []) if "loss" in entry],
            seconds_per_step=math.nan,
            resumed_from=resume,
            trainable=trainable_summary(trainer.model),
            trainer=trainer,
        )
    start = time.perf_counter()
    start_step = 0
    if resume is not None:
        start_step = json.loads((Path(resume) / "trainer_state.json").read_text())["global_step"]
    trainer.train(resume_from_checkpoint=resume)
    elapsed = time.perf_counter() - start
    trainer.save_model(recipe.output)
    trainer.save_state()
    if recipe.merge_lora and recipe.uses_lora and trainer.args.should_save:  # main process only
        from hulumed.train.merge import merge_lora

        merge_lora(recipe.output, os.path.join(recipe.output, "merged"), base=recipe.model)
    steps = trainer.state.global_step - start_step
    return TrainResult(
        output=str(recipe.output),
        global_step=trainer.state.global_step,
        losses=[entry["loss"] for entry in trainer.state.log_history if "loss" in entry],
        seconds_per_step=elapsed / steps if steps > 0 else math.nan,
        resumed_from=resume,
        trainable=trainable_summary(trainer.model),
        trainer=trainer,
    )
