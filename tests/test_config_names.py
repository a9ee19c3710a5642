"""Sweep presets expand to jobs that compose and pass the algorithms' config checks; their documented
command-line examples compose too."""

import re
import shlex
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from tests.test_config import _picks_training_groups

CONF = Path(__file__).resolve().parents[1] / "conf"


def sweep_jobs(arguments: list[str]) -> list[list[str]]:
    """The jobs `python -m reasoning_rl.train -m ARGUMENTS` launches, as BasicSweeper expands them."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[a for a in arguments if "," not in a],
                      return_hydra_config=True)
    params = [f"{k}={v}" for k, v in (cfg.hydra.sweeper.params or {}).items()]
    overrides = OverridesParser.create().parse_overrides(params + arguments)
    return [job for batch in BasicSweeper.split_arguments(overrides, None) for job in batch]


def compose_job(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    OmegaConf.resolve(cfg)
    return cfg


def documented_examples(sweep: str) -> list[list[str]]:
    """The `python -m reasoning_rl.train -m …` lines of conf/sweep/SWEEP.yaml's comment, less the launcher."""
    lines = re.findall(r"^#\s+python -m reasoning_rl\.train -m (.*)$", (CONF / "sweep" / f"{sweep}.yaml").read_text(),
                       re.MULTILINE)
    return [[a for a in shlex.split(line) if not a.startswith("hydra/launcher=")] for line in lines]


def test_algorithms_sweep_covers_every_algorithm():
    jobs = sweep_jobs(["sweep=algorithms"])
    algorithms = sorted(dict(o.split("=", 1) for o in job)["algorithm"] for job in jobs)
    # _policy_gradient.yaml is PPO's and TRPO's shared base, not an algorithm
    assert algorithms == sorted(p.stem for p in (CONF / "algorithm").glob("*.yaml") if not p.stem.startswith("_"))


@pytest.mark.parametrize("sweep", sorted(p.stem for p in (CONF / "sweep").glob("*.yaml")))
def test_documented_sweep_examples_compose(sweep):
    from reasoning_rl.algorithms import get_algorithm

    examples = documented_examples(sweep)
    assert examples, f"conf/sweep/{sweep}.yaml documents no command line"
    for arguments in examples:
        jobs = sweep_jobs(arguments)
        assert len(jobs) > 1
        for job in jobs:
            cfg = compose_job(job)
            get_algorithm(cfg.algorithm.name).check_config(cfg)


def test_lr_bs_axis_replaced_from_the_command_line():
    jobs = sweep_jobs(["sweep=lr_bs", "hparams.learning_rate=1e-5,3e-5"])
    assert len(jobs) == 4
    rates = sorted({compose_job(job).hparams.learning_rate for job in jobs})
    assert rates == [1e-5, 3e-5]
    assert sorted({compose_job(job).hparams.per_device_train_batch_size for job in jobs}) == [4, 8]


# --- one name per shared concept: algorithm.num_generations and algorithm.kl_coef (GRPO, PPO, TRPO) ---

RL_ALGORITHMS = ("grpo", "ppo", "trpo")
# Train presets only: those that pick an algorithm or peft, themselves or through their bases.
TRAIN_EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml")
                           if not p.stem.startswith("_") and _picks_training_groups(p))


