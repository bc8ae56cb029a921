"""Training recipes: one commented dataclass of runtime knobs, read from YAML and overridden from the CLI.

In:  ``configs/train/*.yaml`` (keys = the field names below) and/or ``hulumed train --field-name value``.
Out: a validated ``TrainRecipe``; ``trainer.run_training`` turns it into transformers ``TrainingArguments``,
     the freeze / LoRA set-up and per-part learning rates.

The CLI options are generated from the fields (``--max-steps`` sets ``max_steps``; booleans get
``--x / --no-x``), so the YAML keys, the options and ``hulumed train --help`` cannot drift apart.
Precedence: dataclass default < YAML < command line. Relative paths are relative to the working directory.

Model parts and what happens to each (``vision``, ``projector``, ``llm``):
  ``frozen`` no gradient;  ``full`` every weight trains;  ``lora`` low-rank adapters (peft) on its linear layers.
With any part in ``lora`` mode the model is wrapped by peft and ``full`` parts become peft
``modules_to_save`` (so they are saved with, and merged from, the adapter).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import types
import typing
from dataclasses import asdict, dataclass, fields
from typing import Any

from hulumed.errors import RecipeError
from hulumed.options import option

PART_MODES = {"vision": ("frozen", "full", "lora"), "projector": ("frozen", "full"), "llm": ("frozen", "full", "lora")}


DEFAULT_FULL_LR = 2e-5  # full fine-tuning
DEFAULT_LORA_LR = 2e-4  # LoRA adapters on the LLM
# report_to values -> the package transformers needs for them (checked before any weight loads)
_REPORTERS = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow", "comet_ml": "comet_ml"}


@dataclass
class TrainRecipe:
    """Everything a training run needs; the defaults are a sensible full fine-tune of LLM + projector."""

    # -- what to train on, and where to write
    model: str | None = option(None, "base checkpoint: a folder in the official layout or a hub id")
    data: list[str] = option([], "training data: JSON / JSONL file(s) (docs/training.md)")  # noqa: RUF009
    media_root: str | None = option(None, "folder that media paths are relative to (default: each data file's folder)")
    output: str | None = option(
        None, "output folder: checkpoint-N/ folders during training, the final model at the end")

    # -- which parts train, and how fast
    llm: str = option("full", "language model: frozen | full | lora", choices=PART_MODES["llm"])
    projector: str = option("full", "mm_projector: frozen | full", choices=PART_MODES["projector"])
    vision: str = option("frozen", "vision encoder: frozen | full | lora", choices=PART_MODES["vision"])
    lr: float | None = option(None, "peak learning rate (every part without its own); default 2e-5 for full "
                                "fine-tuning, 2e-4 when the LLM trains LoRA adapters")
    llm_lr: float | None = option(None, "learning rate of the language model (or its LoRA adapters)")
    projector_lr: float | None = option(None, "learning rate of the projector")
    vision_lr: float | None = option(None, "learning rate of the vision encoder (or its LoRA adapters)")

    # -- LoRA / QLoRA (peft)
    lora_r: int = option(64, "LoRA rank")
    lora_alpha: int = option(128, "LoRA alpha (scale = alpha / r)")
    lora_dropout: float = option(0.05, "dropout on the LoRA input")
    qlora: bool = option(False, "load the LLM in 4-bit NF4 (bitsandbytes, CUDA only) and train LoRA adapters on it")
    merge_lora: bool = option(False, "after a LoRA run also write merged full weights to OUTPUT/merged")

    # -- data
    max_length: int | None = option(8192, "longest sequence in tokens (text beyond it is cut; media never are)")
    add_system_prompt: bool = option(True, "render the checkpoint's default system prompt, as at inference")
    use_token_compression: bool | None = option(None, "inter-frame token reduction (default: the checkpoint's setting)")
    group_by_length: bool = option(False, "batch examples of similar estimated length together")
    shuffle: bool = option(True, "shuffle the examples each epoch (false: file order, e.g. a curriculum)")

    # -- schedule
    max_steps: int = option(-1, "optimizer steps (-1: run `epochs` epochs)")
    epochs: float = option(1.0, "epochs when max_steps is -1")
    batch_size: int = option(1, "examples per device per micro-batch")
    grad_accum: int = option(1, "micro-batches per optimizer step")
    warmup: float = option(0.03, "warm-up: a fraction of the steps (< 1) or a number of steps")
    lr_scheduler: str = option("cosine", "transformers scheduler name (cosine, linear, constant, ...)")
    weight_decay: float = option(0.0, "AdamW weight decay (never on biases and norms)")
    max_grad_norm: float = option(1.0, "gradient clipping")
    seed: int = option(42, "seed of weights init, data order and dropout")

    # -- memory, precision, distribution
    gradient_checkpointing: bool = option(False, "recompute activations in the backward pass (LLM and vision layers)")
    precision: str = option("auto", "auto (bf16 on a bf16 GPU, else fp32) | bf16 | fp16 | fp32",
                        choices=("auto", "bf16", "fp16", "fp32"))
    attn_implementation: str = option("sdpa", "sdpa | eager | flash_attention_2")
    deepspeed: str | None = option(None, "DeepSpeed JSON config (e.g. configs/train/deepspeed/zero3.json)")
    fsdp: str | None = option(None, "FSDP mode for transformers, e.g. 'full_shard auto_wrap'")
    fsdp_config: str | None = option(None, "FSDP JSON config (e.g. configs/train/fsdp/fsdp.json)")
    workers: int = option(2, "data-loader worker processes (media are decoded there)")

    # -- checkpoints and logs
    save_steps: int = option(500, "write OUTPUT/checkpoint-N every this many steps")
    save_total_limit: int | None = option(2, "keep only the newest this many checkpoints (none: keep all)")
    logging_steps: int = option(10, "log loss / learning rate every this many steps")
    resume: str = option("auto", "auto (continue from OUTPUT's last checkpoint if any) | never | a checkpoint folder")
    report_to: str = option("none", "where transformers reports metrics: none | tensorboard | wandb | ...")

    # ------------------------------------------------------------------------------------------------
    @property
    def base_lr(self) -> float:
        """`lr`, or its default: LoRA adapters need about ten times the full fine-tuning rate to move (public LoRA
        recipes for Hulu-Med-4B and LLaVA-style models use 1e-4 to 2e-4)."""
        if self.lr is not None:
            return float(self.lr)
        return DEFAULT_LORA_LR if self.llm == "lora" else DEFAULT_FULL_LR

    def part_lr(self, part: str) -> float:
        value = getattr(self, f"{part}_lr")
        return self.base_lr if value is None else float(value)

    @property
    def uses_lora(self) -> bool:
        return self.qlora or "lora" in (self.llm, self.vision)

    def validate(self) -> TrainRecipe:
        """Raise ``RecipeError`` for missing or contradictory settings; returns self."""
        for name in ("model", "output"):
            if not getattr(self, name):
                raise RecipeError(f"no {name}: pass --{name} or set '{name}' in the recipe")
        if not self.data:
            raise RecipeError("no training data: pass --data FILE or set 'data' in the recipe")
        for part, modes in PART_MODES.items():
            if getattr(self, part) not in modes:
                raise RecipeError(f"{part}: {getattr(self, part)!r} is not one of {', '.join(modes)}")
        if self.qlora and self.llm != "lora":
            raise RecipeError("qlora trains LoRA adapters on a 4-bit LLM: set llm: lora (or pass --lora)")
        if self.uses_lora and self.llm == "full":
            raise RecipeError("a fully trained LLM cannot be combined with LoRA on another part; use llm: lora")
        if all(getattr(self, part) == "frozen" for part in PART_MODES):
            raise RecipeError("every part is frozen: nothing would train")
        if self.max_steps == 0 or (self.max_steps < 0 and self.epochs <= 0):
            raise RecipeError("set max_steps > 0 or epochs > 0")
        if self.deepspeed and self.fsdp:
            raise RecipeError("choose DeepSpeed or FSDP, not both")
        for reporter in (r.strip() for r in self.report_to.split(",")):
            module = _REPORTERS.get(reporter)
            if module is not None and importlib.util.find_spec(module) is None:
                raise RecipeError(f"report_to: {reporter} needs the {module} package: pip install {module}, or set "
                                  "report_to: none")
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------------------------- YAML + CLI
MAX_RECIPE_BYTES = 256 * 1024


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """The keys of a recipe file, checked against the fields (a typo is an error, not a silent default)."""
    import yaml  # lazy: the train extra

    try:
        if os.path.getsize(path) > MAX_RECIPE_BYTES:
            raise RecipeError(f"recipe {path} is over {MAX_RECIPE_BYTES // 1024} KiB; a recipe is a page of options")
        with open(path, encoding="utf-8") as handle:
            values = yaml.load(handle, Loader=_recipe_loader()) or {}
    except UnicodeDecodeError as error:
        raise RecipeError(f"recipe {path} is not UTF-8 (byte {error.start})") from None
    except OSError as error:
        raise RecipeError(f"cannot read recipe {path}: {error.strerror or error}") from error
    except yaml.YAMLError as error:
        raise RecipeError(f"recipe {path} is not valid YAML: {error}") from error
    if not isinstance(values, dict):
        raise RecipeError(f"recipe {path} must be a mapping of option: value")
    known = {f.name for f in fields(TrainRecipe)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise RecipeError(f"recipe {path}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    if isinstance(values.get("data"), str):
        values["data"] = [values["data"]]
    return values


def _recipe_loader() -> Any:
    """PyYAML's safe loader without anchors and aliases: a recipe never needs them, and nested aliases (the
    "billion laughs" file) expand to billions of entries in whatever walks the result."""
    import yaml

    class RecipeLoader(yaml.SafeLoader):
        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                raise yaml.YAMLError(f"aliases (*{event.anchor}) are not allowed in a recipe{event.start_mark}")
            return super().compose_node(parent, index)

    return RecipeLoader


def build_recipe(config: str | os.PathLike | None = None, **overrides: Any) -> TrainRecipe:
    """Defaults < YAML ``config`` < ``overrides`` (only keys present are applied), then validated."""
    values = read_yaml(config) if config else {}
    values.update(overrides)
    if values.get("qlora") and "llm" not in values:
        values["llm"] = "lora"  # QLoRA means LoRA adapters on the 4-bit LLM
    hints = typing.get_type_hints(TrainRecipe)
    for name, value in values.items():
        values[name] = _coerce(name, value, hints[name])
    return TrainRecipe(**values).validate()


def _coerce(name: str, value: Any, hint: Any) -> Any:
    """YAML gives `1e-5` as a string and ints for floats; bring values to the field's type, else ``RecipeError``
    (a mapping, a list or a fractional number where a scalar of another type belongs)."""
    if value is None:
        if _is_optional(hint):
            return None
        raise RecipeError(f"{name}: needs a value")
    base = [a for a in typing.get_args(hint) if a is not type(None)] if _is_optional(hint) else [hint]
    target = base[0]
    shown = repr(value)[:80]
    if typing.get_origin(target) is list:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise RecipeError(f"{name}: {shown} is not a list of strings")
        return value
    try:
        if isinstance(value, (dict, list, tuple, set)):
            raise TypeError(type(value).__name__)
        if target is float and not isinstance(value, bool):
            return float(value)
        if target is int and not isinstance(value, bool):
            number = float(value) if isinstance(value, str) and any(c in value for c in ".eE") else value
            if isinstance(number, float) and not number.is_integer():
                raise ValueError("not a whole number")
            return int(number)
        if target is bool and isinstance(value, str) and value.lower() in _BOOL_WORDS:
            return _BOOL_WORDS[value.lower()]
    except (TypeError, ValueError, OverflowError) as error:
        raise RecipeError(f"{name}: {shown} is not a valid {target.__name__}") from error
    if not isinstance(value, target) or (target is int and isinstance(value, bool)):
        raise RecipeError(f"{name}: {shown} is not a valid {target.__name__}")
    return value


_BOOL_WORDS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


def _is_optional(hint: Any) -> bool:
    return isinstance(hint, types.UnionType) and type(None) in typing.get_args(hint)


def add_recipe_arguments(parser: argparse.ArgumentParser) -> None:
    """One option per recipe field (``--max-steps``), default unset so the YAML value is kept."""
    from hulumed.options import add_options

    add_options(parser, TrainRecipe, many=("data",), suppress_defaults=True)
