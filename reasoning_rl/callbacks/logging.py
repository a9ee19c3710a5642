"""Forward the Trainer's logs (loss, rewards, KL, lengths, …) to the run's tracker as `train/*`, and
TRL's completion logs (`algorithm.args.log_completions=true`) as the `train/completions` table."""

from __future__ import annotations

import numbers
from pathlib import Path

from transformers import TrainerCallback

from reasoning_rl.tracking.tracker import Tracker


class TrackerCallback(TrainerCallback):
    def __init__(self, tracker: Tracker, step_offset: int = 0):
        self.tracker = tracker
        self.step_offset = step_offset
        self.forwarded: set[str] = set()

    def on_log(self, args, state, control, logs=None, **kwargs):
        values = {
            (k if k.startswith(("train/", "eval/")) else f"train/{k}"): float(v)
            for k, v in (logs or {}).items()
            if isinstance(v, numbers.Number) and not isinstance(v, bool)
        }
        if values:
            self.tracker.log(values, step=state.global_step + self.step_offset)
        self.forward_completions(args)
        return control

    def on_train_end(self, args, state, control, **kwargs):
        self.forward_completions(args)
        return control

    def forward_completions(self, args) -> None:
        """TRL writes each step's completions to output_dir/completions/completions_<step>.parquet (after
        its on_log, and to W&B only through its own report_to, which the tracker replaces): forward the
        files written since the last call."""
        if not getattr(args, "log_completions", False):
            return
        import pandas as pd

        for path in sorted(Path(args.output_dir, "completions").glob("completions_*.parquet")):
            if path.name in self.forwarded:
                continue
            self.forwarded.add(path.name)
            table = pd.read_parquet(path)
            step = int(path.stem.rpartition("_")[2]) + self.step_offset
            self.tracker.log_table("train/completions", table, step)