def compose_raw(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


@pytest.mark.parametrize("algorithm", RL_ALGORITHMS)
def test_shared_names_in_every_rl_algorithm(algorithm):
    cfg = compose_job([f"algorithm={algorithm}", "algorithm.num_generations=2", "algorithm.kl_coef=0.125"])
    assert (cfg.algorithm.num_generations, cfg.algorithm.kl_coef) == (2, 0.125)
    if algorithm == "grpo":  # TRL's names follow ours
        assert (cfg.algorithm.args.num_generations, cfg.algorithm.args.beta) == (2, 0.125)


@pytest.mark.parametrize("experiment", TRAIN_EXPERIMENTS)
def test_presets_use_the_shared_names(experiment):
    cfg = compose_raw([f"experiment={experiment}"])
    if cfg.algorithm.name != "grpo":
        return
    for trl in ("num_generations", "beta"):
        assert OmegaConf.is_interpolation(cfg.algorithm.args, trl), \
            f"experiment={experiment} sets algorithm.args.{trl}: use algorithm.{'kl_coef' if trl == 'beta' else trl}"


def test_old_spelling_still_works_and_warns_once(caplog):
    from reasoning_rl.algorithms import grpo
    from reasoning_rl.algorithms.common import trainer_kwargs

    grpo._warned.clear()
    cfg = compose_raw(["algorithm=grpo", "algorithm.args.num_generations=2", "algorithm.args.beta=0.5"])
    with caplog.at_level("WARNING", logger="reasoning_rl.algorithms.grpo"):
        grpo.check_config(cfg)
        grpo.check_config(cfg)
    args = trainer_kwargs(grpo.GRPOConfig, cfg, Path("/tmp/unused"))
    assert (args.num_generations, args.beta) == (2, 0.5)
    assert (cfg.algorithm.num_generations, cfg.algorithm.kl_coef) == (2, 0.5)
    warnings = [r.getMessage() for r in caplog.records]
    assert sum("algorithm.args.num_generations=2 is the old spelling of algorithm.num_generations" in w
               for w in warnings) == 1
    assert sum("algorithm.args.beta=0.5 is the old spelling of algorithm.kl_coef" in w for w in warnings) == 1


def test_new_spelling_does_not_warn(caplog):
    from reasoning_rl.algorithms import grpo

    grpo._warned.clear()
    cfg = compose_raw(["algorithm=grpo", "algorithm.num_generations=2", "algorithm.kl_coef=0.0"])
    with caplog.at_level("WARNING", logger="reasoning_rl.algorithms.grpo"):
        grpo.check_config(cfg)
    assert not [r for r in caplog.records if "old spelling" in r.getMessage()]


def test_group_size_error_names_the_shared_key():
    from reasoning_rl.algorithms import grpo
    from reasoning_rl.errors import ConfigError

    with pytest.raises(ConfigError, match=r"algorithm.num_generations must be >= 2 \(got 1\)"):
        grpo.check_config(compose_raw(["algorithm=grpo", "algorithm.num_generations=1"]))


# --- `--help` lists the groups and presets each job takes ---

def help_groups(job: str) -> dict[str, list[str]]:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", f"reasoning_rl.{job}", "--help"], cwd=CONF.parent,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    section = out.stdout.split("== Configuration groups ==", 1)[1].split("== Config ==", 1)[0]
    return {line.split(":", 1)[0]: line.split(":", 1)[1].strip().split(", ")
            for line in section.splitlines() if ": " in line and not line.startswith("Compose")}


def composes(job: str, override: str) -> bool:
    from hydra.errors import HydraException

    try:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            compose(config_name=job, overrides=[override])
    except HydraException:
        return False
    return True


@pytest.mark.parametrize("job", ["evaluate", "train"])
def test_help_lists_what_the_job_takes(job):
    listed = help_groups(job)
    assert "pipeline" not in listed  # reasoning_rl.pipeline's, not a job's group
    if job == "evaluate":
        assert not {"algorithm", "hparams", "peft", "sweep"} & set(listed)
        assert "learn_grpo" not in listed["experiment"] and "learn_baseline" in listed["experiment"]
    else:
        assert {"algorithm", "hparams", "peft", "sweep"} <= set(listed)
    for group in sorted(p.name for p in CONF.iterdir() if p.is_dir() and p.name not in ("hydra", "pipeline")):
        for option in sorted(p.stem for p in (CONF / group).glob("*.yaml") if not p.stem.startswith("_")):
            shown = option in listed.get(group, [])
            assert shown == composes(job, f"{group}={option}"), \
                f"{job} --help {'lists' if shown else 'omits'} {group}={option}"


def test_a_grpo_checkpoint_from_before_the_shared_names_still_resumes(tmp_path):
    """Its fingerprint has algorithm.args.num_generations/beta but not algorithm.num_generations/kl_coef."""
    import json

    import pytest as _pytest

    from reasoning_rl.checkpointing import check_resumable, fingerprint
    from reasoning_rl.errors import ConfigError

    now = {"algorithm": {"name": "grpo", "num_generations": 8, "kl_coef": 0.0,
                         "args": {"num_generations": 8, "beta": 0.0}}}
    old = fingerprint(now)
    del old["algorithm.num_generations"], old["algorithm.kl_coef"]
    (tmp_path / "config_fingerprint.json").write_text(json.dumps(old))
    check_resumable(tmp_path, now)
    changed = {"algorithm": {**now["algorithm"], "num_generations": 4, "args": {"num_generations": 4, "beta": 0.0}}}
    with _pytest.raises(ConfigError, match="different config"):
        check_resumable(tmp_path, changed)
