"""`compare --wandb`: the comparison as a W&B run of job_type `compare`, so it sits next to the runs it
compares: its PNGs as images, compare.csv and compare_paired.csv as tables, and every file as one
artifact. Mode, project and entity are conf/logger/wandb.yaml's (WANDB_MODE, WANDB_PROJECT, …;
offline by default)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from reasoning_rl.tracking.run_dir import RunDir
from reasoning_rl.tracking.tracker import Tracker

TABLES = {"compare.csv": "compare/runs", "compare_paired.csv": "compare/paired",
          "compare_boundary.csv": "compare/boundary"}
LOGGER_CONFIG = Path(__file__).resolve().parents[2] / "conf" / "logger" / "wandb.yaml"


def logger_config() -> dict[str, Any]:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.load(LOGGER_CONFIG), resolve=True)


def log_comparison(out: Path, files: Mapping[str, Path], config: Mapping[str, Any]) -> str | None:
    """Log the written comparison; returns the W&B run's folder (offline) or None when W&B is disabled."""
    import pandas as pd

    tracker = Tracker(RunDir(out), logger_config(), dict(config), job_type="compare")
    try:
        for name, path in files.items():
            key = TABLES.get(name) or (f"compare/{Path(name).stem.removeprefix('compare_')}"
                                       if name.endswith(".png") else None)
            if key is None or not Path(path).is_file():
                continue
            if name.endswith(".png"):
                tracker.log_image(key, path, step=0)
            elif Path(path).stat().st_size:
                tracker.log_table(key, pd.read_csv(path), step=0)
        tracker.log_artifact("comparison", "comparison", list(files.values()))
        return tracker.wandb_dir if tracker.wandb_run is not None else None
    finally:
        tracker.finish()
