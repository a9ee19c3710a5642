"""W&B logging: env-var precedence, system metrics, sample tables, artifacts, images, job types and flat
config — read back from the offline run's own transaction log (reasoning_rl/tracking/offline_records.py)."""

import json
import time

import pytest
import wandb

from reasoning_rl.data.base import Problem
from reasoning_rl.errors import ConfigError
from reasoning_rl.tracking.offline_records import offline_run_files, read_records, summarize_records
from reasoning_rl.tracking.run_dir import RunDir, read_jsonl
from reasoning_rl.tracking.tracker import (
    SAMPLE_COLUMNS,
    STEP_METRIC,
    Tracker,
    check_logger_config,
    flatten_config,
    sample_rows,
    wandb_init_kwargs,
    wandb_settings_kwargs,
)
from tests.helpers import SHORT_TASK, built_once, run_job
from tests.test_config import compose_resolved

WANDB_ENV = ("WANDB_MODE", "WANDB_PROJECT", "WANDB_ENTITY")


@pytest.fixture
def clean_env(monkeypatch):
    for name in WANDB_ENV:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_logger_defaults_without_env(clean_env):
    logger = compose_resolved("train", []).logger
    assert (logger.mode, logger.project, logger.entity) == ("offline", "reasoning-rl", None)
    assert logger.system_metrics is True and logger.table_rows > 0


@pytest.mark.parametrize("job", ["train", "evaluate"])
def test_exported_wandb_variables_become_the_defaults(clean_env, job):
    clean_env.setenv("WANDB_MODE", "disabled")
    clean_env.setenv("WANDB_PROJECT", "proj-from-env")
    clean_env.setenv("WANDB_ENTITY", "team-from-env")
    cfg = compose_resolved(job, [])
    kwargs = wandb_init_kwargs(cfg.logger, {"a": 1}, run_dir="/tmp/x", run_id="abc", job_type=cfg.job_name)
    assert (kwargs["mode"], kwargs["project"], kwargs["entity"]) == ("disabled", "proj-from-env", "team-from-env")
    assert kwargs["job_type"] == job


def test_an_explicit_logger_value_beats_the_environment(clean_env):
    clean_env.setenv("WANDB_MODE", "disabled")
    clean_env.setenv("WANDB_PROJECT", "proj-from-env")
    clean_env.setenv("WANDB_ENTITY", "team-from-env")
    cfg = compose_resolved("train", ["logger.mode=offline", "logger.project=explicit", "logger.entity=me",
                                     "logger.job_type=custom"])
    kwargs = wandb_init_kwargs(cfg.logger, {}, run_dir="/tmp/x", run_id="abc", job_type="train")
    assert (kwargs["mode"], kwargs["project"], kwargs["entity"]) == ("offline", "explicit", "me")
    assert kwargs["job_type"] == "custom"


def test_bad_mode_from_env_or_config_is_a_config_error(clean_env):
    clean_env.setenv("WANDB_MODE", "sometimes")
    with pytest.raises(ConfigError, match="WANDB_MODE"):
        check_logger_config(compose_resolved("train", []).logger)
    clean_env.setenv("WANDB_MODE", "dryrun")  # W&B's old name for offline
    assert wandb_init_kwargs(compose_resolved("train", []).logger, {}, run_dir="/x", run_id="a",
                             job_type=None)["mode"] == "offline"
    with pytest.raises(ConfigError, match="table_rows"):
        check_logger_config(compose_resolved("train", ["logger.table_rows=-1"]).logger)
    with pytest.raises(ConfigError, match="system_metrics_interval_s"):
        check_logger_config(compose_resolved("train", ["logger.system_metrics_interval_s=0"]).logger)


def test_config_is_flattened_to_dotted_keys():
    flat = flatten_config({"hparams": {"learning_rate": 1e-3, "lora": {"r": 8}}, "algorithm": {"name": "grpo"},
                           "eval": {"ks": [1, 8]}, "seed": 0, "empty": {}})
    assert flat == {"hparams.learning_rate": 1e-3, "hparams.lora.r": 8, "algorithm.name": "grpo",
                    "eval.ks": [1, 8], "seed": 0, "empty": {}}


