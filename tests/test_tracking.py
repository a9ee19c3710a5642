import json
import os
import time

import pytest

from reasoning_rl.cli import output_dir_problem
from reasoning_rl.errors import UserError
from reasoning_rl.tracking import provenance
from reasoning_rl.tracking.redact import REDACTED, redact_config, redact_hydra_dir, redact_override
from reasoning_rl.tracking.run_dir import RunDir, read_jsonl
from tests.helpers import REPO


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


@pytest.mark.reliability  # issue 16: crafted input, crash safety or secrets
def test_redact_override():
    assert redact_override("+logger.api_key=abc123") == f"+logger.api_key={REDACTED}"
    assert redact_override("generation.max_new_tokens=16") == "generation.max_new_tokens=16"


@pytest.mark.reliability  # issue 16: crafted input, crash safety or secrets
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


@pytest.mark.reliability  # issue 16: crafted input, crash safety or secrets
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


@pytest.mark.reliability  # issue 16: crafted input, crash safety or secrets
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


# ---- redaction: what counts as a secret, and what must survive

SECRET_OVERRIDES = [  # (override, the secret it carries)
    ("+logger.api_key=12345", "12345"),  # a number is a secret too
    ("+logger.api_key=abc-def-ghi", "abc-def-ghi"),
    ("+logger.api_key='quoted value'", "quoted value"),
    ("+HF_TOKEN=hf_abcdef", "hf_abcdef"),
    ("+db.password=hunter22", "hunter22"),
    ("+db.passwd=hunter23", "hunter23"),
    ("+db.pwd=hunter24", "hunter24"),
    ("+ssh.passphrase=open-sesame", "open-sesame"),
    ("+http.authorization=Basic-dXNlcjpw", "Basic-dXNlcjpw"),
    ("+http.auth=user:pw9", "user:pw9"),
    ("+gcp.credentials=c0ffee", "c0ffee"),
    ("+http.cookie=session42", "session42"),
    ("+sentry.dsn=https://k3y@sentry.example/1", "https://k3y@sentry.example/1"),
    ("+client.clientSecret=s3cr3t", "s3cr3t"),
    ("+env.PGPASSWORD=pg-pass-1", "pg-pass-1"),
    ("model.name_or_path=https://user:tok3n@hub.example/m", "tok3n"),  # a URL's password, any key
    ("+logger.base_url=http://:t0ken@host:8080/x", "t0ken"),
    ("+logger.base_url=https\\://me\\:esc4ped@host", "esc4ped"),  # as a Hydra sweep writes it
    ("+http.url=https://host/api?token=qs-secret&page=2", "qs-secret"),  # a query parameter
    ("hydra.launcher.setup=[export WANDB_API_KEY=env-secret-1]", "env-secret-1"),  # NAME=value inside
    ("+http.headers=[Bearer beartok.en-9]", "beartok.en-9"),
]
KEPT_OVERRIDES = [
    "generation.max_new_tokens=16", "dataset.tokenizer=gpt2", "+stats.num_tokens=3", "checkpoint.keep=2",
    "+model.num_key_value_heads=2", "+model.pad_token_id=0", "+model.eos_token=</s>", "+x.sort_keys=true",
    "dataset.max_prompt_tokens=1024", "+logger.api_key=null", "+logger.api_key=${oc.env:WANDB_API_KEY}",
    "+a.author=ada", "+a.keys=[1,2]", "model.name_or_path=https://hub.example/org/model",
    "+x.token_ids=[1,2]", "+x.use_auth_token=true",
]


