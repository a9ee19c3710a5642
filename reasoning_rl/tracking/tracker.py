"""One logging call for both sinks: the run's own metrics.jsonl (always) and W&B (when enabled).

metrics.jsonl is the readable record of every value (W&B can't read its offline files back; only
tracking/offline_records.py can), so the compare job reads it; W&B is where people look. See docs/wandb.md.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from reasoning_rl.errors import ConfigError
from reasoning_rl.tracking.redact import redact_config, redact_override
from reasoning_rl.tracking.run_dir import RunDir

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


def flatten_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config -> dotted keys (`hparams.learning_rate`, `algorithm.name`): W&B groups, filters and
    draws parallel coordinates on top-level keys only. Lists stay values."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten_config(value, f"{name}."))
        else:
            out[name] = dict(value) if isinstance(value, Mapping) else value
    return out


def wandb_mode(cfg: Mapping[str, Any]) -> str:
    """logger.mode, which defaults to $WANDB_MODE and then offline; W&B's old aliases accepted."""
    mode = cfg.get("mode") or "offline"  # WANDB_MODE= (empty) counts as unset
    mode = {"dryrun": "offline", "run": "online"}.get(mode, mode)
    if mode not in WANDB_MODES:
        raise ConfigError(f"logger.mode={mode!r} (or $WANDB_MODE) is not one of {list(WANDB_MODES)}")
    return mode


def _count(cfg: Mapping[str, Any], key: str, default: int | None) -> int | None:
    value = cfg.get(key, default)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ConfigError(f"logger.{key} must be an integer >= 0 or null, got {value!r}")
    return value


def check_logger_config(cfg: Mapping[str, Any]) -> None:
    """Everything in logger.* that can be wrong, found before W&B starts (and before a model loads)."""
    name = cfg.get("name", "none")
    if name not in LOGGERS:
        raise ConfigError(f"logger.name={name!r} is not one of {list(LOGGERS)}")
    if name != "wandb":
        return
    wandb_mode(cfg)
    _count(cfg, "table_rows", 64)
    _count(cfg, "table_completions", 1)
    interval = cfg.get("system_metrics_interval_s", 15)
    if not isinstance(interval, (int, float)) or isinstance(interval, bool) or interval <= 0:
        raise ConfigError(f"logger.system_metrics_interval_s must be a number > 0, got {interval!r}")
    if not isinstance(cfg.get("system_metrics", True), bool):
        raise ConfigError(f"logger.system_metrics must be true or false, got {cfg.get('system_metrics')!r}")


def wandb_init_kwargs(cfg: Mapping[str, Any], config: Mapping[str, Any], *, run_dir: str, run_id: str,
                      job_type: str | None) -> dict[str, Any]:
    """The arguments for `wandb.init`, without the Settings object (so tests can read them without W&B).

    project/entity/mode come from logger.* whose defaults read WANDB_PROJECT / WANDB_ENTITY / WANDB_MODE
    (conf/logger/wandb.yaml): an exported variable takes effect, an explicit logger.X=… still wins.
    """
    check_logger_config(cfg)
    group, tags = sweep_group_and_tags()
    return {
        "project": cfg.get("project") or "reasoning-rl",
        "entity": cfg.get("entity") or None,
        "group": cfg.get("group") or group,
        "job_type": cfg.get("job_type") or job_type,
        "name": cfg.get("run_name"),
        "tags": [*(cfg.get("tags") or []), *tags],
        "mode": wandb_mode(cfg),
        "dir": run_dir,
        "id": run_id,
        "resume": "allow",
        "config": flatten_config(config),
    }


