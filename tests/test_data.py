import shutil

import pytest

from reasoning_rl.data import get_dataset, load_problems, registry
from reasoning_rl.data.gsm8k import parse_answer_field
from reasoning_rl.errors import ConfigError, DataError

PROMPT = {"think": True, "answer_format": "answer_tag", "system": "Think, then answer.", "user_template": "{question}"}


def gsm8k_cfg(**overrides):
    cfg = {"name": "gsm8k", "source": "bundled", "split": "test", "limit": None, "sample": "first",
           "seed": 0, "few_shot": 0, "grader": "gsm8k"}
    return {**cfg, **overrides}


@pytest.mark.parametrize("split,count", [("train", 7473), ("test", 1319)])
def test_bundled_gsm8k_has_documented_counts(split, count):
    problems, grader = load_problems(gsm8k_cfg(split=split), PROMPT)
    assert len(problems) == count
    assert grader == "gsm8k"
    assert len({p.id for p in problems}) == count


def test_problem_fields():
    (problem,), _ = load_problems(gsm8k_cfg(limit=1), PROMPT)
    assert problem.id == "gsm8k/test/0"
    assert problem.gold == "18"
    assert problem.messages[0] == {"role": "system", "content": "Think, then answer."}
    assert problem.messages[-1]["role"] == "user" and "Janet" in problem.messages[-1]["content"]
    assert "<<" not in problem.solution and problem.solution.endswith("<answer>18</answer>")


def test_gold_answers_have_no_thousands_separators():
    problems, _ = load_problems(gsm8k_cfg(split="train"), PROMPT)
    assert all("," not in p.gold for p in problems)
    assert any(p.gold.startswith("-") for p in problems)


def test_parse_answer_field_strips_calculator_annotations():
    reasoning, final = parse_answer_field("She makes 9 * 2 = $<<9*2=18>>18.\n#### 1,080")
    assert reasoning == "She makes 9 * 2 = $18." and final == "1080"


def test_random_subsample_is_seeded_and_stable():
    a, _ = load_problems(gsm8k_cfg(limit=20, sample="random", seed=1), PROMPT)
    b, _ = load_problems(gsm8k_cfg(limit=20, sample="random", seed=1), PROMPT)
    c, _ = load_problems(gsm8k_cfg(limit=20, sample="random", seed=2), PROMPT)
    assert [p.id for p in a] == [p.id for p in b]
    assert [p.id for p in a] != [p.id for p in c]
    first, _ = load_problems(gsm8k_cfg(limit=20), PROMPT)
    assert [p.id for p in first] == [f"gsm8k/test/{i}" for i in range(20)]


def test_few_shot_turns_come_from_train():
    (problem,), _ = load_problems(gsm8k_cfg(limit=1, few_shot=2), PROMPT)
    roles = [m["role"] for m in problem.messages]
    assert roles == ["system", "user", "assistant", "user", "assistant", "user"]
    assert "Natalia" in problem.messages[1]["content"]  # train row 0
    assert problem.messages[2]["content"].startswith("<think>")


@pytest.mark.parametrize("limit", [-1, 0, 2.5])
def test_bad_limit_is_a_config_error(limit):
    with pytest.raises(ConfigError, match="dataset.limit"):
        load_problems(gsm8k_cfg(limit=limit), PROMPT)


def test_unknown_split_and_dataset():
    with pytest.raises(DataError, match="split"):
        load_problems(gsm8k_cfg(split="validation"), PROMPT)
    with pytest.raises(ConfigError, match="unknown dataset"):
        get_dataset("nope")


def test_corrupted_file_fails_checksum(tmp_path, monkeypatch):
    copy = tmp_path / "gsm8k"
    shutil.copytree(registry.bundled_dir("gsm8k"), copy)
    with open(copy / "test.jsonl", "a") as f:
        f.write('{"question": "injected", "answer": "#### 1"}\n')
    monkeypatch.setattr(registry, "bundled_dir", lambda name: tmp_path / name)
    with pytest.raises(DataError, match="sha256"):
        load_problems(gsm8k_cfg(), PROMPT)


def test_license_ships_with_the_data():
    assert "MIT" in (registry.bundled_dir("gsm8k") / "LICENSE").read_text()


@pytest.mark.reliability  # issue 16: crafted input, crash safety or secrets
@pytest.mark.parametrize("sample", ["first", "random"])
def test_limit_above_the_split_size_is_a_config_error(sample):
    assert len(load_problems(gsm8k_cfg(limit=1319, sample=sample), PROMPT)[0]) == 1319  # exactly all: fine
    with pytest.raises(ConfigError, match=r"dataset\.limit=1320 is more than the 1319 problems"):
        load_problems(gsm8k_cfg(limit=1320, sample=sample), PROMPT)


def test_a_dataset_name_is_registered_once():
    from reasoning_rl.data import register_dataset

    with pytest.raises(ValueError, match="'gsm8k' is already registered"):
        register_dataset("gsm8k")(lambda dataset_cfg, prompt_cfg: [])
