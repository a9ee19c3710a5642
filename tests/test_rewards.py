import pytest

from reasoning_rl.errors import ConfigError
from reasoning_rl.grading import REWARDS, check_rewards, get_grader, get_reward_funcs, register_reward

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


@pytest.mark.parametrize("algorithm", ["grpo", "ppo", "trpo"])
def test_the_reward_group_pays_every_rl_algorithm_and_algorithm_keys_still_win(algorithm):
    import yaml
    from hydra import compose, initialize_config_dir

    from tests.helpers import REPO

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        for option in ("strict", "correctness", "shaped"):
            chosen = yaml.safe_load((REPO / "conf" / "reward" / f"{option}.yaml").read_text())
            cfg = compose("train", [f"algorithm={algorithm}", f"reward={option}"])
            assert list(cfg.algorithm.rewards) == chosen["names"]
            assert list(cfg.algorithm.reward_weights) == chosen["weights"]
            check_rewards(list(cfg.algorithm.rewards), list(cfg.algorithm.reward_weights))
        own = compose("train", [f"algorithm={algorithm}", "reward=shaped", "algorithm.rewards=[correctness]",
                                "algorithm.reward_weights=[2.0]"])
        assert list(own.algorithm.rewards) == ["correctness"] and list(own.algorithm.reward_weights) == [2.0]


def test_check_rewards_names_the_problem():
    with pytest.raises(ConfigError, match="nope"):
        check_rewards(["correctness", "nope"], [1.0, 1.0])
    with pytest.raises(ConfigError, match="reward_weights has 1 values for 2 rewards"):
        check_rewards(["correctness", "format_strict"], [1.0])
    with pytest.raises(ConfigError, match="must be numbers"):
        check_rewards(["correctness"], [True])
    check_rewards(["correctness", "format_strict"], [1.0, 0.5])
