"""reproduce RUN_DIR: what it re-runs (overrides, redacted secrets, sweep placement), what it warns
about (code and package versions), how it compares summaries; (slow) a real re-run is identical."""

import json
import subprocess
from importlib import metadata

import pytest
import yaml

from reasoning_rl import reproduce
from reasoning_rl.tracking.redact import REDACTED
from tests.helpers import SHORT_TASK, run_job


def saved_run(path, overrides, *, job="evaluate", hydra_overrides=(), provenance=None, summary=None):
    (path / ".hydra").mkdir(parents=True)
    (path / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"job_name": job, "seed": 0}))
    (path / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(list(overrides)))
    (path / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump(
        {"hydra": {"job": {"name": job},
                   "overrides": {"hydra": [f"hydra.run.dir={path}", "hydra.mode=RUN", *hydra_overrides],
                                 "task": list(overrides)}}}))
    if provenance is not None:
        (path / "provenance.json").write_text(json.dumps(provenance))
    if summary is not None:
        (path / "summary.json").write_text(json.dumps(summary))
    return path


def current_provenance():
    from reasoning_rl.tracking import provenance

    return {"git": provenance.git_state(), "packages": provenance.package_versions(),
            "python": __import__("sys").version.split()[0], "gpus": []}


def test_plan_replays_saved_overrides_with_new_ones_on_top(tmp_path):
    run = saved_run(tmp_path / "run", ["debug=smoke", "seed=0", "eval.num_samples=4"], provenance=current_provenance())
    command, out, warnings = reproduce.plan(run, ["seed=1", "dataset.limit=2"], tmp_path / "new")
    assert command[1:3] == ["-m", "reasoning_rl.evaluate"]
    assert command[3:] == ["debug=smoke", "eval.num_samples=4", "seed=1", "dataset.limit=2",
                           f"hydra.run.dir={tmp_path / 'new'}"]
    assert out == tmp_path / "new"
    assert not [w for w in warnings if "package" in w or "python" in w or "hardware" in w]


def test_redacted_overrides_are_not_passed_again(tmp_path):
    run = saved_run(tmp_path / "run", [f"+logger.api_key={REDACTED}", "debug=smoke"], job="train",
                    provenance=current_provenance())
    command, _, warnings = reproduce.plan(run, [], tmp_path / "new")
    assert command[2] == "reasoning_rl.train"
    assert not any(REDACTED in c for c in command)
    assert any(w.startswith(f"+logger.api_key={REDACTED} was redacted") and "environment" in w for w in warnings)


def test_a_sweep_member_is_rerun_as_one_local_job(tmp_path):
    run = saved_run(tmp_path / "run", ["seed=2"], job="train", provenance=current_provenance(),
                    hydra_overrides=["hydra.mode=MULTIRUN", "hydra/launcher=slurm_local", "hydra.sweep.dir=/x"])
    command, _, warnings = reproduce.plan(run, [], tmp_path / "new")
    assert command[3:] == ["seed=2", f"hydra.run.dir={tmp_path / 'new'}"]
    assert any("one job of a sweep" in w for w in warnings)


UNSAFE = {
    "hydra.callbacks.pwn._target_=os.system": "a hydra key",
    "+hydra.callbacks.pwn.command=touch": "a hydra key",
    "++hydra.searchpath=[file:///tmp/evil]": "a hydra key",
    "+model.loader={_target_: os.system, command: touch}": "a _target_",
    "model.trust_remote_code=true": "trust_remote_code=true",
    "+model.kwargs={trust_remote_code: True}": "trust_remote_code=true",
    "logger.name=${oc.env:WANDB_API_KEY}": "a resolver interpolation",
}


@pytest.mark.reliability  # issue 16: crafted input, crash safety or secrets
@pytest.mark.parametrize("override", sorted(UNSAFE))
def test_a_crafted_run_dir_runs_nothing(override, tmp_path, capsys, monkeypatch):
    ran = []
    monkeypatch.setattr(reproduce.subprocess, "run",
                        lambda cmd, *a, **k: ran.append(cmd) or subprocess.CompletedProcess(cmd, 0))
    run = saved_run(tmp_path / "run", ["debug=smoke", override])
    with pytest.raises(SystemExit) as exc:
        reproduce.main([str(run), "--out", str(tmp_path / "new")])
    assert exc.value.code == 2 and ran == [] and not (tmp_path / "new").exists()
    (line,) = capsys.readouterr().err.strip().splitlines()[-1:]
    assert line.startswith("error: refusing to replay") and f"{override} ({UNSAFE[override]})" in line


