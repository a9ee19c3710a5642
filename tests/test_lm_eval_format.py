"""results.json and samples_<task>.jsonl: a run's results in lm-evaluation-harness's format."""

import json
import math
from statistics import NormalDist

import pytest
from omegaconf import OmegaConf

from reasoning_rl.evaluation import score_records
from reasoning_rl.metrics import summarize
from reasoning_rl.tracking.lm_eval_format import (
    build_results,
    build_sample_rows,
    lm_eval_outputs,
    metric_key,
    stderr_from_ci,
    stderr_key,
    task_name,
    write_lm_eval,
)
from reasoning_rl.tracking.run_dir import RunDir, read_jsonl
from tests.helpers import SHORT_TASK, run_job

Z95 = NormalDist().inv_cdf(0.975)


def _records():
    """Three problems, four samples each, as evaluation.grade writes them to samples.jsonl."""
    graded = [
        ("p/0", "4", ["4", "4", "5", None], [True, True, False, False], [True, False, True, True]),
        ("p/1", "7", ["1", "2", "3", "7"], [False, False, False, True], [True, True, True, True]),
        ("p/2", "9", [None, None, None, None], [False] * 4, [False] * 4),
    ]
    return [{"id": i, "gold": g, "completions": [f"answer {e}" for e in ext], "extracted": ext, "correct": c,
             "format_ok": f, "num_tokens": [3] * 4, "finish_reason": ["stop"] * 4} for i, g, ext, c, f in graded]


def _cfg(**dataset):
    return OmegaConf.create({
        "seed": 3, "job_name": "evaluate",
        "model": {"name_or_path": "org/model", "revision": None, "dtype": "float32", "trust_remote_code": False},
        "dataset": {"name": "gsm8k", "hub_id": "openai/gsm8k", "hub_config": "main", "split": "test", "limit": 3,
                    "few_shot": 0, "grader": "gsm8k", **dataset},
        "generation": {"backend": "hf", "max_new_tokens": 16, "temperature": 0.7, "top_p": 1.0, "top_k": 0,
                       "batch_size": 8, "stop_strings": []},
        "eval": {"num_samples": 4, "ks": [1, 4], "estimator": "subsets",
                 "bootstrap": {"n_resamples": 200, "confidence": 0.9}},
    })


def _summary(records, cfg):
    return summarize(score_records(records, list(cfg.eval.ks), cfg.eval.estimator),
                     n_resamples=cfg.eval.bootstrap.n_resamples, confidence=cfg.eval.bootstrap.confidence, seed=0)


def test_metric_keys_are_lm_eval_metric_filter_pairs():
    assert metric_key("pass@8") == "pass@8,none"
    assert stderr_key("majority_correct@8") == "majority_correct@8_stderr,none"
    assert metric_key("maj@8", "strict-match") == "maj@8,strict-match"


def test_stderr_is_the_ci_read_as_a_normal_interval():
    stat = {"mean": 0.5, "ci_low": 0.3, "ci_high": 0.7, "n": 50}
    assert math.isclose(stderr_from_ci(stat), 0.4 / (2 * 1.96), rel_tol=1e-4)
    assert math.isclose(stderr_from_ci(stat, confidence=0.9), 0.4 / (2 * NormalDist().inv_cdf(0.95)))
    assert stderr_from_ci({**stat, "n": 1}) == "N/A"  # one problem: a zero-width CI says nothing
    assert stderr_from_ci({"mean": 0.5, "ci_low": None, "ci_high": None, "n": 50}) == "N/A"


def test_task_name_is_the_data_set_name():
    assert task_name({"name": "gsm8k"}) == "gsm8k"
    assert task_name({"name": "reasoning_gym", "task": "chain_sum"}) == "reasoning_gym_chain_sum"
    assert task_name({"name": "a/b c"}) == "a_b_c"  # safe in the samples file's name


