"""The evaluate job end to end on the embedded model, and its one-line errors on bad input."""

import json
import math
import re
from collections import Counter

import pytest

from reasoning_rl.tracking.run_dir import read_jsonl
from tests.helpers import run_job


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("eval") / "run"
    result = run_job("evaluate", "debug=smoke", f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir, result


def plurality_credit(answers, correct):
    """maj@N on all N samples, written independently: most frequent answer, ties share the credit."""
    votes = Counter(a for a in answers if a is not None)
    if not votes:
        return 0.0
    top = max(votes.values())
    tied = [a for a, v in votes.items() if v == top]
    right = {a for a, c in zip(answers, correct) if c}
    return sum(a in right for a in tied) / len(tied)


def test_run_dir_has_every_artifact(smoke_run):
    run_dir, _ = smoke_run
    for name in (".hydra/config.yaml", "samples.jsonl", "summary.json", "metrics.jsonl", "provenance.json"):
        assert (run_dir / name).exists(), name
    assert json.loads((run_dir / "status.json").read_text())["status"] == "completed"
    provenance = json.loads((run_dir / "provenance.json").read_text())
    assert provenance["seed"] == 0 and provenance["packages"]["transformers"]
    assert list((run_dir / "wandb").glob("offline-run-*"))


def test_summary_equals_recomputation_from_samples(smoke_run):
    run_dir, _ = smoke_run
    samples = read_jsonl(run_dir / "samples.jsonl")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert len(samples) == 4
    n = len(samples[0]["completions"])
    assert n == 8 and all(len(s["correct"]) == n == len(s["extracted"]) for s in samples)

    def mean(values):
        return sum(values) / len(values)

    expected = {
        "pass@1": mean([mean(s["correct"]) for s in samples]),
        "pass@8": mean([float(any(s["correct"])) for s in samples]),
        "maj@8": mean([plurality_credit(s["extracted"], s["correct"]) for s in samples]),
        "majority_correct@8": mean([float(sum(s["correct"]) > 4) for s in samples]),
        "format@1": mean([mean(s["format_ok"]) for s in samples]),
    }
    for name, value in expected.items():
        assert math.isclose(summary[name]["mean"], value, abs_tol=1e-12), name
        assert summary[name]["ci_low"] <= summary[name]["mean"] <= summary[name]["ci_high"]
        assert summary[name]["n"] == 4


def test_metrics_jsonl_has_wandb_style_keys(smoke_run):
    run_dir, result = smoke_run
    (row,) = read_jsonl(run_dir / "metrics.jsonl")
    assert row["step"] == 0
    summary = json.loads((run_dir / "summary.json").read_text())
    assert row["eval/pass@8"] == summary["pass@8"]["mean"]
    assert "eval/maj@8_ci_high" in row and row["eval/tokens_per_s"] > 0
    assert "pass@8" in result.stdout and "maj@8" in result.stdout


@pytest.mark.reliability  # issue 16: crafted input, crash safety or secrets
def test_secrets_never_reach_the_run_dir(tmp_path):
    run_dir = tmp_path / "run"
    secret = "hf_supersecretvalue42"
    result = run_job("evaluate", "debug=smoke", "dataset.limit=1", "eval.num_samples=1", "eval.ks=[1]",
                     "generation.max_new_tokens=2", f"++logger.api_key={secret}", f"hydra.run.dir={run_dir}",
                     env={"HF_TOKEN": "hf_envsecretvalue43"})
    assert result.returncode == 0, result.stderr[-3000:]
    files = [p for p in run_dir.rglob("*") if p.is_file()]
    assert any(p.suffix == ".wandb" for p in files)  # W&B's own binary record is checked too
    for path in files:
        data = path.read_bytes()
        assert secret.encode() not in data and b"hf_envsecretvalue43" not in data, path


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["model=nonexistent"], "model"),
        (["dataset=nonexistent"], "dataset"),
        (["model=qwen2_5_0_5b_instruct"], "Qwen/Qwen2.5-0.5B-Instruct"),
        (["eval.ks=[1,16]"], "K=16"),
        (["eval.num_samples=0"], "num_samples"),
        (["dataset.limit=-1"], "dataset.limit"),
        (["hydra.run.dir=/proc/forbidden/run"], "not writable"),
        (["generation=vllm"], "vLLM"),
    ],
)
def test_bad_input_is_one_clear_line(overrides, message, tmp_path):
    run_dir = [] if any(o.startswith("hydra.run.dir") for o in overrides) else [f"hydra.run.dir={tmp_path}/run"]
    result = run_job("evaluate", "debug=smoke", *overrides, *run_dir, timeout=300)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert message in result.stderr
    assert not (tmp_path / "run" / "summary.json").exists()


