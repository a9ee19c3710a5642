import json
import os

import pytest

from reasoning_rl.cli import output_dir_problem
from reasoning_rl.errors import UserError
from reasoning_rl.tracking import provenance
from reasoning_rl.tracking.redact import REDACTED, redact_config, redact_hydra_dir, redact_override
from reasoning_rl.tracking.run_dir import RunDir, read_jsonl


def test_secret_keys_are_redacted_but_numbers_kept(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_abcdefghijklmnop")
    cfg = {
        "logger": {"api_key": "0123456789abcdef", "project": "p"},
        "generation": {"max_new_tokens": 512},
        "model": {"name_or_path": "x", "note": "token is hf_abcdefghijklmnop"},
        "my_secret": "s3cr3t-value",
    }
    out = redact_config(cfg)
    assert out["logger"]["api_key"] == REDACTED and out["logger"]["project"] == "p"
    assert out["generation"]["max_new_tokens"] == 512
    assert "hf_abcdefghijklmnop" not in json.dumps(out)
    assert out["my_secret"] == REDACTED


def test_redact_override():
    assert redact_override("+logger.api_key=abc123") == f"+logger.api_key={REDACTED}"
    assert redact_override("generation.max_new_tokens=16") == "generation.max_new_tokens=16"


def test_redact_hydra_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "wandbsecretvalue123")
    (tmp_path / "config.yaml").write_text("logger:\n  api_key: abcdefgh12\n  note: wandbsecretvalue123\n")
    (tmp_path / "overrides.yaml").write_text("- +logger.api_key=abcdefgh12\n")
    (tmp_path / "hydra.yaml").write_text("hydra:\n  overrides:\n    task:\n    - +logger.api_key=abcdefgh12\n")
    redact_hydra_dir(tmp_path)
    text = "".join(p.read_text() for p in tmp_path.glob("*.yaml"))
    assert "abcdefgh12" not in text and "wandbsecretvalue123" not in text
    assert REDACTED in text


def test_run_dir_metrics_and_atomic_summary(tmp_path):
    run = RunDir(tmp_path / "run")
    run.append_metrics({"eval/pass@8": 0.5}, step=0)
    run.append_metrics({"eval/pass@8": float("nan")}, step=10)
    rows = read_jsonl(run.metrics_path)
    assert [r["step"] for r in rows] == [0, 10] and rows[1]["eval/pass@8"] is None
    run.write_summary({"pass@8": {"mean": 0.5}})
    assert json.loads(run.summary_path.read_text())["pass@8"]["mean"] == 0.5
    assert not list(run.path.glob(".*.tmp"))


def test_unwritable_run_dir_is_a_user_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(UserError, match="not writable"):
        RunDir(blocker / "run")


def test_cli_preflight_catches_unwritable_output(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert output_dir_problem([f"hydra.run.dir={blocker}/run"]) is not None
    assert output_dir_problem([f"hydra.run.dir={tmp_path}/ok/" + "${now:%H}"]) is None


def test_provenance_records_versions_and_seed():
    info = provenance.collect(seed=7, overrides=["+logger.api_key=abcdefgh12"])
    assert info["seed"] == 7
    assert info["packages"]["torch"] and info["packages"]["transformers"]
    assert info["overrides"] == [f"+logger.api_key={REDACTED}"]
    assert "sha" in info["git"]


def test_only_rank_zero_writes_the_run_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    run = RunDir(tmp_path / "run")
    run.set_status("running")
    run.append_metrics({"eval/pass@8": 0.5}, step=0)
    run.write_summary({"pass@8": {"mean": 0.5}})
    run.write_samples([{"id": "x"}])
    assert sorted(p.name for p in run.path.iterdir()) == []


def test_atomic_writes_use_their_own_temp_file_and_clean_up(tmp_path):
    from reasoning_rl.tracking.run_dir import write_json_atomic, write_jsonl_atomic

    run = RunDir(tmp_path / "run")
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    (run.path / ".status.json.tmp").symlink_to(victim)  # a fixed temp name would be written through
    (run.path / ".summary.json.tmp").mkdir()  # or fail on a leftover
    run.set_status("running")
    run.write_summary({"pass@8": {"mean": 0.5}})
    assert victim.read_text() == "untouched"
    assert json.loads(run.summary_path.read_text())["pass@8"]["mean"] == 0.5
    umask = os.umask(0o022)
    os.umask(umask)
    assert run.summary_path.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600

    def rows():
        yield {"id": "a"}
        raise RuntimeError("killed mid-write")

    before = sorted(p.name for p in run.path.iterdir())
    with pytest.raises(RuntimeError):
        write_jsonl_atomic(run.samples_path, rows())
    with pytest.raises(ValueError):  # not JSON: the encoder gives up part-way through the file
        write_json_atomic(run.summary_path, {"x": object()})
    assert sorted(p.name for p in run.path.iterdir()) == before  # no temp file left behind
    assert json.loads(run.summary_path.read_text())["pass@8"]["mean"] == 0.5  # the old summary stands


def test_read_jsonl_skips_a_truncated_last_line_only(tmp_path, caplog):
    from reasoning_rl.errors import DataError

    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 0}\n{"step": 1}\n{"step": 2, "eval/pa')  # killed while appending
    with caplog.at_level("WARNING"):
        assert read_jsonl(path) == [{"step": 0}, {"step": 1}]
    assert "metrics.jsonl:3" in caplog.text and "truncated" in caplog.text
    path.write_text('{"step": 0}\n{"step": 1\n{"step": 2}\n')
    with pytest.raises(DataError, match=r"metrics.jsonl:2 is not JSON"):
        read_jsonl(path)


def test_eval_curve_skips_step_0_only_when_told():
    from types import SimpleNamespace

    from reasoning_rl.callbacks.eval_curves import EvalCurveCallback

    for at_start, expected in ((True, [0, 2, 3]), (False, [2, 3])):
        steps = []
        callback = EvalCurveCallback(lambda model, step: steps.append(step), every_steps=2, at_start=at_start)
        state = SimpleNamespace(global_step=0)
        callback.on_train_begin(None, state, None)
        for state.global_step in (1, 2, 3):
            callback.on_step_end(None, state, None)
        callback.on_train_end(None, state, None)
        assert steps == expected
