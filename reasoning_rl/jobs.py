"""What every job does around its own work: run dir, redaction, provenance, tracker, status."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from reasoning_rl.errors import ConfigError, Preempted, Terminated
from reasoning_rl.tracking import provenance
from reasoning_rl.tracking.redact import redact_hydra_dir, redact_override
from reasoning_rl.tracking.run_dir import RunDir, write_json_atomic
from reasoning_rl.tracking.tracker import Tracker


@contextlib.contextmanager
def job_run(cfg: DictConfig, resuming: Callable[[Path], bool] | None = None) -> Iterator[tuple[RunDir, Tracker]]:
    """Open the run dir, record provenance, start logging; mark the run failed if the body raises.

    resuming(run_dir path): whether this job continues a run found there (train: checkpoints); if
    not, an earlier run's results in the dir are moved aside first.
    """
    seed = cfg.get("seed")
    if not isinstance(seed, int) or isinstance(seed, bool):  # before the run dir: nothing ran yet
        raise ConfigError(f"seed must be an integer, got {seed!r}")
    hydra_cfg = HydraConfig.get()
    run_dir = RunDir(hydra_cfg.runtime.output_dir)
    if not run_dir.main:  # data parallel: rank 0 tells the story; the others speak up only on trouble
        logging.getLogger("reasoning_rl").setLevel(logging.WARNING)
    hydra_dir = run_dir.path / (hydra_cfg.output_subdir or ".hydra")
    overrides = list(hydra_cfg.overrides.task)
    if run_dir.main:
        if hydra_dir.exists():
            redact_hydra_dir(hydra_dir)
        write_json_atomic(run_dir.path / "provenance.json", provenance.collect(cfg.seed, overrides))
    run_dir.set_aside_stale(resuming=bool(resuming and resuming(run_dir.path)))
    container: Mapping[str, Any] = OmegaConf.to_container(cfg, resolve=True)
    tracker = None
    with _stop_on_termination():
        run_dir.set_status("running")
        try:
            tracker = Tracker(run_dir, cfg.logger, {**container, "overrides": [redact_override(o) for o in overrides]},
                              job_type=cfg.get("job_name"))
            yield run_dir, tracker
        except Preempted as exc:
            run_dir.set_status("preempted", message=str(exc))
            if tracker is not None:
                tracker.finish(exit_code=Preempted.exit_code)
            raise
        except BaseException as exc:  # KeyboardInterrupt and Terminated (SIGTERM, SIGHUP) too
            run_dir.set_status("failed", error=f"{type(exc).__name__}: {exc}"[:2000])
            if tracker is not None:
                tracker.finish(exit_code=1)
            raise
        run_dir.set_status("completed")
        tracker.finish()


@contextlib.contextmanager
def _stop_on_termination() -> Iterator[None]:
    """SIGTERM/SIGHUP would kill the process where it stands and leave status.json `running`; raise
    Terminated instead, so the run is marked failed. Handlers already installed (training's
    save-and-stop, the sweep launcher's requeue) are left alone."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    stopped = []

    def stop(signum, frame):
        stopped.append(signum)
        for sig in installed:  # a second signal must not cut short the clean-up that records the stop
            signal.signal(sig, signal.SIG_IGN)
        raise Terminated(signum)

    installed = {}
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) is signal.SIG_DFL:
            installed[sig] = signal.signal(sig, stop)
    try:
        yield
    finally:
        for sig, previous in installed.items():
            if signal.getsignal(sig) is stop or (stopped and signal.getsignal(sig) is signal.SIG_IGN):
                signal.signal(sig, previous)


def format_table(summary: Mapping[str, Mapping[str, float]], title: str = "") -> str:
    rows = [(name, f"{s['mean']:.3f}", f"[{s['ci_low']:.3f}, {s['ci_high']:.3f}]", str(s["n"]))
            for name, s in summary.items()]
    header = ("metric", "mean", "95% CI", "n")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    lines = [title] if title else []
    for row in [header, *rows]:
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths)))
    return "\n".join(lines)
