"""`python -m reasoning_rl.pipeline`: stages from a yaml, warm starts between them, skip what finished,
cancel what depends on a failure; the article's pipeline end to end at smoke size (slow), and on the
local SLURM with the second stage held until the first completes (slurm)."""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path

import pytest

from reasoning_rl.errors import UserError
from reasoning_rl.pipeline import parse_stages, topological
from tests.helpers import SHORT_TASK, run_job
from tests.test_slurm import slurm_cluster  # noqa: F401  (the fixture)

# conf/pipeline/article.yaml's smoke size: the learn presets sample 8 completions a prompt.
ARTICLE_SMOKE = ["debug=smoke", "logger=none", "hparams.per_device_train_batch_size=8"]
# A train stage that fails in its config check, seconds after it starts: nothing is trained.
FAILS = "hparams.learning_rate=-1"


def write_pipeline(folder: Path, stages: str) -> Path:
    path = folder / "mine.yaml"
    path.write_text(f"dir: ???\nstages:\n{textwrap.indent(textwrap.dedent(stages), '  ')}")
    return path


def state(root: Path) -> dict:
    return {name: record["status"]
            for name, record in json.loads((root / "pipeline.json").read_text())["stages"].items()}


def test_stages_run_after_what_they_need():
    stages = parse_stages({
        "compare": {"job": "compare", "runs": ["b", "a"], "baseline": "a"},
        "b": {"job": "train", "init_from": "a"},
        "a": {"job": "train"},
    })
    assert [s.name for s in stages] == ["a", "b", "compare"]


@pytest.mark.parametrize("spec, message", [
    ({"a": {"job": "train", "init_from": "x"}}, "'x', which is not a stage"),
    ({"a": {"job": "fit"}}, "job must be one of"),
    ({"a": {"job": "train", "overides": []}}, "unknown key 'overides'"),
    ({"a": {"job": "train", "after": ["b"]}, "b": {"job": "train", "after": ["a"]}}, "cycle"),
    ({"e": {"job": "evaluate"}, "a": {"job": "train", "init_from": "e"}}, "not a train stage"),
])
def test_bad_pipelines_are_refused(spec, message):
    with pytest.raises(UserError, match=message):
        topological(parse_stages(spec))


def test_bad_command_lines_are_one_line_errors(tmp_path):
    for args, message in [(["pipeline=nope", f"pipeline.dir={tmp_path}"], "no such pipeline"),
                          (["pipeline=article"], "pipeline.dir is required"),
                          (["pipeline=article", f"pipeline.dir={tmp_path}", "seed"], "not a KEY=VALUE")]:
        result = run_job("pipeline", *args, timeout=120)
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip().splitlines()[-1].startswith("error: ") and message in result.stderr


def test_a_failed_stage_cancels_its_dependents_only(tmp_path):
    """`a` fails; `b` (init_from a) and the compare of both are cancelled without running; `c`, which
    needs nothing, still runs (and fails the same way, fast)."""
    path = write_pipeline(tmp_path, f"""
        a: {{job: train, overrides: [{FAILS}]}}
        b: {{job: train, init_from: a}}
        c: {{job: train, overrides: [{FAILS}]}}
        cmp: {{job: compare, runs: [a, b]}}
    """)
    root = tmp_path / "out"
    result = run_job("pipeline", f"pipeline={path}", f"pipeline.dir={root}", "logger=none", timeout=300)
    assert result.returncode == 1, result.stdout + result.stderr
    assert state(root) == {"a": "failed", "b": "cancelled", "c": "failed", "cmp": "cancelled"}
    assert not (root / "b").exists()  # never started
    assert "a failed with exit status 2" in result.stderr and "b cancelled: a did not finish" in result.stderr


def test_finished_stages_are_skipped_and_must_match(tmp_path):
    path = write_pipeline(tmp_path, f"""
        a: {{job: train, overrides: [{FAILS}]}}
    """)
    root = tmp_path / "out"
    (root / "a").mkdir(parents=True)
    (root / "a" / "summary.json").write_text("{}")  # as a finished run leaves it
    result = run_job("pipeline", f"pipeline={path}", f"pipeline.dir={root}", "logger=none", timeout=120)
    assert result.returncode == 0, result.stderr
    assert "a: finished earlier, skipped" in result.stdout and state(root) == {"a": "completed"}
    changed = run_job("pipeline", f"pipeline={path}", f"pipeline.dir={root}", "logger=none", "seed=3", timeout=120)
    assert changed.returncode == 2 and "stage a finished with another command" in changed.stderr


@pytest.mark.slow
def test_article_pipeline_at_smoke_size(tmp_path):
    """Every stage runs; each RL stage starts from SFT's adapter (its step-0 samples are SFT's final
    samples, byte for byte) and records it; the ablation starts from the base model; compare shows it."""
    root = tmp_path / "article"
    result = run_job("pipeline", "pipeline=article", f"pipeline.dir={root}", *ARTICLE_SMOKE, "eval.at_start=true",
                     timeout=1800)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert set(state(root).values()) == {"completed"}
    sft = root / "sft"
    for stage in ("orpo", "grpo", "ppo", "trpo"):
        parent = json.loads((root / stage / "provenance.json").read_text())["parent"]
        assert parent["run_dir"] == str(sft) and parent["algorithm"] == "sft" and parent["git_sha"]
        assert (root / stage / "samples_step0.jsonl").read_bytes() == (sft / "samples.jsonl").read_bytes(), stage
        assert not (root / stage / "adapter" / "ref").exists()  # the frozen reference copy is not saved
    assert json.loads((root / "grpo_from_base" / "provenance.json").read_text())["parent"] is None
    # From the base model, step 0 is the baseline evaluation (same problems, seed and sampling).
    assert ((root / "grpo_from_base" / "samples_step0.jsonl").read_bytes()
            == (root / "baseline" / "samples.jsonl").read_bytes())
    assert (root / "compare" / "compare.md").is_file()
    again = run_job("pipeline", "pipeline=article", f"pipeline.dir={root}", *ARTICLE_SMOKE, "eval.at_start=true",
                    timeout=300)
    assert again.returncode == 0 and again.stdout.count("finished earlier, skipped") == 8, again.stdout