def test_system_metrics_on_by_default_with_a_knob_to_turn_off():
    on = compose_resolved("train", []).logger
    off = compose_resolved("train", ["logger.system_metrics=false"]).logger
    assert wandb_settings_kwargs(on)["x_disable_stats"] is False
    assert wandb_settings_kwargs(off)["x_disable_stats"] is True
    for cfg in (on, off):  # W&B accepts them
        assert wandb.Settings(**wandb_settings_kwargs(cfg)).x_disable_stats is (cfg is off)


def test_sample_rows_are_capped():
    records = [{"id": f"p{i}", "gold": "3", "completions": ["a", "b", "c"], "extracted": ["3", "1", None],
                "correct": [True, False, False], "format_ok": [True, True, False]} for i in range(5)]
    problems = [Problem(id="p0", messages=[{"role": "system", "content": "s"}, {"role": "user", "content": "1+2?"}],
                        gold="3")]
    first = sample_rows(records, problems, max_rows=64, per_problem=1)
    assert len(first) == 5 and len(first[0]) == len(SAMPLE_COLUMNS)
    assert first[0] == ["p0", "1+2?", 0, "a", "3", "3", True, True] and first[1][1] == ""
    assert len(sample_rows(records, max_rows=4, per_problem=None)) == 4
    every = sample_rows(records, max_rows=None, per_problem=None)
    assert len(every) == 15 and every[2][2:5] == [2, "c", None]


def _offline_run(tmp_path, logger_overrides, log=lambda tracker: None):
    logger = compose_resolved("evaluate", ["logger.system_metrics_interval_s=0.5", *logger_overrides]).logger
    run_dir = RunDir(tmp_path / "run")
    tracker = Tracker(run_dir, logger, {"hparams": {"learning_rate": 0.5}, "algorithm": {"name": "sft"}},
                      job_type="evaluate")
    log(tracker)
    tracker.finish()
    (path,) = offline_run_files(run_dir.path)
    seen = summarize_records(read_records(path, wait_s=30))
    assert seen["run"] is not None, "the offline run's record was not written"
    return run_dir, seen


def test_offline_run_record_honours_env_and_flat_config(tmp_path, clean_env):
    clean_env.setenv("WANDB_PROJECT", "xyz-env-project")
    clean_env.setenv("WANDB_MODE", "offline")
    problems = [Problem(id="q1", messages=[{"role": "user", "content": "What is 2+2?"}], gold="4")]
    records = [{"id": "q1", "gold": "4", "completions": ["four", "4"], "extracted": [None, "4"],
                "correct": [False, True], "format_ok": [False, True]}]

    def log(tracker):
        tracker.log({"eval/pass@1": 0.5}, step=3)
        tracker.log_samples(records, 3, problems)

    run_dir, seen = _offline_run(tmp_path, [], log)
    assert seen["run"].project == "xyz-env-project" and seen["run"].job_type == "evaluate"
    assert seen["config"]["hparams.learning_rate"] == 0.5 and seen["config"]["algorithm.name"] == "sft"
    assert "hparams" not in seen["config"]
    (table_row,) = [h for h in seen["history"] if "eval/samples/_type" in h]
    assert table_row["eval/samples/_type"] == "table-file" and table_row[STEP_METRIC] == 3
    table = json.loads(
        (next(run_dir.path.glob("wandb/offline-run-*")) / "files" / table_row["eval/samples/path"]).read_text())
    assert (table["columns"] == SAMPLE_COLUMNS
            and table["data"] == [["q1", "What is 2+2?", 0, "four", None, "4", False, False]])
    # metrics.jsonl is unchanged: the scalar only, no media
    (row,) = read_jsonl(run_dir.metrics_path)
    assert set(row) == {"step", "time", "eval/pass@1"} and (row["step"], row["eval/pass@1"]) == (3, 0.5)


