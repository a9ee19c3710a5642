"""The TRL side of checkpointing (reasoning_rl/checkpointing.py): each checkpoint Trainer saves is marked
complete and rotated, and SIGTERM/SIGUSR2 become save-and-stop."""

from __future__ import annotations

import signal
from pathlib import Path

from transformers import TrainerCallback

from reasoning_rl.checkpointing import mark_complete, rotate_checkpoints

PREEMPTION_SIGNALS = (signal.SIGTERM, signal.SIGUSR2)


class CheckpointCallback(TrainerCallback):
    """Marks each saved checkpoint complete, and turns SIGTERM/SIGUSR2 into save-and-stop.

    SLURM sends these before preemption or the time limit; the handler only sets a flag, and the
    save happens at the end of the current optimizer step, where the state is consistent.
    """

    def __init__(self, step_offset: int = 0, keep: int | None = None):
        self.preempted = False
        self.step_offset = step_offset
        self.keep = keep  # newest complete checkpoints kept (None: all); see rotate_checkpoints
        for sig in PREEMPTION_SIGNALS:
            signal.signal(sig, self._request_stop)

    def _request_stop(self, signum, frame) -> None:
        self.preempted = True

    def on_step_end(self, args, state, control, **kwargs):
        if self.preempted:
            control.should_save = True
            control.should_training_stop = True
        return control

    def on_save(self, args, state, control, **kwargs):
        path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if path.is_dir() and getattr(args, "should_save", True):  # the process(es) that wrote it
            mark_complete(path)
            # Rotation here, after the marker, not in Trainer (save_total_limit): Trainer drops the old
            # ones before this marker exists, which leaves no complete checkpoint for a moment.
            best = state.best_model_checkpoint
            rotate_checkpoints(Path(args.output_dir), self.keep, protect=Path(best) if best else None)
        return control