# ---- settings that would silently give wrong numbers: refused (or warned about) before the model loads

def _compose(job, *overrides):
    from hydra import compose, initialize_config_dir

    from tests.helpers import REPO

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose(job, ["debug=smoke", "logger=none", *overrides])


def _check(job, cfg):
    """What each job checks before its run dir and model: evaluate_job.run's checks, train's check_config."""
    if job == "evaluate":
        from reasoning_rl.evaluate_job import run

        run(cfg)  # raises before job_run (no Hydra runtime here) when the config is refused
    else:
        from reasoning_rl.train_job import check_config

        check_config(cfg)


@pytest.mark.parametrize("job", ["evaluate", "train"])
@pytest.mark.parametrize("override,message", [
    ("generation.stop_strings=END", "generation.stop_strings=[END]"),  # else it stops at E, N or D
    ("generation.stop_strings=['']", "non-empty"),
    ("generation.stop_strings=[END,7]", "non-empty strings"),
    ("eval.bootstrap.n_resamples=0", "eval.bootstrap.n_resamples"),
    ("eval.bootstrap.n_resamples=2.5", "eval.bootstrap.n_resamples"),
    ("eval.bootstrap.n_resamples=true", "eval.bootstrap.n_resamples"),
    ("eval.bootstrap.confidence=1", "eval.bootstrap.confidence"),
    ("eval.bootstrap.confidence=0", "eval.bootstrap.confidence"),
    ("eval.bootstrap.confidence=95", "eval.bootstrap.confidence"),
    ("eval.bootstrap.confidence=-0.5", "eval.bootstrap.confidence"),
    ("eval.bootstrap.confidence=high", "eval.bootstrap.confidence"),
])
@pytest.mark.reliability  # issue 16: crafted input, crash safety or secrets
def test_silently_wrong_settings_are_config_errors(job, override, message):
    from reasoning_rl.errors import ConfigError

    with pytest.raises(ConfigError, match=re.escape(message)):
        _check(job, _compose(job, override))


@pytest.mark.parametrize("overrides,warned", [
    (["generation.temperature=0", "eval.num_samples=8", "eval.ks=[1,8]"], "generation.temperature=0"),
    (["generation.top_k=1", "eval.num_samples=4", "eval.ks=[1,4]"], "generation.top_k=1"),
    (["generation.temperature=0", "eval.num_samples=1", "eval.ks=[1]"], None),  # one sample: nothing lost
    (["generation.temperature=0.7", "generation.top_k=0", "eval.num_samples=8", "eval.ks=[1,8]"], None),
])
@pytest.mark.reliability  # issue 16: crafted input, crash safety or secrets
def test_greedy_sampling_with_many_samples_is_warned_about(overrides, warned, caplog):
    from reasoning_rl.evaluation import check_generation_config

    cfg = _compose("evaluate", *overrides)
    with caplog.at_level("WARNING"):
        check_generation_config(cfg.generation, cfg.eval)
    if warned:
        assert warned in caplog.text and "pass@K = pass@1" in caplog.text
    else:
        assert "pass@K" not in caplog.text
