"""dataset=hf: a user's own JSONL/CSV/Parquet file, its columns named in the config."""

import json

import pytest
from omegaconf import OmegaConf

from reasoning_rl.data import load_problems
from reasoning_rl.errors import ConfigError, DataError
from tests.helpers import run_job

ROWS = [{"q": "What is 2+3?", "a": 5, "why": "2+3=5", "key": "p1"},
        {"q": "What is 4*4?", "a": 16, "why": "4*4=16", "key": "p2"},
        {"q": "What is 9-1?", "a": 8, "why": "9-1=8", "key": "p3"}]
PROMPT = OmegaConf.to_container(OmegaConf.load("conf/prompt/think_answer.yaml"))


def write(tmp_path, fmt, rows=ROWS):
    path = tmp_path / f"data.{fmt}"
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        import pandas as pd

        frame = pd.DataFrame(rows)
        frame.to_csv(path, index=False) if fmt == "csv" else frame.to_parquet(path)
    return path


def cfg(data, **overrides):
    base = OmegaConf.load("conf/dataset/hf.yaml")
    base.seed = 0
    base.path = data if isinstance(data, dict) else str(data)
    base.columns.question, base.columns.answer = "q", "a"
    for key, value in overrides.items():
        OmegaConf.update(base, key, value, force_add=True)
    return OmegaConf.to_container(base, resolve=True)


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_loads_each_format(tmp_path, fmt):
    problems, grader = load_problems(cfg(write(tmp_path, fmt), **{"columns.solution": "why", "columns.id": "key"}),
                                     PROMPT)
    assert grader == "numeric"
    assert [p.gold for p in problems] == ["5", "16", "8"]
    assert [p.id for p in problems] == [f"hf/data.{fmt}/p1", f"hf/data.{fmt}/p2", f"hf/data.{fmt}/p3"]
    assert problems[1].messages[-1]["role"] == "user" and "What is 4*4?" in problems[1].messages[-1]["content"]
    assert "4*4=16" in problems[1].solution and problems[0].meta["question"] == "What is 2+3?"


def test_defaults_number_rows_and_limit(tmp_path):
    problems, _ = load_problems(cfg(write(tmp_path, "jsonl"), limit=2, grader="choice"), PROMPT)
    assert [p.id for p in problems] == ["hf/data.jsonl/0", "hf/data.jsonl/1"]
    assert all(p.solution is None for p in problems)
    assert load_problems(cfg(write(tmp_path, "jsonl"), grader="choice"), PROMPT)[1] == "choice"


def test_path_per_split(tmp_path):
    (tmp_path / "tr").mkdir()
    train = write(tmp_path / "tr", "jsonl", ROWS[:1])
    test = write(tmp_path, "csv", ROWS[1:])
    paths = {"train": str(train), "test": str(test)}
    assert [p.gold for p in load_problems(cfg(paths, split="train"), PROMPT)[0]] == ["5"]
    assert [p.gold for p in load_problems(cfg(paths, split="test"), PROMPT)[0]] == ["16", "8"]
    with pytest.raises(DataError, match=r"dataset.split='dev': dataset.path names the splits \['test', 'train'\]"):
        load_problems(cfg(paths, split="dev"), PROMPT)


@pytest.mark.parametrize("overrides, error, message", [
    ({"columns.answer": "answer"}, DataError, r"dataset.columns.answer=answer: data.jsonl has no column 'answer'; "
                                              r"its columns: q, a, why, key"),
    ({"columns.question": None}, ConfigError, "needs dataset.columns.question"),
    ({"columns.gold": "a"}, ConfigError, "dataset.columns.gold is not a column setting"),
    ({"grader": "numerc"}, ConfigError, "dataset.grader='numerc' is not a grader; known: .*numeric"),
    ({"path": "nope.jsonl"}, DataError, "no such file"),
    ({"path": "data.txt"}, ConfigError, "unknown file type '.txt'"),
    ({"columns.id": "q", "path": None}, ConfigError, "needs dataset.path"),
])
def test_errors_are_one_line(tmp_path, overrides, error, message):
    path = write(tmp_path, "jsonl")
    overrides = {k: (str(tmp_path / v) if k == "path" and v else v) for k, v in overrides.items()}
    with pytest.raises(error, match=message) as err:
        load_problems(cfg(path, **overrides), PROMPT)
    assert "\n" not in str(err.value)


def test_contamination_guard_sees_the_same_question(tmp_path):
    from reasoning_rl.data import check_contamination

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    train = load_problems(cfg(write(tmp_path / "a", "jsonl", ROWS[:2])), PROMPT)[0]
    other = load_problems(cfg(write(tmp_path / "b", "csv", [{**ROWS[1], "q": " What is  4*4? "}, ROWS[2]])), PROMPT)[0]
    assert len(check_contamination(train, other, allow=True)) == 1  # ROWS[1] again, spaced differently
    assert not check_contamination(train[:1], other, allow=False)
    with pytest.raises(ConfigError, match="1 of the 2 evaluation problems"):
        check_contamination(train, other, allow=False)
    with_ids = load_problems(cfg(write(tmp_path / "a", "jsonl", ROWS), **{"columns.id": "key"}), PROMPT)[0]
    assert {p.meta["source_id"] for p in with_ids} == {"hf:p1", "hf:p2", "hf:p3"}


def test_empty_answer_and_duplicate_ids(tmp_path):
    rows = [*ROWS, {"q": "What is 1+1?", "a": None, "why": "", "key": "p4"}]
    with pytest.raises(DataError, match="bad row .*empty a"):
        load_problems(cfg(write(tmp_path, "jsonl", rows)), PROMPT)
    assert len(load_problems(cfg(write(tmp_path, "jsonl", rows), on_bad_row="skip"), PROMPT)[0]) == 3
    with pytest.raises(DataError, match="has the id 'p1' more than once"):
        load_problems(cfg(write(tmp_path, "jsonl", [*ROWS, ROWS[0]]), **{"columns.id": "key"}), PROMPT)


def test_malformed_file(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"q": 1\nnot json\n')
    with pytest.raises(DataError, match="cannot read it as json"):
        load_problems(cfg(bad), PROMPT)


def _evaluate(tmp_path, data, *extra):
    return run_job("evaluate", "dataset=hf", f"dataset.path={data}", "dataset.columns.question=q",
                   "dataset.columns.answer=a", "dataset.grader=numeric", "debug=smoke", "prompt=short",
                   "eval.num_samples=2", "eval.ks=[1,2]", "generation.max_new_tokens=8", "logger=none",
                   f"hydra.run.dir={tmp_path}/run", *extra, timeout=600)


def test_missing_column_is_exit_2(tmp_path):
    result = _evaluate(tmp_path, write(tmp_path, "csv"), "dataset.columns.answer=gold")
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert "error: dataset.columns.answer=gold: data.csv has no column 'gold'; its columns: q, a, why, key" \
        in result.stderr


def test_evaluate_end_to_end(tmp_path):  # ~20 s on CPU
    result = _evaluate(tmp_path, write(tmp_path, "parquet"), "dataset.limit=2")
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["pass@1"]["n"] == 2 and 0 <= summary["pass@2"]["mean"] <= 1
    samples = [json.loads(line) for line in (tmp_path / "run" / "samples.jsonl").read_text().splitlines()]
    assert {s["id"] for s in samples} == {"hf/data.parquet/0", "hf/data.parquet/1"}
