import json
import threading
from pathlib import Path

import pytest

from reasoning_rl.errors import ConfigError
from reasoning_rl.grading import (
    GRADERS,
    Grader,
    NumericGrader,
    completion_text,
    extract_answer_span,
    get_grader,
    is_soft_format,
    is_strict_format,
    register_grader,
)

GSM8K_TEST = Path(__file__).parents[1] / "reasoning_rl/data/files/gsm8k/test.jsonl"


@pytest.fixture
def grader():
    return get_grader("gsm8k")


# ---- answer spans ----


def test_answer_tag_span_is_the_last_block():
    text = "<think>x</think><answer>1</answer> oops <answer> 2 </answer>"
    assert extract_answer_span(text, "answer_tag") == " 2 "
    assert extract_answer_span("no tags", "answer_tag") is None


def test_boxed_span_handles_nested_braces_and_takes_the_last():
    text = r"first \boxed{1}, then \boxed{\frac{1}{2}} and \boxed{3"
    assert extract_answer_span(text, "boxed") == r"\frac{1}{2}"
    assert extract_answer_span("no box", "boxed") is None


def test_unknown_answer_format_is_a_config_error():
    with pytest.raises(ConfigError, match="answer_format"):
        extract_answer_span("x", "xml")
    with pytest.raises(ConfigError):
        NumericGrader(answer_format="xml")
    with pytest.raises(ConfigError):
        NumericGrader(fallback="first_number")


def test_completion_text_accepts_strings_and_messages():
    assert completion_text("abc") == "abc"
    assert completion_text([{"role": "assistant", "content": "abc"}]) == "abc"
    assert completion_text([{"role": "assistant", "content": [{"type": "text", "text": "abc"}]}]) == "abc"
    # transformers' response parsers move the think block into its own field
    parsed = [{"role": "assistant", "reasoning_content": "r", "content": "<answer>5</answer>"}]
    assert is_strict_format(completion_text(parsed), "answer_tag")


# ---- format checks ----

STRICT_OK = "<think>a</think>\n<answer>5</answer>"


@pytest.mark.parametrize(
    "text, strict, soft",
    [
        (STRICT_OK, True, True),
        ("  \n" + STRICT_OK + "\n\n", True, True),
        ("<think>a</think><think>b</think><answer>5</answer>", False, True),
        ("<answer>5</answer>", False, False),
        (STRICT_OK + " because", False, True),
        ("<think>a</think><answer> </answer>", False, False),
        ("<think> </think><answer>5</answer>", False, True),
        ("Sure! <think>a</think><answer>5</answer>", False, True),
        ("<think>a</think><answer>5</answer><answer>6</answer>", False, True),
        ("<think>a <answer>4</answer></think><answer>5</answer>", False, True),
        ("<think>a</think> so 5", False, False),
        ("<think>a", False, False),
    ],
)
def test_answer_tag_format(text, strict, soft):
    assert is_strict_format(text, "answer_tag") is strict
    assert is_soft_format(text, "answer_tag") is soft


@pytest.mark.parametrize(
    "text, strict, soft",
    [
        (r"<think>a</think> The answer is \boxed{\frac{1}{2}}.", True, True),
        (r"<think>a</think>\boxed{5}", True, True),
        (r"<think>a</think>\boxed{5} or \boxed{6}", False, True),
        (r"<think>a</think>\boxed{}", False, False),
        (r"<think>a</think><answer>\boxed{5}</answer>", False, True),
        (r"\boxed{5}", False, False),
        (r"<think>a \boxed{4}</think> so 5", False, False),
    ],
)
def test_boxed_format(text, strict, soft):
    assert is_strict_format(text, "boxed") is strict
    assert is_soft_format(text, "boxed") is soft


# ---- GSM8K grader ----