def wandb_settings_kwargs(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """System metrics (CPU, memory, GPU utilisation and memory, …) are on unless logger.system_metrics=false."""
    on = bool(cfg.get("system_metrics", True))
    out: dict[str, Any] = {"silent": True, "console": "off", "x_disable_stats": not on}
    if on:
        out["x_stats_sampling_interval"] = float(cfg.get("system_metrics_interval_s", 15))
    return out


def _problem_text(problem: Any) -> str:
    """The problem as the user turn states it (the last user message), without the templated few-shot."""
    messages = getattr(problem, "messages", None) or []
    users = [m.get("content", "") for m in messages if m.get("role") == "user"]
    return users[-1] if users else ""


SAMPLE_COLUMNS = ["problem_id", "problem", "sample", "completion", "extracted", "gold", "correct", "format_ok"]


def sample_rows(records: Sequence[Mapping[str, Any]], problems: Sequence[Any] | None = None, *,
                max_rows: int | None = 64, per_problem: int | None = 1) -> list[list[Any]]:
    """Rows of the samples table: the first `per_problem` completions of each problem (None: all),
    at most `max_rows` rows in all (None: no cap)."""
    texts = {getattr(p, "id", None): _problem_text(p) for p in problems or []}
    rows: list[list[Any]] = []
    for record in records:
        completions = record.get("completions") or []
        for i, completion in enumerate(completions[:per_problem] if per_problem is not None else completions):
            if max_rows is not None and len(rows) >= max_rows:
                return rows
            rows.append([
                str(record.get("id")), texts.get(record.get("id"), ""), i, completion,
                _at(record.get("extracted"), i), str(record.get("gold")),
                bool(_at(record.get("correct"), i)), bool(_at(record.get("format_ok"), i)),
            ])
    return rows


def _cell(value: Any) -> Any:
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if getattr(value, "ndim", None) == 0:  # a numpy scalar
        return value.item()
    return str(value.tolist() if hasattr(value, "tolist") else value)


def _at(values: Any, i: int) -> Any:
    return values[i] if isinstance(values, Sequence) and not isinstance(values, str) and i < len(values) else None


class Tracker:
    def __init__(self, run_dir: RunDir, logger_cfg: Mapping[str, Any], config: Mapping[str, Any],
                 job_type: str | None = None):
        self.run_dir = run_dir
        self.wandb_run = None
        self.cfg = logger_cfg
        self.job_type = job_type
        check_logger_config(logger_cfg)
        if logger_cfg.get("name", "none") == "wandb" and run_dir.main:
            self.wandb_run = self._init_wandb(logger_cfg, redact_config(config))

    def _init_wandb(self, cfg: Mapping[str, Any], config: Mapping[str, Any]):
        import wandb

        # The id lives in the run dir so a re-run or a requeued job continues the same W&B run.
        id_file = self.run_dir.path / "wandb_run_id"
        run_id = id_file.read_text().strip() if id_file.exists() else uuid.uuid4().hex[:8]
        id_file.write_text(run_id)
        kwargs = wandb_init_kwargs(cfg, config, run_dir=str(self.run_dir.path), run_id=run_id, job_type=self.job_type)
        # W&B records sys.argv as run metadata: hand it the redacted command line.
        argv, sys.argv = sys.argv, [redact_override(a) for a in sys.argv]
        try:
            run = wandb.init(**kwargs, settings=wandb.Settings(**wandb_settings_kwargs(cfg)))
        finally:
            sys.argv = argv
        run.define_metric(STEP_METRIC)
        run.define_metric("*", step_metric=STEP_METRIC, step_sync=True)
        return run

    def log(self, metrics: Mapping[str, Any], step: int) -> None:
        self.run_dir.append_metrics(metrics, step)
        if self.wandb_run is not None:
            self.wandb_run.log({STEP_METRIC: step, **metrics})

    def set_summary(self, values: Mapping[str, Any]) -> None:
        if self.wandb_run is not None:
            for key, value in values.items():
                self.wandb_run.summary[key] = value

    def log_samples(self, records: Sequence[Mapping[str, Any]], step: int, problems: Sequence[Any] | None = None,
                    key: str = "eval/samples") -> None:
        """One evaluation's samples as a W&B table (logger.table_rows rows at most; 0 turns it off)."""
        max_rows = _count(self.cfg, "table_rows", 64)
        if self.wandb_run is None or max_rows == 0:
            return
        import wandb

        rows = sample_rows(records, problems, max_rows=max_rows, per_problem=_count(self.cfg, "table_completions", 1))
        self.wandb_run.log({STEP_METRIC: step, key: wandb.Table(columns=SAMPLE_COLUMNS, data=rows)})

    def log_table(self, key: str, table: Any, step: int) -> None:
        """A pandas DataFrame as a W&B table, capped at logger.table_rows rows; cells that are not
        scalars (chat messages) become their text."""
        max_rows = _count(self.cfg, "table_rows", 64)
        if self.wandb_run is None or max_rows == 0:
            return
        import wandb

        table = table.head(max_rows) if max_rows is not None else table
        rows = [[_cell(v) for v in row] for row in table.itertuples(index=False)]
        self.wandb_run.log({STEP_METRIC: step, key: wandb.Table(columns=[str(c) for c in table.columns], data=rows)})

    def log_image(self, key: str, path: str | Path, step: int) -> None:
        if self.wandb_run is not None and Path(path).is_file():
            import wandb

            self.wandb_run.log({STEP_METRIC: step, key: wandb.Image(str(path))})

    def log_artifact(self, kind: str, type: str, paths: Sequence[str | Path]) -> None:
        """Files and folders of the run dir as one artifact of this run, named `<kind>-<run id>`
        (logger.artifacts=false turns it off). Missing paths are skipped; nothing to add, no artifact."""
        if self.wandb_run is None or not self.cfg.get("artifacts", True):
            return
        present = [Path(p) for p in paths if Path(p).exists()]
        if not present:
            return
        import wandb

        artifact = wandb.Artifact(f"{kind}-{self.wandb_run.id}", type=type,
                                  metadata={"job_type": self.job_type, "run_dir": str(self.run_dir.path)})
        for path in present:
            if path.is_dir():
                artifact.add_dir(str(path), name=path.name)
            else:
                artifact.add_file(str(path), name=path.name)
        self.wandb_run.log_artifact(artifact)

    def finish(self, exit_code: int = 0) -> None:
        if self.wandb_run is not None:
            self.wandb_run.finish(exit_code=exit_code)
            self.wandb_run = None

    @property
    def wandb_dir(self) -> str | None:
        return os.path.join(self.run_dir.path, "wandb")
