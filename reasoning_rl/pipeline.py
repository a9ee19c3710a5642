"""Run a chain of jobs declared in conf/pipeline/NAME.yaml: the article's experiment in one command.

    python -m reasoning_rl.pipeline pipeline=article pipeline.dir=DIR [KEY=VALUE …]
    python -m reasoning_rl.pipeline pipeline=article pipeline.dir=DIR hydra/launcher=slurm [hydra.launcher.KEY=…]

Every other KEY=VALUE goes to every evaluate and train stage, after the stage's own overrides
(`seed=1`, `debug=smoke`, `model=…`); a key the evaluate job does not have (`hparams.*`,
`eval.at_start`) goes to the train stages only, and `eval.limit`/`eval.split` (the train job's
evaluation set) reach evaluate stages as `dataset.limit`/`dataset.split`. DIR holds one run dir per stage, \
`pipeline.json` (each stage's
command, status and SLURM job id) and the compare stage's output.

Locally the stages run one after another in this process's order; a stage that fails cancels the
stages that depend on it, the others still run, and the exit status is 1. With a SLURM launcher each
evaluate/train stage is a one-run sweep of that launcher (preflight checks, requeue on preemption),
held by `--dependency=afterok:` on the stages it depends on, with `--kill-on-invalid-dep=yes`, so a
failed SFT cancels what depends on it; the compare stage is a small job of its own. The command
returns once everything is submitted.

`pipeline.only=[grpo,compare]` runs part of a pipeline: those stages, the stages they start from or
wait for (skipped when finished), and a compare stage over the kept runs only.

Re-running the same command skips the stages that finished (summary.json; compare: compare.md newer
than its inputs) and, on SLURM, those still queued or running. A finished stage whose command has
changed since is refused: a skipped stage must be the one asked for.

A plain CLI, not a Hydra job: its overrides are the stages' overrides, which this process does not
compose. The pipeline file is `pipeline=NAME` (conf/pipeline/NAME.yaml) or `pipeline=PATH.yaml`.
"""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reasoning_rl.errors import UserError, exit_on_user_error
from reasoning_rl.tracking.redact import redact_override
from reasoning_rl.tracking.run_dir import write_json_atomic

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
JOBS = ("evaluate", "train", "compare")
STATE = "pipeline.json"


@dataclass
class Stage:
    name: str
    job: str
    overrides: list[str] = field(default_factory=list)
    init_from: str | None = None
    after: list[str] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)  # compare
    baseline: str | None = None  # compare

    @property
    def needs(self) -> list[str]:
        return list(dict.fromkeys([*([self.init_from] if self.init_from else []), *self.after, *self.runs]))


# ----------------------------------------------------------------------------------------------
# Reading the command line and the pipeline file


def split_argv(argv: Sequence[str]) -> tuple[list[str], list[str], list[str]]:
    """(pipeline overrides, launcher overrides, stage overrides)."""
    own, launcher, stages = [], [], []
    for arg in argv:
        key = arg.partition("=")[0].lstrip("+~")
        if key == "pipeline" or key.startswith("pipeline."):
            own.append(arg)
        elif key.startswith(("hydra/launcher", "hydra.launcher.")):
            launcher.append(arg)
        elif "=" not in arg:
            raise UserError(f"{arg!r} is not a KEY=VALUE override")
        else:
            stages.append(arg)
    return own, launcher, stages


def load_pipeline(own: Sequence[str]) -> tuple[Path, list[Stage]]:
    """conf/pipeline/NAME.yaml (or a file of the user's own), with the `pipeline.KEY=VALUE` overrides."""
    from omegaconf import OmegaConf
    from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

    name, dotlist = "article", []
    for arg in own:
        key, _, value = arg.partition("=")
        if key == "pipeline":
            name = value
        else:
            dotlist.append(f"{key.lstrip('+~').removeprefix('pipeline.')}={value}")
    path = Path(name).expanduser() if name.endswith((".yaml", ".yml")) else CONF_DIR / "pipeline" / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in (CONF_DIR / "pipeline").glob("*.yaml")))
        raise UserError(f"pipeline={name}: no such pipeline (known: {known}; or a path to a .yaml file)")
    try:
        spec = OmegaConf.merge(OmegaConf.load(path), OmegaConf.from_dotlist(dotlist))
        spec = OmegaConf.to_container(spec, resolve=True, throw_on_missing=True)
    except MissingMandatoryValue:
        raise UserError(
            "pipeline.dir is required: python -m reasoning_rl.pipeline pipeline=article pipeline.dir=DIR") from None
    except (OmegaConfBaseException, OSError, ValueError) as exc:
        raise UserError(f"cannot read the pipeline {path}: {str(exc).splitlines()[0]}") from None
    stages = parse_stages(spec.get("stages") or {})
    return Path(spec["dir"]).expanduser().absolute(), select(stages, spec.get("only"))