@pytest.mark.parametrize(
    "completion, expected",
    [
        ("18", "18"),
        ("$18", "18"),
        ("$18.00.", "18"),
        ("1,080", "1080"),
        ("-3", "-3"),
        ("2.5", "2.5"),
        ("2.50", "2.5"),
        (r"\boxed{18}", "18"),
        ("<answer>18 dollars</answer>", "18"),
        (r"<answer>\$18.00</answer>", "18"),
        (r"<answer>\text{18 dollars}</answer>", "18"),
        (r"<answer>1{,}080</answer>", "1080"),
        ("<answer>50%</answer>", "50"),
        (r"\frac{1}{2}", "0.5"),
        (r"<answer>$\dfrac{3}{4}$</answer>", "0.75"),
        ("<answer>1/3</answer>", "1/3"),
        ("<answer>9 * 2 = 18</answer>", "18"),
        ("Janet makes 9 * 2 = 18 a day.\n#### 42", "42"),
        ("So 3 + 4 makes it. The answer is 7.", "7"),
        ("The temperature falls to x = -3 degrees.", "-3"),
        ("9-3", "3"),  # a minus after a digit is a subtraction, not a sign
        ("<answer>1e3</answer>", "1000"),  # an exponent belongs to its number: not 1
        ("The answer is 2.5E-3.", "0.0025"),
        ("x = 1,2,3", "3"),  # a list, not the decimal 1.2 math-verify reads: the last number, as flexible-extract
    ],
)
def test_gsm8k_extract(grader, completion, expected):
    assert grader.extract(completion) == expected


@pytest.mark.reliability  # issue 16: crafted input, crash safety or secrets
@pytest.mark.parametrize("text", ["1,2,3", "3, 4", "1e999999999", "-1.5, 2"])
def test_lists_and_unwritable_numbers_state_no_number(text):
    from reasoning_rl.grading.numbers import number_value

    assert number_value(text) is None


@pytest.mark.reliability  # issue 16: crafted input, crash safety or secrets
def test_a_listed_answer_is_not_a_number_without_the_fallback():
    grader = get_grader("gsm8k", fallback="none")
    assert grader.extract("<answer>1,2,3</answer>") is None
    assert not grader.is_correct(grader.extract("<answer>1,2</answer>"), "1.2")


def test_answer_span_beats_numbers_elsewhere(grader):
    text = "<think>5 eggs at $3 is 15, minus 2 is 13</think>\n<answer>13</answer> (not 14)"
    assert grader.extract(text) == "13"
    # the other format's span still counts before falling back to the last number
    assert grader.extract(r"<think>1 + 2</think> \boxed{3} and 4") == "3"
    assert get_grader("gsm8k", answer_format="boxed").extract("<answer>8</answer>, 9") == "8"


def test_last_number_fallback_and_none(grader):
    text = "First 12 eggs, then 7 more, so 19 total"
    assert grader.extract(text) == "19"
    assert get_grader("gsm8k", fallback="none").extract(text) is None
    assert get_grader("gsm8k", fallback="none").extract("<answer>19</answer>") == "19"
    assert grader.extract("I do not know.") is None
    assert grader.extract("<answer>unknown</answer>") is None
    assert grader.extract("") is None


def test_extract_accepts_message_lists(grader):
    assert grader.extract([{"role": "assistant", "content": "<answer>$1,080</answer>"}]) == "1080"


@pytest.mark.parametrize(
    "extracted, gold, correct",
    [
        ("18", "18", True),
        ("1080", "1,080", True),
        ("1,080", "1080", True),
        ("0.5", r"\frac{1}{2}", True),
        ("2.5", "2.50", True),
        ("-3", "-3", True),
        ("3", "-3", False),
        ("17", "18", False),
        ("18.5", "18", False),
        ("1/3", "0.333333", True),
        ("0.33", "1/3", False),
        (None, "18", False),
    ],
)
def test_gsm8k_is_correct(grader, extracted, gold, correct):
    assert grader.is_correct(extracted, gold) is correct


