import pytest

from reasoning_rl.errors import ConfigError
from reasoning_rl.grading import REWARDS, get_grader, get_reward_funcs, register_reward

COMPLETIONS = [
    "<think>9 * 2</think>\n<answer>18</answer>",  # right, strict
    "<think>9 * 2</think>\n<answer>17</answer> hmm",  # wrong, soft only
    "It is 18.",  # right by the last-number fallback, no format
]
GOLD = ["18", "18", "18"]
PROMPTS = ["q1", "q1", "q1"]


def as_messages(texts):
    return [[{"role": "assistant", "content": text}] for text in texts]


@pytest.fixture
def funcs():
    names = ["correctness", "format_strict", "format_soft"]
    return get_reward_funcs(names, grader=get_grader("gsm8k"), answer_format="answer_tag")


@pytest.mark.parametrize("convert", [list, as_messages], ids=["strings", "messages"])
def test_trl_style_call(funcs, convert):
    completions = convert(COMPLETIONS)
    # TRL's call: keyword arguments, dataset columns repeated per completion, plus trainer extras.
    extras = {"gold": GOLD, "question": ["q"] * 3, "trainer_state": None, "log_metric": print}
    scores = {f.__name__: f(prompts=PROMPTS, completions=completions, completion_ids=None, **extras) for f in funcs}
    assert scores == {
        "correctness": [1.0, 0.0, 1.0],
        "format_strict": [1.0, 0.0, 0.0],
        "format_soft": [1.0, 1.0, 0.0],
    }


def test_names_and_order(funcs):
    assert [f.__name__ for f in funcs] == ["correctness", "format_strict", "format_soft"]


def test_bound_values_win_over_dataset_columns():
    (f,) = get_reward_funcs(["format_strict"], grader=get_grader("gsm8k"), answer_format="boxed")
    text = r"<think>a</think> \boxed{3}"
    assert f(prompts=["p"], completions=[text], answer_format=["answer_tag"]) == [1.0]


def test_pure_functions_are_registered():
    grader = get_grader("gsm8k", answer_format="boxed")
    assert REWARDS["correctness"]([r"\boxed{1,080}"], gold=["1080"], grader=grader) == [1.0]
    assert REWARDS["format_strict"]([r"<think>a</think>\boxed{1}"], answer_format="boxed") == [1.0]


def test_gold_must_align_with_completions(funcs):
    with pytest.raises(ValueError):
        funcs[0](prompts=PROMPTS, completions=COMPLETIONS, gold=GOLD[:2])


def test_unknown_reward():
    with pytest.raises(KeyError, match="correctness") as info:
        get_reward_funcs(["correctness", "lenght"], grader=get_grader("gsm8k"), answer_format="answer_tag")
    assert "'lenght'" in str(info.value)
    assert isinstance(info.value, ConfigError)
    with pytest.raises(ValueError, match="already registered"):
        register_reward("correctness")(lambda completions, **kwargs: [])