@pytest.mark.reliability  # issue 16: crafted input, crash safety or secrets
def test_a_saved_hydra_override_is_refused_unless_given_again(tmp_path):
    run = saved_run(tmp_path / "run", ["model.trust_remote_code=true"], provenance=current_provenance(),
                    hydra_overrides=["hydra.job.chdir=false"])
    with pytest.raises(reproduce.UserError, match=r"model.trust_remote_code=true \(trust_remote_code=true\); "
                                                  r"hydra.job.chdir=false \(a hydra key\)"):
        reproduce.plan(run, [], tmp_path / "new")
    command, _, _ = reproduce.plan(run, ["model.trust_remote_code=true", "hydra.job.chdir=false"], tmp_path / "new")
    assert command[3:] == ["model.trust_remote_code=true", "hydra.job.chdir=false", f"hydra.run.dir={tmp_path / 'new'}"]
    command, _, _ = reproduce.plan(run, ["model.trust_remote_code=false", "hydra.job.chdir=false"], tmp_path / "new")
    assert "model.trust_remote_code=false" in command and "model.trust_remote_code=true" not in command


def test_the_run_dirs_config_is_read_without_resolving_the_environment(tmp_path, monkeypatch):
    from reasoning_rl.comparison.runs import load_config

    monkeypatch.setenv("SECRET_FOR_TEST", "hunter2")
    run = saved_run(tmp_path / "run", [])
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(
        {"job_name": "evaluate", "seed": 3, "dataset": {"seed": "${seed}"},
         "logger": {"key": "${oc.env:SECRET_FOR_TEST}", "copy": "${logger.key}",
                    "path": "out/${oc.env:SECRET_FOR_TEST,x}"}, "loop": "${loop}"}))
    config = load_config(run)
    assert config["dataset.seed"] == 3  # a plain reference is followed within the file
    assert config["logger.key"] == config["logger.copy"] == "${oc.env:SECRET_FOR_TEST}"
    assert config["logger.path"] == "out/${oc.env:SECRET_FOR_TEST,x}" and config["loop"] == "${loop}"
    assert "hunter2" not in json.dumps(config)


def test_changed_code_and_packages_are_named(tmp_path):
    prov = current_provenance()
    prov["git"] = {"sha": "0" * 40, "dirty": True}
    prov["packages"] = {**prov["packages"], "transformers": "0.0.1", "trl": None}
    run = saved_run(tmp_path / "run", ["debug=smoke"], provenance=prov)
    _, _, warnings = reproduce.plan(run, [], tmp_path / "new")
    assert any("the code differs: the run used git 000000000000" in w for w in warnings)
    assert any("uncommitted changes, which were not recorded" in w for w in warnings)
    (packages,) = [w for w in warnings if w.startswith("package versions differ")]
    assert f"transformers 0.0.1 -> {metadata.version('transformers')}" in packages
    assert f"trl None -> {metadata.version('trl')}" in packages and "torch" not in packages


def test_bad_inputs_are_one_line_exit_2(tmp_path, capsys):
    (tmp_path / "not_a_run").mkdir()
    good = saved_run(tmp_path / "good", ["debug=smoke"])
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "status.json").write_text("{}")
    cases = {
        (str(tmp_path / "missing"),): "no such run dir",
        (str(tmp_path / "not_a_run"),): "not a run dir",
        (str(good), "--out", str(good)): "is the original run dir",
        (str(good), "--out", str(tmp_path / "taken")): "already holds a run",
    }
    for argv, message in cases.items():
        with pytest.raises(SystemExit) as exc:
            reproduce.main(list(argv))
        assert exc.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("error: ") and message in err[-1]
    weird = saved_run(tmp_path / "weird", [], job="compare")
    with pytest.raises(SystemExit):
        reproduce.main([str(weird)])
    assert "job 'compare' cannot be reproduced" in capsys.readouterr().err


