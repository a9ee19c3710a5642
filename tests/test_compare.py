"""The compare job: paired statistics with known answers, tables and plots from synthetic run dirs,
bad input, and (slow) the whole job on real smoke runs, including evaluate adapter=RUN_DIR."""

import csv
import importlib.util
import json
import math

import numpy as np
import pytest
import yaml
from PIL import Image

from reasoning_rl import compare
from reasoning_rl.comparison import report, table
from reasoning_rl.comparison.runs import load_runs, unique_names
from reasoning_rl.comparison.stats import compare_scores, problem_scores, unpaired_bootstrap
from reasoning_rl.errors import UserError
from tests.helpers import SHORT_TASK, built_once, run_job

N = 8


def records(correct_counts, ids=None):
    """samples.jsonl records: problem i has correct_counts[i] of N samples right (answer 42), the rest say 7."""
    ids = ids or [f"toy/{i}" for i in range(len(correct_counts))]
    return [{"id": pid, "gold": "42", "completions": ["x"] * N,
             "extracted": ["42"] * c + ["7"] * (N - c), "correct": [True] * c + [False] * (N - c),
             "format_ok": [False] * N} for pid, c in zip(ids, correct_counts)]


def summary_of(recs, ks=(1, N)):
    """Means computed here, from the definitions (pass@1 = share right, pass@N = any right), not by the package."""
    def stat(values):
        mean = float(np.mean(values))
        return {"mean": mean, "ci_low": max(0.0, mean - 0.1), "ci_high": min(1.0, mean + 0.1), "n": len(values)}

    out = {"pass@1": stat([sum(r["correct"]) / N for r in recs]),
           f"pass@{N}": stat([float(any(r["correct"])) for r in recs]),
           f"maj@{N}": stat([float(sum(r["correct"]) > N - sum(r["correct"])) for r in recs])}
    return out


