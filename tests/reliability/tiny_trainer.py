"""A real transformers Trainer on a model of a few hundred weights, with our CheckpointCallback: the
checkpoints it writes are real, and it can be told to freeze in the middle of writing one."""

from __future__ import annotations

import time
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM, Trainer, TrainingArguments

from reasoning_rl.callbacks.checkpoint import CheckpointCallback

MAX_STEPS = 3


def train(output_dir: str, resume_from: str | None = None, freeze_at_step: int | None = None) -> None:
    """Train MAX_STEPS steps, saving every step. With freeze_at_step, the save of that step writes the
    weights and optimizer, touches `<output_dir>/writing`, and hangs there (the parent kills it)."""
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=32, hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                         num_attention_heads=1, num_key_value_heads=1, max_position_embeddings=16)
    model = LlamaForCausalLM(config)
    rows = [{"input_ids": list(range(i, i + 8)), "labels": list(range(i, i + 8))} for i in range(8)]
    args = TrainingArguments(output_dir=output_dir, max_steps=MAX_STEPS, save_strategy="steps", save_steps=1,
                             per_device_train_batch_size=2, report_to=[], use_cpu=True, logging_steps=1,
                             dataloader_num_workers=0, disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=rows, callbacks=[CheckpointCallback()])
    if freeze_at_step is not None:
        save_optimizer = trainer._save_optimizer_and_scheduler

        def save_then_freeze(folder):
            save_optimizer(folder)
            if trainer.state.global_step == freeze_at_step:
                (Path(output_dir) / "writing").write_text(folder)
                time.sleep(600)

        trainer._save_optimizer_and_scheduler = save_then_freeze
    trainer.train(resume_from_checkpoint=resume_from)
