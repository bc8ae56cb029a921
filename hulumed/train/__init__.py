"""Fine-tuning Hulu-Med: data format, label masking, batching, the Trainer set-up, LoRA merging and the CLI verbs.

The pipeline of this room (each step one file):

    JSON / JSONL records ──data.py──> conversations (processor format, media paths resolved)
        ──labels.py──> input_ids + labels (assistant turns only) + media tensors, via the processor
        ──dataset.py──> a lazy torch Dataset (media read in the data loader)
        ──collator.py──> right-padded batches the model's forward accepts
        ──trainer.py──> transformers' Trainer (+ peft for LoRA / QLoRA), driven by a ``recipe.py`` dataclass
    merge.py: LoRA adapter + base -> merged weights in the official layout.
    commands.py: the ``train``, ``data check`` and ``merge-lora`` verbs.

Only ``commands.py`` is imported by ``hulumed --help``; it imports nothing heavy (peft, accelerate, yaml are
imported inside the handlers), so the CLI works without the ``train`` extra installed.
"""