def make_run(path, *, job="evaluate", status="completed", recs=None, config=None, curve=None, summary=True, error=None):
    (path / ".hydra").mkdir(parents=True)
    cfg = {"model": {"name_or_path": "toy"}, "dataset": {"name": "gsm8k", "split": "test", "limit": 8},
           "eval": {"num_samples": N, "ks": [1, N], "estimator": "subsets"},
           "logger": {"name": "none", "mode": "offline"}, "job_name": job, "seed": 0}
    if job == "train":  # trains on the train split, evaluates on eval.split
        cfg["dataset"]["split"], cfg["eval"]["split"] = "train", "test"
    for key, value in (config or {}).items():
        node = cfg
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    (path / ".hydra" / "config.yaml").write_text(yaml.safe_dump(cfg))
    (path / "status.json").write_text(json.dumps({"status": status, **({"error": error} if error else {})}))
    if recs is not None:
        (path / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
        if summary:
            (path / "summary.json").write_text(json.dumps(summary_of(recs) if summary is True else summary))
    rows = []
    for step, values in curve or []:
        row = {"step": step}
        for metric, (mean, low, high) in values.items():
            row.update({f"eval/{metric}": mean, f"eval/{metric}_ci_low": low, f"eval/{metric}_ci_high": high})
        rows.append(row)
    if recs is not None and job == "evaluate" and not curve:
        s = summary_of(recs)
        rows.append({"step": 0, **{f"eval/{m}{suffix}": s[m][key] for m in s
                                   for suffix, key in (("", "mean"), ("_ci_low", "ci_low"), ("_ci_high", "ci_high"))}})
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# --- statistics with known answers -------------------------------------------------------------


def test_identical_runs_differ_by_zero_with_p_one():
    recs = records([0, 3, 8, 5, 1, 0, 8, 2, 4, 6])
    scores = problem_scores(recs, [1, N])
    diffs = compare_scores(scores, scores, ["pass@1", f"pass@{N}", f"maj@{N}"], n_resamples=2000)
    assert [d.metric for d in diffs] == ["pass@1", f"pass@{N}", f"maj@{N}"]
    for d in diffs:
        assert d.paired and d.diff == 0 and d.ci_low == 0 and d.ci_high == 0
        assert d.p_value == pytest.approx(1.0)


def test_run_right_on_a_superset_of_problems_is_better():
    base = records([N] * 10 + [0] * 30)   # right on problems 0-9
    better = records([N] * 30 + [0] * 10)  # right on 0-29: a superset
    diffs = {d.metric: d for d in compare_scores(problem_scores(base, [1, N]), problem_scores(better, [1, N]),
                                                 ["pass@1", f"pass@{N}"], n_resamples=4000)}
    for d in diffs.values():
        assert d.paired and d.n == 40
        assert d.diff == pytest.approx(20 / 40)  # 20 more problems right out of 40
        assert 0 < d.ci_low < d.diff < d.ci_high
        assert d.p_value < 0.01


def test_a_noisy_small_gain_is_not_significant():
    rng = np.random.default_rng(1)
    base_counts = rng.integers(0, N + 1, 30)
    other_counts = np.clip(base_counts + rng.choice([-1, 0, 1], 30), 0, N)
    a, b = problem_scores(records(list(base_counts)), [1]), problem_scores(records(list(other_counts)), [1])
    (d,) = compare_scores(a, b, ["pass@1"], n_resamples=4000)
    expected = float(np.mean((other_counts - base_counts) / N))
    assert d.diff == pytest.approx(expected)
    assert d.ci_low <= expected <= d.ci_high
    if d.ci_low < 0 < d.ci_high:
        assert d.p_value > 0.05


def test_unpaired_bootstrap_of_the_difference():
    a, b = [0.0] * 50 + [1.0] * 50, [1.0] * 80 + [0.0] * 20
    result = unpaired_bootstrap(a, b, n_resamples=4000)
    assert result["diff"] == pytest.approx(0.3)
    assert 0 < result["ci_low"] < 0.3 < result["ci_high"] < 0.6
    assert result["p_value"] < 0.01
    same = unpaired_bootstrap(a, a, n_resamples=500)
    assert same["diff"] == 0 and same["p_value"] == 1.0


def test_different_problem_sets_are_compared_unpaired():
    a = problem_scores(records([N, 0, N, 0]), [1])
    b = problem_scores(records([N, N, 0], ids=["other/0", "other/1", "other/2"]), [1])
    (d,) = compare_scores(a, b, ["pass@1"], n_resamples=500)
    assert not d.paired and (d.n_baseline, d.n) == (4, 3)
    assert d.diff == pytest.approx(2 / 3 - 1 / 2)


# --- tables, names, config keys --------------------------------------------------------------


def test_differing_keys_skip_noise_and_unshared_details():
    configs = [
        {"job_name": "evaluate", "model.name_or_path": "m", "logger.name": "wandb", "checkpoint": None,
         "eval.ks": [1, 8]},
        {"job_name": "train", "model.name_or_path": "m", "logger.name": "none", "algorithm.name": "sft",
         "algorithm.args.max_length": 1024, "hparams.learning_rate": 1e-4, "checkpoint.every_steps": 10,
         "eval.ks": [1, 8]},
        {"job_name": "train", "model.name_or_path": "m", "logger.name": "none", "algorithm.name": "grpo",
         "algorithm.args.beta": 0.04, "hparams.learning_rate": 1e-5, "checkpoint.every_steps": 3, "eval.ks": [1, 4]},
    ]
    # checkpoint (only the evaluate run has it, and it is null) is not a choice between runs
    assert table.differing_keys(configs) == ["eval.ks", "algorithm.name", "hparams.learning_rate"]
    configs[0]["checkpoint"] = "outputs/train/x"
    configs.append({**configs[0], "checkpoint": None})
    assert "checkpoint" in table.differing_keys(configs)


def test_unique_names_are_the_shortest_distinguishing_tails(tmp_path):
    paths = [tmp_path / "sweep_a" / "0", tmp_path / "sweep_b" / "0", tmp_path / "sweep_b" / "1"]
    assert unique_names(paths) == ["sweep_a/0", "sweep_b/0", "sweep_b/1"]
    assert unique_names([tmp_path / "x", tmp_path / "y"]) == ["x", "y"]


@pytest.fixture
def three_runs(tmp_path):
    """A baseline evaluation, a finished training run with a 3-point curve, a training run that crashed at step 2."""
    base = make_run(tmp_path / "base", recs=records([N] * 5 + [0] * 11))
    curve = [(s, {f"pass@{N}": (v, v - 0.1, v + 0.1), f"maj@{N}": (v / 2, 0, v)})
             for s, v in ((0, 0.3), (5, 0.5), (10, 0.6))]
    sft = make_run(tmp_path / "sft", job="train", recs=records([N] * 9 + [0] * 7), curve=curve,
                   config={"algorithm.name": "sft", "hparams.learning_rate": 1e-4})
    crashed = make_run(tmp_path / "grpo", job="train", status="failed", curve=curve[:2],
                       error="RuntimeError: CUDA out of memory\ntraceback…",
                       config={"algorithm.name": "grpo", "hparams.learning_rate": 1e-5})
    return tmp_path, [base, sft, crashed]


def test_compare_writes_table_csv_and_plots(three_runs, capsys):
    root, paths = three_runs
    out = root / "out"
    assert compare.main([*map(str, paths), "--out", str(out), "--resamples", "2000"]) == 0
    printed = capsys.readouterr()
    assert "warning: grpo: failed (RuntimeError: CUDA out of memory), no final metrics" in printed.err
    for name in ("compare.md", "compare.csv", "compare_paired.csv", "compare_curves.png", "compare_bars.png",
                 "plots.json"):
        assert (out / name).is_file(), name

    with open(out / "compare.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["run"], r["job"], r["status"]) for r in rows] == [
        ("base", "evaluate", "completed"), ("sft", "train", "completed"), ("grpo", "train", "failed")]
    assert float(rows[0]["pass@1"]) == pytest.approx(5 / 16) and float(rows[1]["pass@1"]) == pytest.approx(9 / 16)
    assert rows[2]["pass@1"] == "" and rows[2]["error"] == "RuntimeError: CUDA out of memory"
    assert rows[1]["algorithm.name"] == "sft" and rows[0]["algorithm.name"] == ""

    md = (out / "compare.md").read_text()
    assert ("| grpo | train | failed | - |" in md and "| base | evaluate | completed | gsm8k/test n=16 |" in md
            and "![eval curves](compare_curves.png)" in md)
    with open(out / "compare_paired.csv") as f:
        paired = {r["metric"]: r for r in csv.DictReader(f)}
    assert set(paired) == {"pass@1", f"pass@{N}", f"maj@{N}", f"majority_correct@{N}", "format@1"}
    assert float(paired["pass@1"]["diff"]) == pytest.approx(4 / 16) and paired["pass@1"]["paired"] == "True"
    assert float(paired["pass@1"]["ci_low"]) > 0

    plotted = json.loads((out / "plots.json").read_text())
    assert set(plotted["curves"]) == {f"pass@{N}", f"maj@{N}"}
    # one line per run: the evaluation as one point (a horizontal reference), the others as curves
    assert ({name: len(points) for name, points in plotted["curves"][f"pass@{N}"].items()}
            == {"base": 1, "sft": 3, "grpo": 2})
    assert set(plotted["bars"]["pass@1"]) == {"base", "sft"}  # the crashed run has no final metrics
    # no run logged a training reward: no training-curve figure, and compare.md does not link one
    assert plotted["train"] == {} and not (out / "compare_train.png").exists() and "compare_train.png" not in md
    for png in ("compare_curves.png", "compare_bars.png"):
        with Image.open(out / png) as image:
            image.verify()
        with Image.open(out / png) as image:
            assert image.size[0] > 300 and image.size[1] > 200


def test_curve_plot_draws_one_line_per_run(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    from reasoning_rl.tracking import plots

    figures = []
    monkeypatch.setattr(plt, "close", lambda fig: figures.append(fig))
    rows_a = [{"step": s, "eval/pass@8": v, "eval/pass@8_ci_low": v - 0.1, "eval/pass@8_ci_high": v + 0.1}
              for s, v in ((0, 0.2), (3, 0.4))]
    rows_b = [{"step": 0, "eval/pass@8": 0.3, "eval/pass@8_ci_low": 0.2, "eval/pass@8_ci_high": 0.4}]
    plots.plot_compare_curves([("a", rows_a, False), ("b", rows_b, True), ("c", [], False)], ["pass@8"],
                              tmp_path / "c.png")
    (ax,) = figures[0].axes
    lines = ax.get_lines()
    assert len(lines) == 2
    assert list(lines[0].get_xdata()) == [0, 3] and list(lines[0].get_ydata()) == [0.2, 0.4]
    assert lines[1].get_linestyle() == "--" and list(lines[1].get_ydata()) == [0.3, 0.3]


def test_train_curves_smooth_per_run_and_skip_runs_without_them(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    from reasoning_rl.tracking import plots

    assert plots.moving_average([1.0, 3.0, 5.0, 7.0], 2) == [1.0, 2.0, 4.0, 6.0]
    figures = []
    monkeypatch.setattr(plt, "close", lambda fig: figures.append(fig))
    rows_a = [{"step": s, "train/reward": r, "train/kl": 0.01 * s} for s, r in ((1, 0.0), (2, 1.0), (3, 0.5))]
    rows_a.append({"step": 3, "eval/pass@8": 0.5})  # an eval row at the same step is not a training value
    rows_b = [{"step": 1, "train/reward": 0.2}]
    drawn = plots.plot_train_curves([("a", rows_a), ("b", rows_b), ("evaluate-only", [])],
                                    ["train/reward", "train/kl"], tmp_path / "t.png", window=2)
    assert drawn["train/reward"]["a"] == [[1, 0.0, 0.0], [2, 1.0, 0.5], [3, 0.5, 0.75]]
    assert set(drawn["train/reward"]) == {"a", "b"} and set(drawn["train/kl"]) == {"a"}
    reward_ax = figures[0].axes[0]
    assert len(reward_ax.get_lines()) == 4  # raw + smoothed for each of the two runs that have it
    assert Image.open(tmp_path / "t.png").size[0] > 0


def test_baseline_by_name_and_unknown_baseline(three_runs, tmp_path):
    _, paths = three_runs
    runs = load_runs(paths)
    comparison = report.build(runs, baseline="sft", n_resamples=200)
    assert comparison.baseline.name == "sft" and set(comparison.diffs) == {"base"}
    assert comparison.diffs["base"][0].diff == pytest.approx(-4 / 16)
    with pytest.raises(UserError, match="none of the compared runs"):
        report.build(runs, baseline="nope")
    with pytest.raises(UserError, match="no samples.jsonl"):
        report.build(runs, baseline="grpo")


def test_different_metric_sets_show_the_common_ones_and_warn(tmp_path):
    recs = records([N, 0, 3, 8])
    extra = {**summary_of(recs), "pass@16": {"mean": 0.5, "ci_low": 0.2, "ci_high": 0.8, "n": 4}}
    runs = load_runs([make_run(tmp_path / "a", recs=recs), make_run(tmp_path / "b", recs=recs, summary=extra)])
    comparison = report.build(runs, n_resamples=200)
    assert comparison.metrics == ["pass@1", f"pass@{N}", f"maj@{N}"]
    assert any("a has no pass@16" in w for w in comparison.warnings)
    assert any("left out of the table: pass@16" in w for w in comparison.warnings)
    shown = report.build(runs, metrics=["pass@1", "pass@16"], n_resamples=200)
    header, rows = table.run_rows(shown.runs, shown.keys, shown.metrics)
    assert header[-1] == "pass@16" and rows[0][-1] == "-" and rows[1][-1].startswith("0.500")
    with pytest.raises(UserError, match="no run has them"):
        report.build(runs, metrics=["pass@99"])


def test_sweep_dir_members_that_never_started_are_shown(tmp_path):
    sweep = tmp_path / "sweep"
    make_run(sweep / "0", job="train", recs=records([N, 0]), config={"seed": 0})
    manifest = {"schema": 1, "job_name": "train", "sweep_dir": "/elsewhere/sweep", "executor": "slurm",
                "array_job_id": "7", "wandb_group": "train-x",
                "members": [{"num": 0, "job_id": "7_0", "overrides": ["seed=0"], "run_dir": "/elsewhere/sweep/0",
                             "status": "completed", "error": None},
                            {"num": 1, "job_id": "7_1", "overrides": ["seed=1"], "run_dir": "/elsewhere/sweep/1",
                             "status": "pending", "error": None},
                            {"num": 2, "job_id": "7_2", "overrides": ["seed=2"], "run_dir": "/elsewhere/sweep/2",
                             "status": "failed", "error": "SLURM state OUT_OF_MEMORY"}]}
    make_run(sweep / "2", job="train", status="running", config={"seed": 2})  # killed before it could say so
    (sweep / "sweep.json").write_text(json.dumps(manifest))
    runs = load_runs([sweep])
    assert [(r.name, r.status) for r in runs] == [("0", "completed"), ("1", "pending"), ("2", "failed")]
    assert runs[0].path == sweep / "0" and runs[0].sweep_group == "train-x"
    assert runs[2].error == "SLURM state OUT_OF_MEMORY"
    header, rows = table.run_rows(runs, table.differing_keys([r.config for r in runs]), ["pass@1"])
    assert header == ["run", "job", "status", "eval set", "seed", "pass@1"]
    assert rows[0][3] == "gsm8k/test n=2"
    assert rows[1] == ["1", "?", "pending", "-", "-", "-"] and rows[2][:5] == ["2", "train", "failed", "-", "2"]
    (sweep / "sweep.json").write_text("{not json")
    with pytest.raises(UserError, match="sweep.json is unreadable"):
        load_runs([sweep])


@pytest.mark.reliability  # issue 16: crafted input, crash safety or secrets
def test_a_run_dirs_config_shows_env_interpolations_as_written(tmp_path, monkeypatch):
    # compare reads a run dir as data: ${oc.env:…} would put this machine's secret into compare.md/csv.
    monkeypatch.setenv("SECRET_FOR_TEST", "hunter2")
    path = make_run(tmp_path / "run", recs=records([4] * 4),
                    config={"logger.api_key": "${oc.env:SECRET_FOR_TEST}", "dataset.seed": "${seed}"})
    (run,) = load_runs([path])
    assert run.config["logger.api_key"] == "${oc.env:SECRET_FOR_TEST}" and run.config["dataset.seed"] == 0
    out = tmp_path / "out"
    assert compare.main([str(path), str(make_run(tmp_path / "other", recs=records([5] * 4))), "--out", str(out)]) == 0
    assert not [f for f in out.iterdir() if f.is_file() and "hunter2" in f.read_text(errors="replace")]


def test_a_folder_of_run_dirs_expands(three_runs):
    root, _ = three_runs
    assert sorted(r.name for r in load_runs([root])) == ["base", "grpo", "sft"]


def test_wandb_workspace_without_the_package_is_one_line(three_runs, capsys):
    pytest.importorskip("wandb")
    if importlib.util.find_spec("wandb_workspaces") is not None:
        pytest.skip("wandb-workspaces is installed; building a view needs W&B online")
    root, paths = three_runs
    with pytest.raises(SystemExit) as exc:
        compare.main([str(paths[0]), "--out", str(root / "out"), "--wandb-workspace", "me/project"])
    assert exc.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "error: --wandb-workspace needs the wandb-workspaces package: pip install wandb-workspaces")


def test_not_a_run_dir_is_one_line_exit_2(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    for path in (tmp_path / "empty", tmp_path / "missing"):
        with pytest.raises(SystemExit) as exc:
            compare.main([str(path), "--out", str(tmp_path / "out")])
        assert exc.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err and str(path) in err


def test_compare_cli_subprocess_bad_path(tmp_path):
    result = run_job("compare", str(tmp_path), "--out", str(tmp_path / "out"), timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {tmp_path} is not a run dir (no .hydra/config.yaml or status.json), a sweep dir (no sweep.json) "
        "or a folder of run dirs"]


# --- evaluate adapter=RUN_DIR: the checks that run before any weights load ------------------


def test_evaluate_checkpoint_without_adapter_fails_fast(tmp_path):
    result = run_job("evaluate", f"adapter={tmp_path / 'nothing'}", "logger=none",
                     f"hydra.run.dir={tmp_path / 'run'}", timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: no LoRA adapter")
    assert not (tmp_path / "run" / "status.json").exists()  # stopped before the job started
    assert "checkpoint= is now adapter=" not in result.stderr


def test_evaluate_checkpoint_is_adapters_old_name(tmp_path):
    result = run_job("evaluate", f"checkpoint={tmp_path / 'nothing'}", "logger=none",
                     f"hydra.run.dir={tmp_path / 'run'}", timeout=120)
    assert result.returncode == 2 and "error: no LoRA adapter" in result.stderr.strip().splitlines()[-1]
    assert result.stderr.count("checkpoint= is now adapter=") == 1  # the old name works, with one warning
    both = run_job("evaluate", f"checkpoint={tmp_path / 'a'}", f"adapter={tmp_path / 'b'}", "logger=none",
                   f"hydra.run.dir={tmp_path / 'run'}", timeout=120)
    assert both.returncode == 2 and "disagree" in both.stderr.strip().splitlines()[-1]


def test_evaluate_checkpoint_of_another_base_model_is_refused(tmp_path):
    trained = tmp_path / "trained"
    (trained / "adapter").mkdir(parents=True)
    (trained / "adapter" / "adapter_config.json").write_text("{}")
    (trained / ".hydra").mkdir()
    (trained / ".hydra" / "config.yaml").write_text(
        yaml.safe_dump({"model": {"name_or_path": "Qwen/Qwen2.5-0.5B-Instruct"}}))
    (trained / ".hydra" / "hydra.yaml").write_text(
        yaml.safe_dump({"hydra": {"runtime": {"choices": {"model": "qwen2_5_0_5b_instruct"}}}}))
    result = run_job("evaluate", f"adapter={trained}", "logger=none", f"hydra.run.dir={tmp_path / 'run'}", timeout=120)
    assert result.returncode == 2
    assert "model=qwen2_5_0_5b_instruct" in result.stderr.strip().splitlines()[-1]


# --- slow: the whole job on real smoke runs ----------------------------------------------------


@pytest.fixture(scope="module")
def real_runs(tmp_path_factory):
    def build(root):
        evaluate = run_job("evaluate", "debug=smoke", *SHORT_TASK, "logger=none", f"hydra.run.dir={root / 'base'}")
        if evaluate.returncode:
            return evaluate
        return run_job("train", "debug=smoke", *SHORT_TASK, "algorithm=sft", "logger=none",
                       f"hydra.run.dir={root / 'sft'}")

    root, result = built_once(tmp_path_factory, "compare_real", build)
    assert result.returncode == 0, result.stderr[-3000:]
    return root


@pytest.mark.slow
def test_compare_two_real_smoke_runs(real_runs):
    out = real_runs / "out"
    result = run_job("compare", str(real_runs / "base"), str(real_runs / "sft"), "--out", str(out), timeout=300)
    assert result.returncode == 0, result.stderr
    assert "base" in result.stdout and "sft" in result.stdout and "paired, n=4" in result.stdout
    with open(out / "compare.csv") as f:
        rows = list(csv.DictReader(f))
    summaries = [json.loads((real_runs / name / "summary.json").read_text()) for name in ("base", "sft")]
    for row, summary in zip(rows, summaries):
        assert row["status"] == "completed"
        assert math.isclose(float(row["pass@8"]), summary["pass@8"]["mean"])
    plotted = json.loads((out / "plots.json").read_text())
    steps = [r["step"] for r in map(json.loads, (real_runs / "sft" / "metrics.jsonl").read_text().splitlines())
             if "eval/pass@8" in r]
    assert {name: len(p) for name, p in plotted["curves"]["pass@8"].items()} == {"base": 1, "sft": len(set(steps))}
    for png in ("compare_curves.png", "compare_bars.png"):
        with Image.open(out / png) as image:
            image.verify()


@pytest.mark.slow
def test_evaluate_a_trained_run_dir_on_other_problems_and_n(real_runs):
    run_dir = real_runs / "sft_eval"
    result = run_job("evaluate", "debug=smoke", *SHORT_TASK, f"adapter={real_runs / 'sft'}", "dataset.limit=2",
                     "dataset.sample=random", "eval.num_samples=4", "eval.ks=[1,4]", "logger=none",
                     f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert {"pass@1", "pass@4", "maj@4"} <= set(summary) and summary["pass@4"]["n"] == 2
    # the saved config records it
    assert yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())["adapter"] == str(real_runs / "sft")
    comparison = report.build(load_runs([real_runs / "base", run_dir]), n_resamples=200)
    assert any("different problems" in w for w in comparison.warnings)
    assert all(not d.paired for d in comparison.diffs["sft_eval"])


# --- comparison.learning: did a run learn? ----------------------------------------------------------


def _samples(path, correct_by_problem):
    rows = [{"id": i, "gold": "1", "completions": ["x"] * len(c), "extracted": ["1" if ok else "2" for ok in c],
             "correct": c, "format_ok": c} for i, c in enumerate(correct_by_problem)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_learning_differences_compare_the_first_and_last_eval_of_a_run(tmp_path):
    from reasoning_rl.comparison.learning import learned, learning_differences

    _samples(tmp_path / "samples_step0.jsonl", [[False] * 8] * 40)
    _samples(tmp_path / "samples_step3.jsonl", [[True, False] * 4] * 40)
    _samples(tmp_path / "samples_step6.jsonl", [[True] * 8] * 40)
    (d,) = learning_differences(tmp_path, ["pass@1"], n_resamples=500)
    assert (d.baseline, d.value, d.diff) == (0.0, 1.0, 1.0) and learned([d])
    (same,) = learning_differences(tmp_path, ["pass@1"], baseline=tmp_path / "samples_step6.jsonl", n_resamples=500)
    assert same.diff == 0 and not learned([same])


def test_learning_differences_need_a_step_0_or_a_baseline_of_the_same_problems(tmp_path):
    from reasoning_rl.comparison.learning import learning_differences
    from reasoning_rl.errors import UserError

    _samples(tmp_path / "samples_step6.jsonl", [[True] * 8] * 4)
    with pytest.raises(UserError, match="needs samples_step0.jsonl"):
        learning_differences(tmp_path, ["pass@1"])
    other = _samples(tmp_path / "base.jsonl", [[False] * 8] * 3)
    with pytest.raises(UserError, match="different problems"):
        learning_differences(tmp_path, ["pass@1"], baseline=other)
    base = _samples(tmp_path / "base.jsonl", [[False] * 8] * 4)
    (d,) = learning_differences(tmp_path, ["pass@1"], baseline=base, n_resamples=200)
    assert d.diff == 1.0


# --- reasoning boundary: pass@K against K, problems gained and lost, distinct answers, lineage -------


def graded(answers_by_problem, gold="1"):
    """samples.jsonl records from extracted answers (None: unparsable); correct iff equal to gold."""
    return [{"id": pid, "gold": gold, "completions": ["x"] * len(answers), "extracted": answers,
             "correct": [a == gold for a in answers], "format_ok": [False] * len(answers)}
            for pid, answers in answers_by_problem.items()]


def passk_summary(values):
    """{pass@K: …} for K = 1, 2, 4, …: mean values[i], an asymmetric band so low and high can't be swapped."""
    return {f"pass@{2**i}": {"mean": v, "ci_low": v - 0.05, "ci_high": v + 0.1, "n": 4} for i, v in enumerate(values)}


def test_compare_draws_pass_at_k_against_k_on_a_log2_axis(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    recs = records([N, 0, 3, 8])
    base = make_run(tmp_path / "base", recs=recs, summary=passk_summary([0.2, 0.3, 0.45, 0.6]))
    rl = make_run(tmp_path / "rl", recs=recs, summary=passk_summary([0.4, 0.45, 0.5, 0.52]))
    figures = []
    monkeypatch.setattr(plt, "close", lambda fig: figures.append(fig))
    out = tmp_path / "out"
    assert compare.main([str(base), str(rl), "--out", str(out), "--resamples", "100"]) == 0
    plotted = json.loads((out / "plots.json").read_text())["passk"]
    for name, path in (("base", base), ("rl", rl)):
        summary = json.loads((path / "summary.json").read_text())
        assert plotted[name] == [[int(m.split("@")[1]), s["mean"], s["ci_low"], s["ci_high"]]
                                 for m, s in summary.items()]
    (ax,) = next(f for f in figures if f.axes[0].get_xscale() == "log").axes
    assert [list(line.get_xdata()) for line in ax.get_lines()] == [[1, 2, 4, 8]] * 2
    assert [list(line.get_ydata()) for line in ax.get_lines()][1] == [0.4, 0.45, 0.5, 0.52]
    with Image.open(out / "compare_passk.png") as image:
        image.verify()
    assert "![pass@K against K](compare_passk.png)" in (out / "compare.md").read_text()


def test_reasoning_boundary_counts_gained_and_lost_problems_and_distinct_answers(tmp_path, capsys):
    base = make_run(tmp_path / "base", recs=graded({
        "p0": ["1", "2", "2", None], "p1": ["1", "1", "1", "1"], "p2": ["3", "1", None, None],
        "p3": ["2", "3", "4", None]}))
    rl = make_run(tmp_path / "rl", recs=graded({
        "p0": ["2", "2", "2", "2"], "p1": ["1", "1", "1", None], "p2": [None] * 4, "p3": ["4", "4", "1", "4"]}))
    out = tmp_path / "out"
    assert compare.main([str(base), str(rl), "--out", str(out), "--resamples", "100"]) == 0
    with open(out / "compare_boundary.csv") as f:
        (row,) = list(csv.DictReader(f))
    # base solves p0 p1 p2, rl solves p1 p3: p3 gained, p0 and p2 lost
    assert (row["problems"], row["solved_baseline"], row["solved_run"]) == ("4", "3", "2")
    assert (row["gained"], row["lost"], row["gained_ids"], row["lost_ids"]) == ("1", "2", "p3", "p0;p2")
    # distinct non-None answers: base 2, 1, 2, 3 -> 2.0; rl 1, 1, 0, 2 -> 1.0
    assert float(row["distinct_answers_baseline"]) == 2.0 and float(row["distinct_answers_run"]) == 1.0
    assert row["n_baseline"] == row["n_run"] == "4" and row["note"] == ""
    md = (out / "compare.md").read_text()
    assert "## Reasoning boundary (vs the baseline `base`)" in md
    assert "| rl | 4 | 4 | 3 | 2 | 1 | 2 | p3 | p0, p2 | 2.00 | 1.00 |  |" in md
    assert "reasoning boundary vs the baseline base" in capsys.readouterr().out


def test_reasoning_boundary_refuses_other_problems_and_flags_another_n(tmp_path):
    from reasoning_rl.comparison.boundary import compare_boundary, table_rows

    base = graded({"p0": ["1", "2"], "p1": ["2", "2"]})
    other = compare_boundary(base, graded({"p0": ["1", "1"], "q9": ["1", "1"]}), "other")
    assert other.problems is None and other.solved_run is None and not other.gained
    assert other.note == "different problems (2 and 2, 1 in common): not compared"
    more = compare_boundary(base, graded({"p0": ["2"] * 4, "p1": ["2", "2", "1", None]}), "more")
    assert (more.n_baseline, more.n_run, more.gained, more.lost) == ("2", "4", ["p1"], ["p0"])
    assert more.note.startswith("N differs (2 vs 4)")
    runs = load_runs([make_run(tmp_path / "a", recs=records([N, 0])),
                      make_run(tmp_path / "b", recs=records([N], ids=["x"]))])
    header, rows = table_rows(runs[0], report.build(runs, n_resamples=50).boundaries)
    assert rows[0][header.index("gained")] == "-" and "not compared" in rows[0][-1]


def test_lineage_from_init_from_and_provenance(tmp_path):
    base = make_run(tmp_path / "base", recs=records([N, 0]))
    sft = make_run(tmp_path / "sft", job="train", recs=records([N, 0]),
                   config={"algorithm.name": "sft", "init_from": None})
    # grpo: only the config says where it started (an adapter inside sft's run dir); dpo: only provenance
    grpo = make_run(tmp_path / "grpo", job="train", recs=records([N, N]),
                    config={"algorithm.name": "grpo", "init_from": str(sft / "checkpoints" / "step-4")})
    dpo = make_run(tmp_path / "dpo", job="train", recs=records([0, N]), config={"algorithm.name": "dpo"})
    (dpo / "provenance.json").write_text(json.dumps({"git_sha": "abc", "parent": {
        "run_dir": "/elsewhere/outputs/train/old_sft", "adapter": "/elsewhere/outputs/train/old_sft/adapter",
        "git_sha": "def", "algorithm": "sft", "model": "toy"}}))
    (sft / "provenance.json").write_text(json.dumps({"git_sha": "abc", "parent": None}))
    comparison = report.build(load_runs([base, sft, grpo, dpo]), n_resamples=50)
    header, rows = comparison.run_table()
    assert header[:3] == ["run", "job", "from"] and "init_from" not in header
    assert {r[0]: r[2] for r in rows} == {"base": "-", "sft": "-", "grpo": "sft", "dpo": "train/old_sft"}
    assert report.lineage_lines(comparison) == ["lineage: toy → sft → grpo", "lineage: train/old_sft → dpo"]
    out = tmp_path / "out"
    out.mkdir()
    files = report.write(comparison, out)
    assert "- lineage: toy → sft → grpo" in files["compare.md"].read_text()
    with open(out / "compare.csv") as f:
        assert [r["from"] for r in csv.DictReader(f)] == ["", "", "sft", "train/old_sft"]
    # without any warm start the table keeps its old columns
    plain = report.build(load_runs([base, sft]), n_resamples=50)
    assert plain.run_table()[0][:3] == ["run", "job", "status"] and plain.chains == []
