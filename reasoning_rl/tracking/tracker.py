"""One logging call for both sinks: the run's own metrics.jsonl (always) and W&B (when enabled).

metrics.jsonl is the readable record of every value (W&B offline files can't be read back), so
tests and the compare job read it; W&B is where people look.
"""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path
from collections.abc import Mapping
from typing import Any

from reasoning_rl.errors import ConfigError
from reasoning_rl.tracking.run_dir import RunDir
from reasoning_rl.tracking.redact import redact_config, redact_override

STEP_METRIC = "train/global_step"  # TRL's W&B step key, so our eval curves share its x-axis
LOGGERS = ("wandb", "none")
WANDB_MODES = ("offline", "online", "disabled")


def sweep_group_and_tags() -> tuple[str | None, list[str]]:
    """Inside a Hydra multirun: the sweep's W&B group (job name + sweep time, from the sweep dir) and
    the run's own overrides as tags, so the dashboard groups a sweep and tells its runs apart."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None, []
    hydra_cfg = HydraConfig.get()
    group = "-".join(p for p in Path(hydra_cfg.sweep.dir).parts[-3:] if p != "/")
    # W&B tags are at most 64 characters.
    tags = [redact_override(o)[:64] for o in hydra_cfg.overrides.task if not o.startswith("hydra")]
    return group, tags


class Tracker:
    def __init__(self, run_dir: RunDir, logger_cfg: Mapping[str, Any], config: Mapping[str, Any]):
        self.run_dir = run_dir
        self.wandb_run = None
        name = logger_cfg.get("name", "none")
        if name not in LOGGERS:
            raise ConfigError(f"logger.name={name!r} is not one of {list(LOGGERS)}")
        if name == "wandb" and run_dir.main:
            self.wandb_run = self._init_wandb(logger_cfg, redact_config(config))

    def _init_wandb(self, cfg: Mapping[str, Any], config: Mapping[str, Any]):
        mode = cfg.get("mode", "offline")
        if mode not in WANDB_MODES:
            raise ConfigError(f"logger.mode={mode!r} is not one of {list(WANDB_MODES)}")
        import wandb

        # The id lives in the run dir so a re-run or a requeued job continues the same W&B run.
        id_file = self.run_dir.path / "wandb_run_id"
        run_id = id_file.read_text().strip() if id_file.exists() else uuid.uuid4().hex[:8]
        id_file.write_text(run_id)
        # W&B records sys.argv as run metadata: hand it the redacted command line.
        argv, sys.argv = sys.argv, [redact_override(a) for a in sys.argv]
        try:
            run = self._wandb_init(wandb, cfg, mode, run_id, config)
        finally:
            sys.argv = argv
        run.define_metric(STEP_METRIC)
        run.define_metric("*", step_metric=STEP_METRIC, step_sync=True)
        return run

    def _wandb_init(self, wandb, cfg, mode, run_id, config):
        group, tags = sweep_group_and_tags()
        return wandb.init(
            project=cfg.get("project", "reasoning-rl"),
            entity=cfg.get("entity"),
            group=cfg.get("group") or group,
            name=cfg.get("run_name"),
            tags=[*(cfg.get("tags") or []), *tags],
            mode=mode,
            dir=str(self.run_dir.path),
            id=run_id,
            resume="allow",
            config=dict(config),
            settings=wandb.Settings(silent=True, console="off", x_disable_stats=True),
        )

    def log(self, metrics: Mapping[str, Any], step: int) -> None:
        self.run_dir.append_metrics(metrics, step)
        if self.wandb_run is not None:
            self.wandb_run.log({STEP_METRIC: step, **metrics})

    def set_summary(self, values: Mapping[str, Any]) -> None:
        if self.wandb_run is not None:
            for key, value in values.items():
                self.wandb_run.summary[key] = value

    def finish(self, exit_code: int = 0) -> None:
        if self.wandb_run is not None:
            self.wandb_run.finish(exit_code=exit_code)
            self.wandb_run = None

    @property
    def wandb_dir(self) -> str | None:
        return os.path.join(self.run_dir.path, "wandb")