def test_summaries_identical_within_ci_and_outside():
    old = {"pass@1": {"mean": 0.2, "ci_low": 0.1, "ci_high": 0.3, "n": 10},
           "pass@8": {"mean": 0.5, "ci_low": 0.3, "ci_high": 0.7, "n": 10}}
    text, identical = reproduce.compare_summaries(old, json.loads(json.dumps(old)))
    assert identical and "identical" in text.splitlines()[-1]
    shifted = {"pass@1": {**old["pass@1"], "mean": 0.25}, "pass@8": {**old["pass@8"], "mean": 0.9}}
    text, identical = reproduce.compare_summaries(old, shifted)
    assert not identical
    last = text.splitlines()[-1]
    assert "max |difference| 0.4 (pass@8)" in last and "outside the original 95% CI: pass@8" in last
    rows = {line.split()[0]: line.split()[-1] for line in text.splitlines()[1:-1]}
    assert rows == {"pass@1": "yes", "pass@8": "NO"}
    text, _ = reproduce.compare_summaries(old, {"pass@1": old["pass@1"]})
    assert text.splitlines()[-1].endswith("in only one of the runs: pass@8")


def test_a_failed_rerun_exits_non_zero(tmp_path):
    # K > N: the evaluate job refuses its config before any weights load, with exit status 2.
    run = saved_run(tmp_path / "run", ["eval.num_samples=2", "eval.ks=[1,4]", "logger=none"],
                    provenance=current_provenance())
    result = run_job("reproduce", str(run), "--out", str(tmp_path / "new"), timeout=180)
    assert result.returncode == 2
    assert "error: the re-run failed with exit status 2" in result.stderr
    assert "re-running: python -m reasoning_rl.evaluate eval.num_samples=2" in result.stdout


@pytest.mark.slow
def test_reproducing_a_smoke_evaluation_gives_the_same_summary(tmp_path):
    tiny = ["debug=smoke", *SHORT_TASK, "dataset.limit=2", "eval.num_samples=4", "eval.ks=[1,4]", "logger=none"]
    original = tmp_path / "original"
    first = run_job("evaluate", *tiny, f"hydra.run.dir={original}")
    assert first.returncode == 0, first.stderr[-3000:]
    result = run_job("reproduce", str(original), "--out", str(tmp_path / "again"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "again" / "summary.json").read_text() == (original / "summary.json").read_text()
    assert "identical: the new summary.json equals the original exactly" in result.stdout
    assert "samples.jsonl: the same completions for all 2 problems" in result.stdout
    overrides = yaml.safe_load((tmp_path / "again" / ".hydra" / "overrides.yaml").read_text())
    assert overrides == tiny


def test_a_warm_started_run_is_reproduced_with_its_chain(tmp_path, monkeypatch):
    """The parents are re-run first, oldest first, and each child starts from its re-run parent."""
    import yaml

    from reasoning_rl import reproduce

    def fake(name, init_from=None):
        (tmp_path / name / ".hydra").mkdir(parents=True)
        (tmp_path / name / ".hydra" / "config.yaml").write_text(
            yaml.safe_dump({"job_name": "train", "init_from": init_from}))
        return tmp_path / name

    sft = fake("sft")
    grpo = fake("grpo", init_from=str(sft / "adapter"))  # RUN/adapter counts as the run
    again = fake("again", init_from=str(grpo))
    calls = []
    monkeypatch.setattr(reproduce, "reproduce",
                        lambda run, overrides, out: calls.append((run, list(overrides), out)) or 0)
    out = tmp_path / "new"
    assert reproduce.main([str(again), "seed=2", "--out", str(out)]) == 0
    assert calls == [
        (sft, [], tmp_path / "new.parent2"),
        (grpo, [f"init_from={tmp_path / 'new.parent2'}"], tmp_path / "new.parent1"),
        (again, ["seed=2", f"init_from={tmp_path / 'new.parent1'}"], out),
    ]
    calls.clear()
    assert reproduce.main([str(again), "--no-chain", "--out", str(out)]) == 0
    assert calls == [(again, [], out)]