def test_results_dict_has_lm_eval_layout():
    summary = {"pass@1": {"mean": 0.25, "ci_low": 0.1, "ci_high": 0.4, "n": 20},
               "maj@8": {"mean": 0.5, "ci_low": 0.3, "ci_high": 0.6, "n": 20}}
    out = build_results(summary, task="gsm8k", config={"model": "hf", "model_args": "pretrained=x"},
                        version="0.1.0", model_name="org/x", git_hash="abc", date=12.5)
    for key in ("results", "group_subtasks", "configs", "versions", "n-shot", "higher_is_better", "n-samples",
                "config", "git_hash", "date", "model_name"):
        assert key in out, key
    task = out["results"]["gsm8k"]
    assert task == {"alias": "gsm8k", "pass@1,none": 0.25, "pass@1_stderr,none": pytest.approx(0.3 / (2 * Z95)),
                    "maj@8,none": 0.5, "maj@8_stderr,none": pytest.approx(0.3 / (2 * Z95))}
    assert out["n-samples"] == {"gsm8k": {"original": 20, "effective": 20}}
    assert out["higher_is_better"] == {"gsm8k": {"pass@1": True, "maj@8": True}}
    assert out["configs"]["gsm8k"]["metadata"]["ci"]["maj@8"] == [0.3, 0.6]
    assert out["model_name_sanitized"] == "org__x" and out["date"] == 12.5 and out["git_hash"] == "abc"
    json.dumps(out)  # plain JSON, nothing left for a default= to convert


def test_one_row_per_problem_with_its_metric_values():
    records = _records()
    per_problem = score_records(records, [1, 4], "subsets")
    prompts = [f"prompt {r['id']}" for r in records]
    rows = build_sample_rows(records, per_problem, prompts=prompts, gen_kwargs={"temperature": 0.7})
    assert len(rows) == len(records)
    for index, (row, record) in enumerate(zip(rows, records)):
        assert row["doc_id"] == index and row["doc"]["id"] == record["id"] and row["target"] == record["gold"]
        assert row["resps"] == [record["completions"]] and row["filtered_resps"] == [record["extracted"]]
        assert row["arguments"] == [[prompts[index], {"temperature": 0.7}]]
        assert row["filter"] == "none" and row["metrics"] == list(per_problem)
        for name, values in per_problem.items():
            assert row[name] == values[index]
    assert rows[0]["pass@1"] == 0.5 and rows[1]["pass@4"] == 1.0 and rows[2]["format@1"] == 0.0
    assert build_sample_rows(records, per_problem)[0]["arguments"] == []  # no prompts known
    with pytest.raises(ValueError):
        build_sample_rows(records, {"pass@1": [1.0]})


def test_outputs_from_a_config_agree_with_the_summary():
    records, cfg = _records(), _cfg()
    summary = _summary(records, cfg)
    provenance = {"git": {"sha": "deadbeef"}, "packages": {"reasoning-rl": "9.9"},
                  "started_at": "2026-01-02T03:04:05+0000"}
    task, results, rows = lm_eval_outputs(cfg, summary, records, provenance=provenance, adapter="runs/x")
    assert task == "gsm8k"
    metrics = results["results"]["gsm8k"]
    assert set(metrics) == {"alias"} | {metric_key(n) for n in summary} | {stderr_key(n) for n in summary}
    for name, stat in summary.items():
        assert metrics[metric_key(name)] == stat["mean"]
        z = NormalDist().inv_cdf(0.95)  # the config's 90 % CI
        assert math.isclose(metrics[stderr_key(name)], (stat["ci_high"] - stat["ci_low"]) / (2 * z))
        assert math.isclose(sum(r[name] for r in rows) / len(rows), stat["mean"])
    config = results["config"]
    assert config["model"] == "hf" and config["model_args"] == "pretrained=org/model,dtype=float32," \
        "trust_remote_code=False,peft=runs/x"
    assert config["random_seed"] == 3 and config["bootstrap_iters"] == 200 and config["limit"] == 3
    assert results["configs"]["gsm8k"]["repeats"] == 4 and results["configs"]["gsm8k"]["test_split"] == "test"
    assert results["versions"] == {"gsm8k": "9.9"} and results["git_hash"] == "deadbeef"
    assert results["date"] == 1767323045.0
    assert results["n-samples"]["gsm8k"] == {"original": 3, "effective": 3}
    # The train job's eval set: its own split and data set name.
    task, results, _ = lm_eval_outputs(cfg, summary, records, dataset={"name": "reasoning_gym", "task": "chain_sum",
                                                                        "split": "test", "limit": 3})
    assert task == "reasoning_gym_chain_sum" and list(results["results"]) == [task]