@pytest.mark.reliability  # issue 16: crafted input, crash safety or secrets
@pytest.mark.parametrize("override,secret", SECRET_OVERRIDES)
def test_secret_overrides_are_redacted_everywhere(override, secret):
    key, _, value = override.partition("=")
    assert secret not in redact_override(override)
    assert secret not in redact_override(override, secrets=[])  # without the literal-value net too
    # The same value in a saved config (under its key) and in free text (a log line, override_dirname).
    config = {"hydra": {"job": {"override_dirname": f"{override},seed=0"}}, key.lstrip("+").split(".")[-1]: value}
    assert secret not in json.dumps(redact_config(config, secrets=[]))
    from reasoning_rl.tracking.redact import redact_text

    assert secret not in redact_text(f"launched with {override} on host", secrets=[])


@pytest.mark.reliability  # issue 16: crafted input, crash safety or secrets
@pytest.mark.parametrize("override", KEPT_OVERRIDES)
def test_settings_that_only_look_secret_are_kept(override):
    from reasoning_rl.tracking.redact import redact_text

    assert redact_override(override, secrets=[]) == override
    assert redact_text(f"cmd {override} done", secrets=[]) == f"cmd {override} done"
    key, _, value = override.partition("=")
    assert redact_config({key.lstrip("+").split(".")[-1]: value}, secrets=[]) == {key.lstrip("+").split(".")[-1]: value}


@pytest.mark.reliability  # issue 16: crafted input, crash safety or secrets
def test_numbers_under_secret_keys_are_redacted_counts_are_not():
    out = redact_config({"logger": {"api_key": 12345, "project": "p"}, "auth": {"password": 42, "user": "u"},
                         "generation": {"max_new_tokens": 512}, "checkpoint": {"keep": 2},
                         "model": {"num_key_value_heads": 2, "pad_token_id": 0}, "flag": {"use_auth_token": True}},
                        secrets=[])
    assert out["logger"] == {"api_key": REDACTED, "project": "p"} and out["auth"] == {"password": REDACTED, "user": "u"}
    assert out["generation"]["max_new_tokens"] == 512 and out["checkpoint"]["keep"] == 2
    assert out["model"] == {"num_key_value_heads": 2, "pad_token_id": 0} and out["flag"]["use_auth_token"] is True


@pytest.mark.reliability  # issue 16: crafted input, crash safety or secrets
def test_environment_paths_are_not_taken_for_secrets(monkeypatch, tmp_path):
    from reasoning_rl.tracking.redact import env_secrets, redact_text

    creds = tmp_path / "credentials.json"
    creds.write_text("{}")
    monkeypatch.setenv("PWD", str(tmp_path))  # `pwd` names a password in a config, not in the environment
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(creds))  # a file's path, not its content
    monkeypatch.setenv("MY_SERVICE_TOKEN", "tok-value-123456")
    assert "tok-value-123456" in env_secrets()
    assert str(tmp_path) not in env_secrets() and str(creds) not in env_secrets()
    assert redact_text(f"run dir {tmp_path}/run; token tok-value-123456") == f"run dir {tmp_path}/run; token {REDACTED}"


@pytest.mark.reliability  # issue 16: crafted input, crash safety or secrets
def test_redact_hydra_dir_numbers_urls_and_derived_strings(tmp_path):
    (tmp_path / "config.yaml").write_text("logger:\n  api_key: 987654\n  url: https://me:urlpass9@wandb.example\n"
                                          "generation:\n  max_new_tokens: 987654\n")
    (tmp_path / "overrides.yaml").write_text("- +logger.api_key=987654\n- generation.max_new_tokens=987654\n")
    (tmp_path / "hydra.yaml").write_text(
        "hydra:\n  job:\n    override_dirname: +logger.api_key=987654,generation.max_new_tokens=987654\n"
        "  overrides:\n    task:\n    - +logger.api_key=987654\n    - generation.max_new_tokens=987654\n")
    redact_hydra_dir(tmp_path)
    import yaml

    config = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert config["logger"]["api_key"] == REDACTED and "urlpass9" not in config["logger"]["url"]
    assert config["generation"]["max_new_tokens"] == 987654  # the same digits, not a secret here
    assert yaml.safe_load((tmp_path / "overrides.yaml").read_text()) == [
        f"+logger.api_key={REDACTED}", "generation.max_new_tokens=987654"]
    hydra = yaml.safe_load((tmp_path / "hydra.yaml").read_text())["hydra"]
    assert hydra["job"]["override_dirname"] == f"+logger.api_key={REDACTED},generation.max_new_tokens=987654"
    assert hydra["overrides"]["task"] == [f"+logger.api_key={REDACTED}", "generation.max_new_tokens=987654"]