def test_wrong_answers_are_not_correct(grader):
    assert not grader.is_correct(grader.extract("<answer>108</answer>"), "1,080")
    assert not grader.is_correct(grader.extract("no number"), "0")


def test_gsm8k_gold_solutions_grade_as_correct(grader):
    rows = [json.loads(line) for line in GSM8K_TEST.read_text().splitlines()[:200]]
    assert len(rows) == 200
    for row in rows:
        gold = row["answer"].split("####")[-1].strip()
        extracted = grader.extract(row["answer"])
        assert grader.is_correct(extracted, gold), (row["answer"], extracted)
        assert extracted == grader.extract(gold)  # one canonical string per value, for majority voting


def test_extract_and_verify_work_off_the_main_thread(grader):
    # math-verify's default timeouts use signal.alarm, which raises outside the main thread (TRL reward workers).
    results, errors = [], []

    def work():
        try:
            value = grader.extract(r"<answer>\frac{1}{2}</answer>")
            results.append((value, grader.is_correct(value, "0.5"), grader.is_correct("x", "y")))
        except Exception as exc:  # surfaced below; a thread's exception would otherwise be lost
            errors.append(exc)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(timeout=30)
    assert not errors, errors
    assert results == [("0.5", True, False)]


# ---- registry ----


def test_registry(grader):
    assert isinstance(grader, NumericGrader) and isinstance(grader, Grader)
    assert GRADERS["numeric"] is GRADERS["gsm8k"] is NumericGrader
    assert get_grader("numeric", answer_format="boxed").answer_format == "boxed"
    with pytest.raises(KeyError, match="gsm8k") as info:
        get_grader("nope")
    assert isinstance(info.value, ConfigError)  # jobs report it in one line
    with pytest.raises(ValueError, match="already registered"):
        register_grader("gsm8k")(NumericGrader)


# ---- bounded parsing: no answer can hang a grader ----

HOSTILE_ANSWERS = [
    r"\boxed{((9^{999})^{999})^{999}}",
    r"\boxed{9^{9^{9^{9}}}}",
    r"\boxed{\sum_{a=1}^{999}\sum_{b=1}^{999}\sum_{c=1}^{999} a b c}",
    r"\boxed{\prod_{n=1}^{999}\prod_{m=1}^{999} n m}",
    r"\boxed{\Gamma(10^{9})}",
    r"\boxed{\operatorname{factorial}(99999999)}",
    r"\boxed{(10^{9})!}",
    r"\boxed{" + "1+" * 5000 + "1}",
]


@pytest.mark.parametrize(
    "text, safe",
    [(r"2^{10}", True), (r"(2^{10})^{10}", True), (r"\sum_{n=1}^{10} n", True), (r"\frac{1}{2}", True),
     (r"((9^{999})^{999})^{999}", False), (r"\sum_{n=1}^{9}\sum_{m=1}^{9} nm", False),
     (r"\prod_{n=1}^{9}\prod_{m=1}^{9} n", False),
     (r"\Gamma(50)", False), (r"\operatorname{gamma}(5)", False), (r"30!", False)],
)
def test_sympy_screen(text, safe):
    from reasoning_rl.grading import numbers

    assert numbers._safe_for_sympy(text) is safe


def _grade_all(grader, answers, gold):
    return [grader.is_correct(grader.extract(a), gold) for a in answers]


@pytest.mark.reliability  # issue 16: crafted input, crash safety or secrets
def test_hostile_answers_are_fast_and_incorrect_on_any_thread(grader):
    import time

    start = time.process_time()
    assert _grade_all(grader, HOSTILE_ANSWERS, "18") == [False] * len(HOSTILE_ANSWERS)
    results = []
    thread = threading.Thread(target=lambda: results.append(_grade_all(grader, HOSTILE_ANSWERS, "18")))
    thread.start()
    thread.join(timeout=60)
    assert results == [[False] * len(HOSTILE_ANSWERS)]
    assert time.process_time() - start < 5, "the screen lets no hostile answer reach sympy"
    assert grader.timeouts == 0


