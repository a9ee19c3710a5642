"""reasoning-gym tasks as a data set: disjoint seeded splits, the task's own verifier as grader and reward."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from reasoning_rl.data import check_contamination, grader_options, load_problems
from reasoning_rl.errors import ConfigError
from reasoning_rl.grading import get_grader, get_reward_funcs
from reasoning_rl.prompts import build_messages

PROMPT = {"answer_format": "answer_tag", "think": False, "system": "Reply inside <answer></answer>.",
          "user_template": "{question}"}
CHAIN_SUM = {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1}


def rg_cfg(**overrides):
    base = {"name": "reasoning_gym", "task": "chain_sum", "task_config": dict(CHAIN_SUM), "data_seed": 0,
            "size": {"train": 2000, "test": 100}, "split": "test", "limit": None, "sample": "first", "seed": 0,
            "few_shot": 0}
    return OmegaConf.create({**base, **overrides})


def test_splits_are_disjoint_and_seeded():
    test, grader = load_problems(rg_cfg(), PROMPT)
    train, _ = load_problems(rg_cfg(split="train"), PROMPT)
    assert grader == "reasoning_gym"
    questions = lambda ps: {p.meta["question"] for p in ps}  # noqa: E731
    assert len(test) > 64 and len(train) > 64
    assert not questions(test) & questions(train)
    assert len(questions(test)) == len(test)  # repeats dropped within a split too
    assert check_contamination(train, test, allow=False) == set()
    again, _ = load_problems(rg_cfg(), PROMPT)
    assert [p.gold for p in again] == [p.gold for p in test]
    other, _ = load_problems(rg_cfg(data_seed=5), PROMPT)
    assert [p.meta["question"] for p in other] != [p.meta["question"] for p in test]


def test_problems_use_the_prompt_and_render_a_reference_solution():
    (problem,), _ = load_problems(rg_cfg(limit=1), PROMPT)
    assert problem.messages == build_messages(problem.meta["question"], PROMPT)
    assert problem.solution.endswith(f"<answer>{problem.gold}</answer>")
    assert "=" in problem.solution  # chain_sum's expression as the worked step


def test_the_contamination_check_sees_the_same_question_in_both_splits():
    test, _ = load_problems(rg_cfg(limit=3), PROMPT)
    with pytest.raises(ConfigError, match="also in the training data"):
        check_contamination(test, test, allow=False)


def test_grader_wraps_score_answer_with_partial_credit():
    grader = get_grader("reasoning_gym", answer_format="answer_tag", **grader_options(rg_cfg()))
    assert grader.extract("<answer> 7 </answer>") == "7"
    assert grader.extract("so 3 + 4 = 7.0") == "7"   # no tag: the last number
    assert grader.extract("no number") is None
    assert grader.is_correct("7", "7") and not grader.is_correct("8", "7")
    assert grader.score(None, "7") == 0.0
    (task_score,) = get_reward_funcs(["task_score"], grader=grader, answer_format="answer_tag")
    (correctness,) = get_reward_funcs(["correctness"], grader=grader, answer_format="answer_tag")
    completions = ["<answer>7</answer>", "<answer>8</answer>", "nothing"]
    assert task_score(completions=completions, gold=["7"] * 3) == [1.0, 0.0, 0.0]
    assert correctness(completions=completions, gold=["7"] * 3) == [1.0, 0.0, 0.0]


def test_partial_credit_reaches_the_reward():
    """leg_counting's verifier is the base class's: an answer that contains the gold gets len(gold)/len(answer)."""
    grader = get_grader("reasoning_gym", task="leg_counting", task_config={}, fallback="none")
    (task_score,) = get_reward_funcs(["task_score"], grader=grader, answer_format="answer_tag")
    full, part = task_score(completions=["<answer>12</answer>", "<answer>12 legs</answer>"], gold=["12", "12"])
    assert full == 1.0 and 0 < part < 1


@pytest.mark.parametrize("cfg,message", [
    (rg_cfg(task="no_such_task"), "no_such_task"),
    (rg_cfg(task_config={"min_terms": 5, "max_terms": 2}), "chain_sum"),
    (rg_cfg(limit=1000), "dataset.limit=1000"),
    (rg_cfg(split="dev"), "split='dev'"),
])
def test_bad_settings_are_one_line(cfg, message):
    with pytest.raises((ConfigError, Exception), match=message) as info:
        load_problems(cfg, PROMPT)
    assert "\n" not in str(info.value)


def test_a_task_scored_with_its_metadata_is_refused():
    with pytest.raises(ConfigError, match="metadata"):
        get_grader("reasoning_gym", task="countdown", task_config={})


@pytest.mark.reliability  # issue 16: crafted input, crash safety or secrets
def test_the_task_verifier_runs_under_the_grader_bound(monkeypatch):
    """score_answer runs in the bounded child (task verifiers parse with sympy); past the bound it scores 0
    and is counted, and a child restarted after a kill has the task built again before its next answer."""
    from reasoning_rl.grading import bounded

    grader = get_grader("reasoning_gym", answer_format="answer_tag", **grader_options(rg_cfg()))
    gold = "7"
    assert grader.score("7", gold) == 1.0 and grader.timeouts == 0
    bounded._CHILD.stop()  # as after a kill: the next call starts a child that warms the task up first
    assert grader.score("7", gold) == 1.0 and grader.timeouts == 0
    calls = []

    def too_slow(op, *args, **kwargs):
        calls.append(op)
        raise bounded.BoundExceeded(f"{op} ran past 2 s")

    monkeypatch.setattr(bounded, "call", too_slow)
    assert grader.score("7", gold) == 0.0 and grader.timeouts == 1 and calls == ["task_score"]