def test_offline_run_without_system_metrics_or_table(tmp_path, clean_env):
    records = [{"id": "q1", "gold": "4", "completions": ["4"], "extracted": ["4"], "correct": [True],
                "format_ok": [True]}]

    def log(tracker):
        tracker.log_samples(records, 0)
        time.sleep(1.5)

    _, seen = _offline_run(tmp_path, ["logger.system_metrics=false", "logger.table_rows=0"], log)
    assert seen["stats"] == 0
    assert not [h for h in seen["history"] if "eval/samples/_type" in h]


# --- one smoke train run, read back by the assertions below -------------------------------------------

SMOKE_PROJECT = "xyz-smoke-project"


@pytest.fixture(scope="module")
def smoke_train(tmp_path_factory):
    def build(folder):
        return run_job("train", "debug=smoke", *SHORT_TASK, "eval.limit=2", f"hydra.run.dir={folder / 'run'}",
                       "algorithm.args.log_completions=true", env={"WANDB_PROJECT": SMOKE_PROJECT})

    folder, result = built_once(tmp_path_factory, "wandb_smoke_train", build)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = folder / "run"
    (path,) = offline_run_files(run_dir)
    return run_dir, summarize_records(read_records(path, wait_s=30))


@pytest.mark.slow
def test_smoke_train_run_record(smoke_train):
    run_dir, seen = smoke_train
    assert seen["run"].project == SMOKE_PROJECT and seen["run"].job_type == "train"
    assert seen["run"].run_id == (run_dir / "wandb_run_id").read_text().strip()
    assert seen["config"]["algorithm.name"] == "grpo" and "hparams.learning_rate" in seen["config"]
    assert seen["config"]["logger.project"] == SMOKE_PROJECT and "hparams" not in seen["config"]
    assert seen["stats"] > 0  # system metrics, on by default (sampled every 15 s; the run takes longer)


@pytest.mark.slow
def test_smoke_train_logs_a_sample_table_per_eval(smoke_train):
    run_dir, seen = smoke_train
    eval_steps = [r["step"] for r in read_jsonl(run_dir / "metrics.jsonl") if "eval/pass@1" in r]
    tables = [h for h in seen["history"] if h.get("eval/samples/_type") == "table-file"]
    assert eval_steps and sorted(h[STEP_METRIC] for h in tables) == sorted(eval_steps)
    last = max(tables, key=lambda h: h[STEP_METRIC])
    files = next(run_dir.glob("wandb/offline-run-*")) / "files"
    table = json.loads((files / last["eval/samples/path"]).read_text())
    samples = read_jsonl(run_dir / f"samples_step{last[STEP_METRIC]}.jsonl")
    assert table["columns"] == SAMPLE_COLUMNS
    assert [row[0] for row in table["data"]] == [s["id"] for s in samples]
    assert [row[3] for row in table["data"]] == [s["completions"][0] for s in samples]
    assert [row[6] for row in table["data"]] == [s["correct"][0] for s in samples]
    # metrics.jsonl keeps its format: numbers (or null) per step, no media
    for row in read_jsonl(run_dir / "metrics.jsonl"):
        assert isinstance(row["step"], int)
        assert all(v is None or isinstance(v, (int, float)) for v in row.values()), row


@pytest.mark.slow
def test_smoke_train_forwards_trls_completion_logs(smoke_train):
    """TRL writes them to W&B only through its report_to, which the tracker replaces: they are forwarded."""
    run_dir, seen = smoke_train
    written = sorted((run_dir / "checkpoints" / "completions").glob("completions_*.parquet"))
    tables = [h for h in seen["history"] if h.get("train/completions/_type") == "table-file"]
    steps = [r["step"] for r in read_jsonl(run_dir / "metrics.jsonl") if "train/loss" in r]
    assert written and len(tables) == len(written) == len(steps)
    assert sorted(h[STEP_METRIC] for h in tables) == steps
    files = next(run_dir.glob("wandb/offline-run-*")) / "files"
    table = json.loads((files / tables[-1]["train/completions/path"]).read_text())
    assert {"prompt", "completion", "advantage"} <= set(table["columns"]) and table["data"]