@pytest.mark.reliability  # issue 16: crafted input, crash safety or secrets
def test_submitit_scripts_and_logs_are_redacted_pickles_made_private(tmp_path):
    from reasoning_rl.launching.job_output import redact_submitit_files

    job = tmp_path / ".submitit" / "123_0"
    job.mkdir(parents=True)
    (job / "123_submission.sh").write_text("#!/bin/bash\n#SBATCH --job-name=train\nexport HF_TOKEN=hf-in-setup-1\n"
                                           "srun python -u -m submitit.core._submit /x\n")
    (job / "123_0_log.out").write_bytes(b"\xff not utf-8 \xfe; +logger.api_key=cli-secret-7 given\n")
    (job / "123_0_log.err").write_text("error: bad config\n")
    (job / "123_submitted.pkl").write_bytes(b"pickle with cli-secret-7")
    (job / "123_submitted.pkl").chmod(0o644)
    (tmp_path / ".submitit" / ".submission_file_x.sh").symlink_to(job / "123_submission.sh")
    redact_submitit_files(tmp_path / ".submitit" / "%j", ["cli-secret-7"])
    script = (job / "123_submission.sh").read_text()
    assert "hf-in-setup-1" not in script and "#SBATCH --job-name=train" in script and "srun python" in script
    log = (job / "123_0_log.out").read_bytes()
    assert b"cli-secret-7" not in log and log.startswith(b"\xff not utf-8 \xfe")  # other bytes as they were
    assert (job / "123_0_log.err").read_text() == "error: bad config\n"
    assert (job / "123_submitted.pkl").stat().st_mode & 0o777 == 0o600


@pytest.mark.reliability  # issue 16: crafted input, crash safety or secrets
def test_job_streams_redact_as_they_write():
    import io

    from reasoning_rl.launching.job_output import ErrorLineTee, RedactingStream

    out, err = io.StringIO(), io.StringIO()
    stream, tee = RedactingStream(out, ["literal-secret"]), ErrorLineTee(err, ["literal-secret"])
    stream.write("config: +logger.api_key=12345 and literal-secret\n")
    tee.write("error: cannot log in with literal-secret\n")
    assert "12345" not in out.getvalue() and "literal-secret" not in out.getvalue() + err.getvalue()
    assert tee.last == f"cannot log in with {REDACTED}"


# ---- a job starting in an old run dir; status.json on every way out

def _crafted_old_run(path):
    run = RunDir(path)
    for name in ("summary.json", "samples.jsonl", "samples_step0.jsonl", "samples_step10.jsonl", "metrics.jsonl"):
        (path / name).write_text('{"old": 1}\n')
    return run


@pytest.mark.reliability  # issue 16: crafted input, crash safety or secrets
def test_fresh_start_moves_every_old_result_aside(tmp_path, caplog):
    run = _crafted_old_run(tmp_path / "run")
    with caplog.at_level("WARNING"):
        stale = run.set_aside_stale(resuming=False)
    assert stale.parent == run.path and stale.name.startswith("stale-")
    assert sorted(p.name for p in stale.iterdir()) == ["metrics.jsonl", "samples.jsonl", "samples_step0.jsonl",
                                                       "samples_step10.jsonl", "summary.json"]
    assert not [p for p in run.path.iterdir() if p.is_file()]
    assert stale.name in caplog.text
    # A second start within the same second gets a folder of its own.
    (run.path / "summary.json").write_text("{}")
    again = run.set_aside_stale(resuming=False)
    assert again != stale and (again / "summary.json").exists() and (stale / "summary.json").exists()
    assert run.set_aside_stale(resuming=False) is None  # nothing left: no empty folder either
    assert len(list(run.path.glob("stale-*"))) == 2