@pytest.mark.slow
@pytest.mark.slurm
@pytest.mark.usefixtures("slurm_cluster")
def test_pipeline_on_slurm_holds_the_second_stage(tmp_path):
    """On the local SLURM: one command submits both stages and returns; the warm start waits for its
    parent (afterok); a failed first stage gets its dependent cancelled."""
    path = write_pipeline(tmp_path, """
        first: {job: train}
        second: {job: train, init_from: first}
        broken: {job: train, overrides: [hparams.learning_rate=-1]}
        after_broken: {job: train, init_from: broken}
        cmp: {job: compare, runs: [first, second], baseline: first}
    """)
    root = tmp_path / "out"
    start = time.monotonic()
    result = run_job("pipeline", f"pipeline={path}", f"pipeline.dir={root}", "hydra/launcher=slurm_local",
                     "debug=smoke", "logger=none", *SHORT_TASK, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    submitted = time.monotonic() - start
    records = json.loads((root / "pipeline.json").read_text())["stages"]
    assert records["second"]["after"] == [records["first"]["job_id"]]
    from reasoning_rl.launching.pipeline_slurm import stage_states

    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        states = stage_states(json.loads((root / "pipeline.json").read_text()))
        if all(s in ("COMPLETED", "FAILED", "CANCELLED") or s.startswith("CANCELLED") for s in states.values()):
            break
        time.sleep(5)
    assert states["first"] == "COMPLETED" and states["second"] == "COMPLETED", states
    assert states["broken"] == "FAILED" and states["after_broken"].startswith("CANCELLED"), states
    assert states["cmp"] == "COMPLETED" and "lineage:" in (root / "cmp" / "compare.md").read_text(), states
    assert records["cmp"]["after"] == [records["first"]["job_id"], records["second"]["job_id"]]
    parent = json.loads((root / "second" / "provenance.json").read_text())["parent"]
    assert parent["run_dir"] == str(root / "first")
    times = {name: _sacct_times(records[name]["job_id"]) for name in ("first", "second")}
    assert times["second"][0] >= times["first"][1], times  # started only once the first had ended
    assert submitted < 120, f"submitting took {submitted:.0f} s"


def _sacct_times(job_id: str) -> tuple[str, str]:
    import subprocess

    out = subprocess.run(["sacct", "-n", "-X", "-P", "-j", job_id, "-o", "Start,End"], capture_output=True, text=True)
    start, end = out.stdout.strip().splitlines()[0].split("|")
    return start, end


def test_train_only_keys_reach_train_stages_only():
    from reasoning_rl.pipeline import Stage, command

    root = Path("/runs/p")
    given = ["seed=1", "debug=smoke", "hparams.max_steps=3", "eval.at_start=true", "eval.limit=4",
             "dataset.task_config.x=1"]
    evaluate = command(Stage("baseline", "evaluate", ["experiment=learn_baseline"]), root, given)
    assert evaluate[3:] == ["experiment=learn_baseline", "seed=1", "debug=smoke", "dataset.limit=4",
                            "dataset.task_config.x=1"]
    train = command(Stage("grpo", "train", ["experiment=learn_grpo"], init_from="sft"), root, given)
    assert train[3:] == ["experiment=learn_grpo", *given, "init_from=/runs/p/sft"]


def test_only_runs_the_named_stages_and_what_they_start_from():
    from reasoning_rl.pipeline import load_pipeline

    def kept(*only):
        _, stages = load_pipeline(["pipeline=article", "pipeline.dir=unused", f"pipeline.only=[{','.join(only)}]"])
        return {s.name: s.runs for s in stages}

    assert kept("grpo", "compare") == {"baseline": [], "sft": [], "grpo": [], "compare": ["baseline", "sft", "grpo"]}
    assert kept("grpo_from_base") == {"grpo_from_base": []}
    assert len(kept()) == 8  # only=[]: the whole pipeline
    with pytest.raises(UserError, match="'nope' is not a stage"):
        kept("nope")


def test_a_stage_killed_by_a_signal_is_reported_and_its_run_marked_failed(tmp_path, monkeypatch, capsys):
    """The OOM killer's SIGKILL leaves the run no chance to write `failed`: the pipeline does."""
    import subprocess

    from reasoning_rl import pipeline

    def killed(cmd):
        run_dir = Path(next(c for c in cmd if c.startswith("hydra.run.dir=")).partition("=")[2])
        run_dir.mkdir(parents=True)
        (run_dir / "status.json").write_text('{"status": "running"}')
        return subprocess.CompletedProcess(cmd, -9)

    monkeypatch.setattr(pipeline.subprocess, "run", killed)
    stages = parse_stages({"a": {"job": "train"}, "b": {"job": "train", "init_from": "a"}})
    assert pipeline.run_local(stages, tmp_path, [], {"stages": {}}) == 1
    assert json.loads((tmp_path / "a" / "status.json").read_text())["status"] == "failed"
    assert "a was killed by SIGKILL (out of memory?" in capsys.readouterr().err
    assert state(tmp_path) == {"a": "failed", "b": "cancelled"}
