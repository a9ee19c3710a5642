"""Forward the Trainer's logs (loss, rewards, KL, lengths, …) to the run's tracker as `train/*`."""

from __future__ import annotations

import numbers

from transformers import TrainerCallback

from reasoning_rl.tracking.tracker import Tracker


class TrackerCallback(TrainerCallback):
    def __init__(self, tracker: Tracker, step_offset: int = 0):
        self.tracker = tracker
        self.step_offset = step_offset

    def on_log(self, args, state, control, logs=None, **kwargs):
        values = {
            (k if k.startswith(("train/", "eval/")) else f"train/{k}"): float(v)
            for k, v in (logs or {}).items()
            if isinstance(v, numbers.Number) and not isinstance(v, bool)
        }
        if values:
            self.tracker.log(values, step=state.global_step + self.step_offset)
        return control