def test_write_lm_eval_writes_both_files_only_on_the_main_process(tmp_path, monkeypatch):
    records, cfg = _records(), _cfg()
    summary = _summary(records, cfg)
    run = RunDir(tmp_path / "run")
    paths = write_lm_eval(run, cfg, summary, records)
    assert sorted(p.name for p in paths) == ["results.json", "samples_gsm8k.jsonl"]
    assert json.loads((run.path / "results.json").read_text())["results"]["gsm8k"]["pass@1,none"] == \
        summary["pass@1"]["mean"]
    assert len(read_jsonl(run.path / "samples_gsm8k.jsonl")) == 3
    assert sorted(p.name for p in run.path.iterdir()) == ["results.json", "samples_gsm8k.jsonl"]
    # A new job in the dir moves them aside with summary.json; a resumed one too (they are final results).
    (run.path / "samples_step4.jsonl").write_text("{}\n")
    stale = run.set_aside_stale(resuming=True)
    assert sorted(p.name for p in stale.iterdir()) == ["results.json", "samples_gsm8k.jsonl"]
    assert sorted(p.name for p in run.path.iterdir() if p.is_file()) == ["samples_step4.jsonl"]

    monkeypatch.setenv("RANK", "1")
    other = RunDir(tmp_path / "rank1")
    assert write_lm_eval(other, cfg, summary, records) == [] and not list(other.path.iterdir())


@pytest.fixture(scope="module")
def eval_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("lm_eval") / "run"
    result = run_job("evaluate", "debug=smoke", *SHORT_TASK, "logger=none", "dataset.limit=3", "eval.num_samples=4",
                     "eval.ks=[1,4]", f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


def test_evaluate_run_writes_lm_eval_files_matching_its_summary(eval_run):
    summary = json.loads((eval_run / "summary.json").read_text())
    samples = read_jsonl(eval_run / "samples.jsonl")
    results = json.loads((eval_run / "results.json").read_text())
    (task,) = results["results"]
    assert task == "reasoning_gym_chain_sum"
    metrics = results["results"][task]
    assert set(summary) == {"pass@1", "pass@4", "maj@4", "majority_correct@4", "format@1"}
    for name, stat in summary.items():
        assert metrics[f"{name},none"] == stat["mean"], name
        assert math.isclose(metrics[f"{name}_stderr,none"], (stat["ci_high"] - stat["ci_low"]) / (2 * Z95)), name
    assert results["n-samples"][task]["effective"] == len(samples) == 3
    assert results["configs"][task]["repeats"] == 4
    assert results["model_name"] in results["config"]["model_args"]
    provenance = json.loads((eval_run / "provenance.json").read_text())
    assert results["git_hash"] == provenance["git"]["sha"]

    rows = read_jsonl(eval_run / f"samples_{task}.jsonl")
    assert [r["doc"]["id"] for r in rows] == [s["id"] for s in samples]
    for row, sample in zip(rows, samples):
        assert row["resps"] == [sample["completions"]] and row["filtered_resps"] == [sample["extracted"]]
        assert row["arguments"][0][0]  # the templated prompt the model saw
    for name, stat in summary.items():
        assert math.isclose(sum(r[name] for r in rows) / len(rows), stat["mean"]), name
