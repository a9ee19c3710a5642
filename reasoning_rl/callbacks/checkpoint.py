"""Checkpoints you can trust: marked complete only after Trainer wrote them, saved on preemption
signals, and refused for resume when they came from a different config."""

from __future__ import annotations

import hashlib
import json
import re
import signal
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from reasoning_rl.errors import ConfigError

COMPLETE_MARKER = "COMPLETE"
PREEMPTION_SIGNALS = (signal.SIGTERM, signal.SIGUSR2)
# Config sections that decide what a checkpoint contains; logging, eval cadence and checkpoint
# cadence may change between a run and its resume.
FINGERPRINT_KEYS = ("model", "dataset", "prompt", "algorithm", "hparams", "peft", "seed")
_STEP = re.compile(r"^checkpoint-(\d+)$")


def latest_complete_checkpoint(folder: Path) -> Path | None:
    if not folder.is_dir():
        return None
    complete = [
        (int(m.group(1)), p)
        for p in folder.iterdir()
        if (m := _STEP.match(p.name)) and (p / COMPLETE_MARKER).exists()
    ]
    return max(complete)[1] if complete else None


def _flatten(cfg: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(cfg, Mapping):
        out = {}
        for k, v in cfg.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): cfg}


def fingerprint(config: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in _flatten({k: config.get(k) for k in FINGERPRINT_KEYS}).items()}


def check_resumable(folder: Path, config: Mapping[str, Any]) -> None:
    """Record the config that produced these checkpoints; refuse to mix in a different one."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config_fingerprint.json"
    current = fingerprint(config)
    if path.exists():
        saved = json.loads(path.read_text())
        changed = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
        if changed:
            shown = ", ".join(f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in changed[:3])
            raise ConfigError(
                f"{folder} holds checkpoints of a different config ({shown}); refusing to resume. "
                "Use a new hydra.run.dir, or checkpoint.resume=never to start over there"
            )
    else:
        path.write_text(json.dumps(current, indent=2, sort_keys=True, default=str))


def config_digest(config: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(fingerprint(config), sort_keys=True, default=str).encode()).hexdigest()[:12]


class CheckpointCallback(TrainerCallback):
    """Marks each saved checkpoint complete, and turns SIGTERM/SIGUSR2 into save-and-stop.

    SLURM sends these before preemption or the time limit; the handler only sets a flag, and the
    save happens at the end of the current optimizer step, where the state is consistent.
    """

    def __init__(self, step_offset: int = 0):
        self.preempted = False
        self.step_offset = step_offset
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
        if path.is_dir():
            (path / COMPLETE_MARKER).write_text("")
        return control