@pytest.mark.slow
def test_smoke_train_logs_artifacts_and_the_curve_image(smoke_train):
    run_dir, seen = smoke_train
    run_id = seen["run"].run_id
    artifacts = {a.name: a for a in seen["artifacts"]}
    adapter = artifacts[f"adapter-{run_id}"]
    assert adapter.type == "model"
    adapter_files = {m.path for m in adapter.manifest.contents}
    assert {f"adapter/{p.name}" for p in (run_dir / "adapter").iterdir() if p.is_file()} <= adapter_files
    assert "adapter/adapter_model.safetensors" in adapter_files
    results = artifacts[f"results-{run_id}"]
    assert {m.path for m in results.manifest.contents} == {"summary.json", "samples.jsonl"}
    images = [h for h in seen["history"] if h.get("eval/curves/_type") == "image-file"]
    assert len(images) == 1 and images[0]["eval/curves/format"] == "png"


def test_evaluate_job_logs_its_table_and_results_artifact(tmp_path):
    run_dir = tmp_path / "run"
    result = run_job("evaluate", "debug=smoke", *SHORT_TASK, "dataset.limit=2", "eval.num_samples=2", "eval.ks=[1,2]",
                     "generation.max_new_tokens=4", "logger.table_completions=null", "logger.table_rows=3",
                     f"hydra.run.dir={run_dir}", env={"WANDB_PROJECT": "xyz-eval-project"}, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    (path,) = offline_run_files(run_dir)
    seen = summarize_records(read_records(path, wait_s=30))
    assert seen["run"].project == "xyz-eval-project" and seen["run"].job_type == "evaluate"
    (table_row,) = [h for h in seen["history"] if h.get("eval/samples/_type") == "table-file"]
    files = next(run_dir.glob("wandb/offline-run-*")) / "files"
    table = json.loads((files / table_row["eval/samples/path"]).read_text())
    samples = read_jsonl(run_dir / "samples.jsonl")
    expected = [(s["id"], i, c) for s in samples for i, c in enumerate(s["completions"])][:3]
    assert [(row[0], row[2], row[3]) for row in table["data"]] == expected  # all completions, 3 rows at most
    assert all(row[1] for row in table["data"])  # the problem text
    (results,) = [a for a in seen["artifacts"] if a.name == f"results-{seen['run'].run_id}"]
    assert {m.path for m in results.manifest.contents} == {"summary.json", "samples.jsonl"}


def test_compare_logs_its_pngs_tables_and_an_artifact(tmp_path, clean_env, capsys):
    from reasoning_rl import compare
    from tests.test_compare import N, make_run, records

    clean_env.setenv("WANDB_PROJECT", "xyz-compare")
    base = make_run(tmp_path / "base", recs=records([N] * 5 + [0] * 11))
    sft = make_run(tmp_path / "sft", job="train", recs=records([N] * 9 + [0] * 7), config={"algorithm.name": "sft"})
    out = tmp_path / "out"
    assert compare.main([str(base), str(sft), "--out", str(out), "--resamples", "200", "--wandb"]) == 0
    assert "W&B run: " in capsys.readouterr().out
    (path,) = offline_run_files(out)
    seen = summarize_records(read_records(path, wait_s=30))
    assert seen["run"].project == "xyz-compare" and seen["run"].job_type == "compare"
    pngs = sorted(p.stem.removeprefix("compare_") for p in out.glob("compare_*.png"))
    images = sorted(k.split("/")[1] for h in seen["history"] for k, v in h.items() if v == "image-file")
    assert pngs and images == pngs
    tables = {k.rsplit("/", 1)[0] for h in seen["history"] for k, v in h.items() if v == "table-file"}
    assert {"compare/runs", "compare/paired"} <= tables
    artifact = {a.name: a for a in seen["artifacts"]}[f"comparison-{seen['run'].run_id}"]
    assert {"compare.md", "compare.csv", "compare_paired.csv"} <= {m.path for m in artifact.manifest.contents}


def test_compare_without_wandb_starts_no_run(tmp_path, clean_env):
    from reasoning_rl import compare
    from tests.test_compare import N, make_run, records

    base = make_run(tmp_path / "base", recs=records([N] * 5 + [0] * 11))
    assert compare.main([str(base), "--out", str(tmp_path / "out"), "--resamples", "200"]) == 0
    assert not (tmp_path / "out" / "wandb").exists()