@pytest.mark.reliability  # issue 16: crafted input, crash safety or secrets
def test_resume_keeps_the_curve_but_not_the_final_results(tmp_path):
    run = _crafted_old_run(tmp_path / "run")
    stale = run.set_aside_stale(resuming=True)
    assert sorted(p.name for p in stale.iterdir()) == ["samples.jsonl", "summary.json"]
    assert sorted(p.name for p in run.path.iterdir() if p.is_file()) == [
        "metrics.jsonl", "samples_step0.jsonl", "samples_step10.jsonl"]


@pytest.fixture
def hydra_job(tmp_path):
    """The evaluate config with Hydra's runtime set as in a real run, the run dir in tmp_path/run."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    run_dir = tmp_path / "run"
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("evaluate", ["logger=none", f"hydra.run.dir={run_dir}"], return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(run_dir)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    yield cfg, run_dir
    HydraConfig.instance().cfg = None


def _status(run_dir):
    return json.loads((run_dir / "status.json").read_text())


@pytest.mark.reliability  # issue 16: crafted input, crash safety or secrets
@pytest.mark.parametrize("how", ["exception", "keyboard_interrupt", "sigterm", "sighup"])
def test_status_is_never_left_running(how, hydra_job, request):
    import signal

    from reasoning_rl.errors import Terminated
    from reasoning_rl.jobs import job_run

    cfg, run_dir = hydra_job
    expected = {"exception": RuntimeError, "keyboard_interrupt": KeyboardInterrupt}.get(how, Terminated)
    for sig in (signal.SIGTERM, signal.SIGHUP):  # as a fresh job process has them (an earlier test may not)
        previous = signal.signal(sig, signal.SIG_DFL)
        request.addfinalizer(lambda sig=sig, previous=previous: signal.signal(sig, previous))
    before = [signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)]
    with pytest.raises(expected):
        with job_run(cfg):
            assert _status(run_dir)["status"] == "running"
            if how == "exception":
                raise RuntimeError("boom")
            if how == "keyboard_interrupt":
                raise KeyboardInterrupt
            sig = signal.SIGTERM if how == "sigterm" else signal.SIGHUP
            # The default action would end this test process, status.json still `running`.
            assert signal.getsignal(sig) is not signal.SIG_DFL, "nothing would mark the run failed"
            os.kill(os.getpid(), sig)
            time.sleep(5)  # the handler raises here
    status = _status(run_dir)
    assert status["status"] == "failed" and status["error"].startswith(expected.__name__)
    assert [signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)] == before  # gone with the job


@pytest.mark.reliability  # issue 16: crafted input, crash safety or secrets
def test_job_in_an_old_run_dir_sets_its_results_aside(hydra_job):
    from reasoning_rl.jobs import job_run

    cfg, run_dir = hydra_job
    _crafted_old_run(run_dir)
    with pytest.raises(RuntimeError):
        with job_run(cfg):
            raise RuntimeError("crashed before writing anything")
    assert not (run_dir / "summary.json").exists() and not (run_dir / "samples.jsonl").exists()
    assert _status(run_dir)["status"] == "failed"  # the crashed re-run does not look finished
    (stale,) = run_dir.glob("stale-*")
    assert json.loads((stale / "summary.json").read_text()) == {"old": 1}
    _crafted_old_run(run_dir)
    with job_run(cfg, resuming=lambda path: path == run_dir):
        pass
    assert (run_dir / "metrics.jsonl").exists() and (run_dir / "samples_step10.jsonl").exists()
    assert not (run_dir / "summary.json").exists()

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