def select(stages: list[Stage], only: Sequence[str] | None) -> list[Stage]:
    """The stages named in `only`, what they start from or wait for, and compare stages cut to the kept runs."""
    if not only:
        return stages
    by_name = {s.name: s for s in stages}
    unknown = [n for n in only if n not in by_name]
    if unknown:
        raise UserError(f"pipeline.only: {unknown[0]!r} is not a stage (stages: {', '.join(by_name)})")
    kept: set[str] = set()

    def keep(name: str) -> None:
        if name in kept:
            return
        kept.add(name)
        stage = by_name[name]
        for need in (([stage.init_from] if stage.init_from else []) + stage.after
                     + ([stage.baseline] if stage.baseline else [])):
            keep(need)

    for name in only:
        if by_name[name].job != "compare":
            keep(name)
    for name in only:  # a compare stage keeps only runs that are kept for their own sake
        if by_name[name].job == "compare":
            stage = by_name[name]
            stage.runs = [r for r in stage.runs if r in kept or r == stage.baseline]
            keep(name)
    return [s for s in stages if s.name in kept]


def parse_stages(spec: Mapping[str, Any]) -> list[Stage]:
    known = {"job", "overrides", "init_from", "after", "runs", "baseline"}
    stages = []
    for name, body in spec.items():
        body = body or {}
        unknown = sorted(set(body) - known)
        if unknown:
            raise UserError(f"pipeline stage {name!r}: unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})")
        if body.get("job") not in JOBS:
            raise UserError(f"pipeline stage {name!r}: job must be one of {', '.join(JOBS)}, got {body.get('job')!r}")
        stages.append(Stage(name=name, job=body["job"], overrides=[str(o) for o in body.get("overrides") or []],
                            init_from=body.get("init_from"), after=list(body.get("after") or []),
                            runs=list(body.get("runs") or []), baseline=body.get("baseline")))
    names = [s.name for s in stages]
    for stage in stages:
        missing = [n for n in stage.needs + ([stage.baseline] if stage.baseline else []) if n not in names]
        if missing:
            raise UserError(f"pipeline stage {stage.name!r} refers to {missing[0]!r}, which is not a stage")
        if stage.init_from and next(s for s in stages if s.name == stage.init_from).job != "train":
            raise UserError(f"pipeline stage {stage.name!r}: init_from={stage.init_from} is not a train stage")
    return topological(stages)


def topological(stages: list[Stage]) -> list[Stage]:
    """The stages in an order that runs every stage after those it needs (file order where free)."""
    done: list[Stage] = []
    pending = list(stages)
    while pending:
        ready = [s for s in pending if all(n in {d.name for d in done} for n in s.needs)]
        if not ready:
            raise UserError(f"pipeline stages depend on each other in a cycle: {', '.join(s.name for s in pending)}")
        done.append(ready[0])
        pending.remove(ready[0])
    return done


# ----------------------------------------------------------------------------------------------
# One stage's command


def job_keys(job: str) -> tuple[Any, set[str]]:
    """A job's default config and its config groups, to tell which overrides it accepts."""
    if job not in _JOB_KEYS:
        from hydra import compose, initialize_config_dir
        from omegaconf import OmegaConf

        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            cfg = compose(job, return_hydra_config=True)
        groups = {g for g in cfg.hydra.runtime.choices if not g.startswith("hydra")}
        _JOB_KEYS[job] = (OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), groups)
    return _JOB_KEYS[job]


_JOB_KEYS: dict[str, tuple[Any, set[str]]] = {}
_EVAL_SET = {"eval.limit": "dataset.limit", "eval.split": "dataset.split"}


def accepts(job: str, override: str) -> bool:
    """Whether the job has the override's key: a train-only key (hparams.*, eval.at_start) given on the
    pipeline's command line is for the train stages and would be refused by an evaluate stage."""
    from omegaconf import OmegaConf

    if override.startswith(("+", "~")) or override.startswith("hydra"):
        return True
    key = override.partition("=")[0]
    cfg, groups = job_keys(job)
    if OmegaConf.select(cfg, key, default="<missing>") != "<missing>":
        return True
    head = key.split(".")[0]
    return head in groups and head != "eval"  # a key of a group choice other than the default one


def command(stage: Stage, root: Path, stage_overrides: Sequence[str]) -> list[str]:
    if stage.job == "compare":
        baseline = ["--baseline", str(root / stage.baseline)] if stage.baseline else []
        return [sys.executable, "-m", "reasoning_rl.compare", *[str(root / r) for r in stage.runs], *baseline,
                "--out", str(root / stage.name)]
    init = [f"init_from={root / stage.init_from}"] if stage.init_from else []
    given = list(stage_overrides)
    if stage.job == "evaluate":  # the train job's evaluation set is the evaluate job's data set
        given = [_EVAL_SET.get(o.partition("=")[0], o.partition("=")[0]) + "=" + o.partition("=")[2] for o in given]
        given = [o for o in given if accepts(stage.job, o)]
    return [sys.executable, "-m", f"reasoning_rl.{stage.job}", *stage.overrides, *given, *init]