@pytest.mark.reliability  # issue 16: crafted input, crash safety or secrets
def test_a_parse_past_the_bound_scores_zero_and_is_counted(grader, monkeypatch):
    # The screen off: ((9^{999})^{999})^{999} reaches sympy, which would compute a 950-million-digit power.
    import time

    from reasoning_rl.grading import bounded, numbers

    monkeypatch.setattr(numbers, "_safe_for_sympy", lambda text: True)
    monkeypatch.setattr(bounded, "SECONDS", 1.0)
    assert grader.is_correct(grader.extract(r"\boxed{\frac{1}{2}}"), "0.5")  # the worker started and warm
    hostile = r"\boxed{((9^{999})^{999})^{999}}"
    outcomes = []

    def grade():
        start, cpu = time.monotonic(), time.process_time()
        extracted = grader.extract(hostile)
        outcomes.append((extracted, grader.is_correct("((9^{999})^{999})^{999}", "18"),
                         time.monotonic() - start, time.process_time() - cpu))

    grade()
    thread = threading.Thread(target=grade)
    thread.start()
    thread.join(timeout=120)
    assert [o[:2] for o in outcomes] == [(None, False), (None, False)]  # scored 0, not the last number 999
    for _, _, wall, cpu in outcomes:  # two bounds of 1 s and the worker's restarts, not hours
        assert wall < 60 and cpu < 3, outcomes
    assert grader.timeouts == 4
    assert grader.is_correct(grader.extract(r"<answer>\frac{1}{2}</answer>"), "0.5")  # a fresh worker grades on


def _grade_half(connection):
    from reasoning_rl.grading import bounded

    grader = get_grader("gsm8k")
    connection.send((grader.is_correct(grader.extract(r"\boxed{\frac{1}{2}}"), "0.5"), bounded._CHILD._proc.pid))


def test_a_forked_process_starts_its_own_worker(grader):
    # A DataLoader worker forked after the first parse must not talk to its parent's worker over shared pipes.
    import multiprocessing

    from reasoning_rl.grading import bounded

    assert grader.is_correct(grader.extract(r"\boxed{\frac{1}{4}}"), "0.25")
    ours = bounded._CHILD._proc.pid
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_grade_half, args=(send,))
    child.start()
    assert receive.poll(120)
    correct, theirs = receive.recv()
    assert correct is True and theirs != ours
    child.join(30)
    assert child.exitcode == 0
    assert grader.is_correct(grader.extract(r"\boxed{\frac{3}{4}}"), "0.75")  # the parent's worker still answers


@pytest.mark.reliability  # issue 16: crafted input, crash safety or secrets
def test_evaluation_reports_the_timeouts(grader, monkeypatch):
    from reasoning_rl import evaluation
    from reasoning_rl.data.base import Problem
    from reasoning_rl.generation.base import Completion, SamplingParams
    from reasoning_rl.grading import bounded, numbers

    class Backend:
        last_stats: dict = {}

        def generate(self, prompts, params, *, progress=True):
            texts = [r"\boxed{((9^{999})^{999})^{999}}", r"\boxed{\frac{1}{2}}"]
            return [[Completion(text=t, num_tokens=3, finish_reason="stop") for t in texts] for _ in prompts]

    monkeypatch.setattr(numbers, "_safe_for_sympy", lambda text: True)
    monkeypatch.setattr(bounded, "SECONDS", 1.0)
    grader.timeouts = 5  # from earlier evaluations: each reports its own
    result = evaluation.evaluate([Problem(id="p", messages=[], gold="0.5")], ["q"], Backend(), grader,
                                 eval_cfg={"num_samples": 2, "ks": [1, 2], "bootstrap": {"n_resamples": 10}},
                                 sampling=SamplingParams(n=2), answer_format="boxed", progress=False)
    assert result.records[0]["correct"] == [False, True]
    assert result.stats["timeouts"] == 1 and result.flat()["eval/timeouts"] == 1