def finished(stage: Stage, root: Path) -> bool:
    if stage.job == "compare":
        report = root / stage.name / "compare.md"
        inputs = [root / r / "summary.json" for r in stage.runs]
        return report.is_file() and all(p.is_file() and p.stat().st_mtime <= report.stat().st_mtime for p in inputs)
    return (root / stage.name / "summary.json").is_file()


def shown(cmd: Sequence[str]) -> str:
    return shlex.join(["python", *cmd[1:3], *[redact_override(c) for c in cmd[3:]]])


def load_state(root: Path) -> dict:
    path = root / STATE
    try:
        return json.loads(path.read_text()) if path.is_file() else {"stages": {}}
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {path} ({exc}); move it aside to start the pipeline's record afresh") from None


def check_unchanged(stage: Stage, root: Path, state: Mapping[str, Any], cmd: Sequence[str]) -> None:
    before = (state["stages"].get(stage.name) or {}).get("command")
    if before is not None and before != shown(cmd):
        raise UserError(f"stage {stage.name} finished with another command ({before}); now it would be "
                        f"({shown(cmd)}); use a new pipeline.dir, or move {root / stage.name} aside to re-run it")


# ----------------------------------------------------------------------------------------------
# Running


def run_local(stages: list[Stage], root: Path, stage_overrides: Sequence[str], state: dict) -> int:
    failed: dict[str, str] = {}  # stage -> why it did not run to the end
    for i, stage in enumerate(stages, 1):
        cmd = command(stage, root, stage_overrides)
        record = state["stages"].setdefault(stage.name, {})
        blocked = [n for n in stage.needs if n in failed]
        if blocked:
            failed[stage.name] = f"cancelled: {blocked[0]} did not finish"
            record.update(status="cancelled", error=failed[stage.name])
        elif finished(stage, root):
            check_unchanged(stage, root, state, cmd)
            print(f"[{i}/{len(stages)}] {stage.name}: finished earlier, skipped", flush=True)
            record.update(status="completed", command=shown(cmd))
        else:
            print(f"[{i}/{len(stages)}] {stage.name}: {shown(cmd)}", flush=True)
            placement = [] if stage.job == "compare" else [f"hydra.run.dir={root / stage.name}"]
            code = subprocess.run([*cmd, *placement]).returncode
            why = None if code == 0 else exit_reason(code)
            if code < 0 and stage.job != "compare":
                mark_killed(root / stage.name, why)
            record.update(command=shown(cmd), status="completed" if code == 0 else "failed", error=why)
            if code != 0:
                failed[stage.name] = f"was {why}" if code < 0 else f"failed with {why}"
        write_json_atomic(root / STATE, state)
    print(status_table(stages, state))
    if failed:
        print(f"error: {len(failed)} of {len(stages)} stages did not finish: "
              + "; ".join(f"{n} {why}" for n, why in failed.items()), file=sys.stderr)
        return 1
    compare = [s for s in stages if s.job == "compare"]
    if compare:
        print(f"comparison: {root / compare[-1].name / 'compare.md'}")
    return 0


def exit_reason(code: int) -> str:
    if code >= 0:
        return f"exit status {code}"
    name = signal.Signals(-code).name if -code in signal.valid_signals() else f"signal {-code}"
    hint = " (out of memory? see dmesg)" if -code == signal.SIGKILL else ""
    return f"killed by {name}{hint}"


def mark_killed(run_dir: Path, why: str) -> None:
    """A run killed by a signal never wrote `failed`: say so, so its status.json does not read `running`."""
    status = run_dir / "status.json"
    try:
        if json.loads(status.read_text()).get("status") == "running":
            write_json_atomic(status, {"status": "failed", "time": time.time(), "error": why})
    except (OSError, ValueError):
        pass


def status_table(stages: list[Stage], state: Mapping[str, Any]) -> str:
    lines = [f"{'stage':<18}{'job':<10}{'status':<12}{'job id':<10}from"]
    for stage in stages:
        record = state["stages"].get(stage.name) or {}
        lines.append(f"{stage.name:<18}{stage.job:<10}{record.get('status', '-'):<12}{record.get('job_id') or '-':<10}"
                     f"{stage.init_from or ('base' if stage.job == 'train' else '')}")
    return "\n".join(lines)


@exit_on_user_error
def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    own, launcher, stage_overrides = split_argv(argv)
    root, stages = load_pipeline(own)
    root.mkdir(parents=True, exist_ok=True)
    state = load_state(root)
    if launcher:
        from reasoning_rl.launching.pipeline_slurm import submit

        return submit(stages, root, stage_overrides, launcher, state)
    return run_local(stages, root, stage_overrides, state)


if __name__ == "__main__":
    sys.exit(main())
