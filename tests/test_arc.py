"""AI2 ARC and ARC-AGI: loaders, checksums, bad rows, graders, grid round trip, rewards, contamination."""

import hashlib
import json
import logging
import random
import shutil

import pytest

from reasoning_rl.data import ai2_arc, arc_agi, check_contamination, load_problems, registry
from reasoning_rl.data.grids import canonical_grid, parse_grid, render_grid
from reasoning_rl.errors import ConfigError, DataError
from reasoning_rl.grading import get_grader, get_reward_funcs
from reasoning_rl.metrics import compute_problem_scores
from tests.helpers import run_job

PROMPT = {"think": True, "answer_format": "answer_tag", "system": "Think, then answer.", "user_template": "{question}"}


def ai2_cfg(name="arc_challenge", **overrides):
    cfg = {"name": name, "source": "bundled", "split": "test", "limit": None, "sample": "first", "seed": 0,
           "few_shot": 0, "on_bad_row": "skip"}
    return {**cfg, **overrides}


def agi_cfg(name="arc_agi1", **overrides):
    cfg = {"name": name, "source": "bundled", "split": "evaluation", "limit": None, "sample": "first", "seed": 0,
           "grid_separator": "", "max_prompt_tokens": None, "tokenizer": None, "on_bad_row": "skip"}
    return {**cfg, **overrides}


# ---- loaders: documented counts (../shared/data/README.md) ----


@pytest.mark.parametrize("name,split,count", [
    ("arc_challenge", "train", 1119), ("arc_challenge", "dev", 299), ("arc_challenge", "test", 1172),
    ("arc_easy", "train", 2251), ("arc_easy", "dev", 570), ("arc_easy", "test", 2376),
])
def test_ai2_arc_has_documented_counts(name, split, count):
    problems, grader = load_problems(ai2_cfg(name, split=split), PROMPT)
    assert len(problems) == count and grader == "choice"
    assert len({p.id for p in problems}) == count
    assert all(p.gold in p.meta["choices"] for p in problems)


@pytest.mark.parametrize("name,split,tasks,test_inputs", [
    ("arc_agi1", "training", 400, 416), ("arc_agi1", "evaluation", 400, 419),
    ("arc_agi2", "training", 1000, 1076), ("arc_agi2", "evaluation", 120, 167),
])
def test_arc_agi_has_documented_counts(name, split, tasks, test_inputs):
    problems, grader = load_problems(agi_cfg(name, split=split), PROMPT)
    assert grader == "grid"
    assert len({p.meta["task_id"] for p in problems}) == tasks
    assert len(problems) == test_inputs == len({p.id for p in problems})


def test_split_aliases_let_the_train_job_defaults_work():
    dev, _ = load_problems(ai2_cfg(split="dev", limit=5), PROMPT)
    validation, _ = load_problems(ai2_cfg(split="validation", limit=5), PROMPT)
    assert [p.id for p in dev] == [p.id for p in validation]
    for alias, split in (("train", "training"), ("test", "evaluation")):
        a, _ = load_problems(agi_cfg(split=alias, limit=3), PROMPT)
        b, _ = load_problems(agi_cfg(split=split, limit=3), PROMPT)
        assert [p.id for p in a] == [p.id for p in b] and a[0].id.startswith(f"arc_agi1/{split}/")
    with pytest.raises(DataError, match="split"):
        load_problems(ai2_cfg(split="training"), PROMPT)
    with pytest.raises(DataError, match="split"):
        load_problems(agi_cfg(split="dev"), PROMPT)


def test_choice_prompt_shows_the_labels_as_given():
    problems, _ = load_problems(ai2_cfg(), PROMPT)
    numeric = next(p for p in problems if p.gold.isdigit())
    letters = next(p for p in problems if p.gold.isalpha())
    for problem in (numeric, letters):
        text = problem.messages[-1]["content"]
        labels = list(problem.meta["choices"])
        for label, choice in problem.meta["choices"].items():
            assert f"\n{label}. {choice.strip()}" in text
        assert text.endswith(f"({', '.join(labels[:-1])} or {labels[-1]}).")
    sizes = {len(p.meta["choices"]) for p in problems}
    assert {3, 4, 5} & sizes - {4}, "the test split has rows with 3 or 5 choices"


def test_ai2_arc_few_shot_comes_from_train():
    (problem,), _ = load_problems(ai2_cfg(limit=1, few_shot=2), PROMPT)
    assert [m["role"] for m in problem.messages] == ["system", "user", "assistant", "user", "assistant", "user"]
    train_first = json.loads(
        (registry.bundled_dir("ai2_arc") / "ARC-Challenge-Train.jsonl").read_text().splitlines()[0])
    assert train_first["question"]["stem"] in problem.messages[1]["content"]
    assert problem.messages[2]["content"].endswith(f"<answer>{train_first['answerKey']}</answer>")


def test_ai2_arc_hub_rows_are_normalised(monkeypatch):
    asked = []

    def fake_hub(hub_id, hub_config, split):
        asked.append((hub_id, hub_config, split))
        return [{"id": "q1", "question": "Why?", "choices": {"text": ["x", "y", "z"], "label": ["1", "2", "3"]},
                 "answerKey": "2"}]

    monkeypatch.setattr(ai2_arc, "load_hub_rows", fake_hub)
    (problem,), _ = load_problems(ai2_cfg("arc_easy", source="hub", split="dev", hub_id="allenai/ai2_arc"), PROMPT)
    assert asked == [("allenai/ai2_arc", "ARC-Easy", "validation")]
    assert problem.gold == "2" and problem.meta["choices"] == {"1": "x", "2": "y", "3": "z"}
    assert problem.id == "arc_easy/dev/q1" and "\n3. z\n" in problem.messages[-1]["content"]


def test_arc_agi_prompt_and_multiple_test_inputs():
    problems, _ = load_problems(agi_cfg(), PROMPT)
    tasks = json.loads((registry.bundled_dir("arc_agi/arc-agi-1") / "evaluation.json").read_text())
    multi = next(task_id for task_id, task in tasks.items() if len(task["test"]) > 1)
    mine = [p for p in problems if p.meta["task_id"] == multi]
    assert [p.id for p in mine] == [f"arc_agi1/evaluation/{multi}#{i}" for i in range(len(tasks[multi]["test"]))]
    for i, problem in enumerate(mine):
        pair = tasks[multi]["test"][i]
        assert problem.gold == "\n".join("".join(map(str, row)) for row in pair["output"])
        text = problem.messages[-1]["content"]
        assert text.count("Example ") == len(tasks[multi]["train"])
        assert "Test input:\n" + "\n".join("".join(map(str, row)) for row in pair["input"]) in text
    spaced, _ = load_problems(agi_cfg(grid_separator=" ", limit=1), PROMPT)
    first_row = tasks[spaced[0].meta["task_id"]]["train"][0]["input"][0]
    assert " ".join(map(str, first_row)) in spaced[0].messages[-1]["content"]


def test_arc_agi_config_errors():
    with pytest.raises(ConfigError, match="few_shot"):
        load_problems(agi_cfg(few_shot=1), PROMPT)
    with pytest.raises(ConfigError, match="source"):
        load_problems(agi_cfg(source="hub"), PROMPT)
    with pytest.raises(ConfigError, match="max_prompt_tokens"):
        load_problems(agi_cfg(max_prompt_tokens=0), PROMPT)
    with pytest.raises(ConfigError, match="on_bad_row"):
        load_problems(agi_cfg(on_bad_row="ignore"), PROMPT)


# ---- length filter ----


def test_max_prompt_tokens_keeps_what_fits_and_logs_the_drop(caplog):
    every, _ = load_problems(agi_cfg(), PROMPT)
    lengths = {p.id: arc_agi.approx_tokens("\n".join(m["content"] for m in p.messages)) for p in every}
    with caplog.at_level(logging.INFO, logger="reasoning_rl.data.arc_agi"):
        kept, _ = load_problems(agi_cfg(max_prompt_tokens=1024), PROMPT)
    fits = [p.id for p in every if lengths[p.id] <= 1024]
    assert [p.id for p in kept] == fits and 0 < len(fits) < len(every)
    assert f"dropped {len(every) - len(fits)}" in caplog.text
    limited, _ = load_problems(agi_cfg(max_prompt_tokens=1024, limit=5), PROMPT)
    assert [p.id for p in limited] == fits[:5]  # the limit counts problems that fit


def test_approx_tokens_counts_digits_and_breaks_one_each():
    assert arc_agi.approx_tokens("0120\n3450") == 9
    assert arc_agi.approx_tokens("abcdefgh") == 2


# ---- checksums and bad rows ----


def bundle_copy(tmp_path, monkeypatch, name):
    shutil.copytree(registry.bundled_dir(name), tmp_path / name)
    for path in (tmp_path / name).rglob("*"):
        path.chmod(0o644 if path.is_file() else 0o755)
    monkeypatch.setattr(registry, "bundled_dir", lambda folder: tmp_path / folder)
    return tmp_path / name


def reseal(folder):
    """Rewrite SHA256SUMS, as if the edited files were the shipped ones."""
    lines = [f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.name}" for p in sorted(folder.iterdir())
             if p.name != "SHA256SUMS" and p.is_file()]
    (folder / "SHA256SUMS").write_text("\n".join(lines) + "\n")


def test_corrupted_ai2_arc_file_fails_checksum(tmp_path, monkeypatch):
    folder = bundle_copy(tmp_path, monkeypatch, "ai2_arc")
    path = folder / "ARC-Challenge-Test.jsonl"
    path.write_text(path.read_text().replace("Mercury", "Venus", 1))
    with pytest.raises(DataError, match="sha256"):
        load_problems(ai2_cfg(), PROMPT)
    load_problems(ai2_cfg(split="train", limit=1), PROMPT)  # the other files still load


def test_corrupted_arc_agi_file_fails_checksum(tmp_path, monkeypatch):
    folder = bundle_copy(tmp_path, monkeypatch, "arc_agi") / "arc-agi-1"
    path = folder / "evaluation.json"
    path.write_bytes(path.read_bytes().replace(b"[0,", b"[1,", 1))
    with pytest.raises(DataError, match="sha256"):
        load_problems(agi_cfg(), PROMPT)


def choice(label, text):
    return {"label": label, "text": text}


BAD_AI2_ROWS = [
    {"id": "good", "question": {"stem": "Q?", "choices": [choice("A", "a"), choice("B", "b")]}, "answerKey": "B"},
    {"id": "key_not_a_label", "question": {"stem": "Q?", "choices": [choice("A", "a"), choice("B", "b")]},
     "answerKey": "E"},
    {"id": "one_choice", "question": {"stem": "Q?", "choices": [choice("A", "a")]}, "answerKey": "A"},
    {"id": "no_stem", "question": {"stem": " ", "choices": [choice("A", "a"), choice("B", "b")]}, "answerKey": "A"},
    {"id": "five_numbered", "question": {"stem": "Q?", "choices": [choice(str(i), f"c{i}") for i in range(1, 6)]},
     "answerKey": "5"},
]


def test_bad_ai2_rows_are_skipped_with_a_count_or_refused(tmp_path, monkeypatch, caplog):
    folder = bundle_copy(tmp_path, monkeypatch, "ai2_arc")
    (folder / "ARC-Easy-Test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in BAD_AI2_ROWS))
    reseal(folder)
    with caplog.at_level(logging.WARNING):
        problems, _ = load_problems(ai2_cfg("arc_easy"), PROMPT)
    assert [p.meta["source_id"] for p in problems] == ["good", "five_numbered"]
    assert "skipped 3 bad row(s) of 5" in caplog.text and "key_not_a_label" in caplog.text
    with pytest.raises(DataError, match="key_not_a_label.*answer key 'E' is not among the labels"):
        load_problems(ai2_cfg("arc_easy", on_bad_row="error"), PROMPT)


GOOD_PAIR = {"input": [[1, 2], [3, 4]], "output": [[4, 3], [2, 1]]}
BAD_TASKS = {
    "good": {"train": [GOOD_PAIR], "test": [GOOD_PAIR]},
    "colour_10": {"train": [{"input": [[10]], "output": [[1]]}], "test": [GOOD_PAIR]},
    "ragged": {"train": [GOOD_PAIR], "test": [{"input": [[1, 2], [3]], "output": [[1]]}]},
    "empty": {"train": [], "test": []},
    "no_test_output": {"train": [GOOD_PAIR], "test": [{"input": [[1]]}]},
}


def test_bad_arc_agi_tasks_are_skipped_with_a_count_or_refused(tmp_path, monkeypatch, caplog):
    folder = bundle_copy(tmp_path, monkeypatch, "arc_agi") / "arc-agi-2"
    (folder / "evaluation.json").write_text(json.dumps(BAD_TASKS))
    reseal(folder)
    with caplog.at_level(logging.WARNING):
        problems, _ = load_problems(agi_cfg("arc_agi2"), PROMPT)
    assert [p.id for p in problems] == ["arc_agi2/evaluation/good#0"]
    assert "skipped 4 bad row(s) of 5" in caplog.text
    for reason in ("outside 0-9", "ragged", "empty task", "no output"):
        assert reason in caplog.text
    with pytest.raises(DataError, match="colour_10.*outside 0-9"):
        load_problems(agi_cfg("arc_agi2", on_bad_row="error"), PROMPT)


def test_licenses_ship_with_the_data():
    assert "CC BY-SA 4.0" in (registry.bundled_dir("ai2_arc") / "LICENSE").read_text()
    for folder in ("arc-agi-1", "arc-agi-2"):
        assert "Apache License" in (registry.bundled_dir("arc_agi") / folder / "LICENSE").read_text()


# ---- the choice grader ----


@pytest.mark.parametrize("completion, extracted", [
    ("<think>x</think><answer>B</answer>", "B"),
    ("<answer>(c)</answer>", "C"),
    ("<answer> B. </answer>", "B"),
    ("<answer>B) photosynthesis</answer>", "B"),
    ("<answer>**D**</answer>", "D"),
    ("<answer>The answer is (A).</answer>", "A"),
    ("<answer>2</answer>", "2"),
    ("<answer>(4)</answer>", "4"),
    ("The final answer is \\boxed{C}.", "C"),
    ("I think the correct answer is D because plants need light.", "D"),
    ("The best answer would be D. building materials will be cheaper.", "D"),
    ("Looking at (A) and (B), it must be (B).", "B"),
    ("b", "B"),
    # malformed: no label, choice text alone, a number that is no label, an empty answer
    ("<answer>photosynthesis</answer>", None),
    ("<answer>A plant</answer>", None),
    ("<answer>10</answer>", None),
    ("<think>hmm</think><answer></answer>", None),
    ("I do not know.", None),
])
def test_choice_grader_extracts_labels(completion, extracted):
    assert get_grader("choice").extract(completion) == extracted


def test_choice_grader_compares_labels():
    grader = get_grader("choice")
    assert grader.is_correct("B", "B") and grader.is_correct("b", "B") and grader.is_correct("3", "3")
    assert not grader.is_correct("C", "B") and not grader.is_correct(None, "B") and not grader.is_correct("B", "2")
    assert get_grader("choice", fallback="none").extract("The answer is B") is None
    with pytest.raises(ConfigError):
        get_grader("choice", fallback="last_letter")


def test_maj_votes_on_the_normalised_label():
    grader = get_grader("choice")
    texts = ["<answer>B</answer>", "<answer>(b)</answer>", "<answer>B. cells</answer>", "<answer>A</answer>"]
    extracted = [grader.extract(t) for t in texts]
    scores = compute_problem_scores(extracted, [grader.is_correct(e, "B") for e in extracted], [4], mode="first_k")
    assert extracted == ["B", "B", "B", "A"] and scores["maj@4"] == 1.0


# ---- grids: round trip, the grid grader, the partial-credit reward ----


def random_grid(rng):
    width = rng.randint(1, 30)
    return [[rng.randrange(10) for _ in range(width)] for _ in range(rng.randint(1, 30))]


@pytest.mark.parametrize("separator", ["", " ", ",", "|"])
def test_grids_round_trip_through_render_and_parse(separator):
    rng = random.Random(0)
    grids = [random_grid(rng) for _ in range(200)]
    tasks = json.loads((registry.bundled_dir("arc_agi/arc-agi-1") / "evaluation.json").read_text())
    grids += [pair["output"] for task in tasks.values() for pair in task["test"]]
    grader = get_grader("grid")
    for grid in grids:
        rendered = render_grid(grid, separator)
        assert parse_grid(rendered) == grid
        assert grader.extract(f"<think>done</think>\n<answer>\n{rendered}\n</answer>") == canonical_grid(grid)


@pytest.mark.parametrize("answer, grid", [
    ("012\n345", [[0, 1, 2], [3, 4, 5]]),
    ("Output:\n0 1 2\n3 4 5\nThat is the grid.", [[0, 1, 2], [3, 4, 5]]),
    ("[[0, 1, 2], [3, 4, 5]]", [[0, 1, 2], [3, 4, 5]]),
    ("```\n01\n10\n```", [[0, 1], [1, 0]]),
    ("012\n34", None),  # ragged
    ("1,2\n3,10", None),  # 10 is no colour
    ("[[1, 2], [3]]", None),
    ("no grid here", None),
    ("", None),
])
def test_parse_grid(answer, grid):
    assert parse_grid(answer) == grid


def test_grid_grader_needs_the_whole_grid():
    grader = get_grader("grid")
    gold = "012\n345"
    assert grader.is_correct(grader.extract("<answer>0 1 2\n3 4 5</answer>"), gold)
    assert grader.is_correct(grader.extract("<answer>[[0,1,2],[3,4,5]]</answer>"), gold)
    assert not grader.is_correct(grader.extract("<answer>012\n344</answer>"), gold)  # one cell off
    assert not grader.is_correct(grader.extract("<answer>012</answer>"), gold)  # wrong shape
    assert not grader.is_correct(grader.extract("<answer>01\n34\n55</answer>"), gold)
    assert grader.extract("<answer>012\n34</answer>") is None
    # outside the answer block: the last grid written, unless the fallback is off
    assert grader.extract("<think>012\n345</think> so:\n999\n999") == "999\n999"
    assert get_grader("grid", fallback="none").extract("<think>x</think> 012\n345") is None
    assert not grader.is_correct(None, gold)


def test_grid_cells_reward_gives_partial_credit_for_the_right_shape():
    grader = get_grader("grid")
    (reward,) = get_reward_funcs(["grid_cells"], grader=grader, answer_format="answer_tag")
    gold = "0120\n3450\n0000"
    completions = [
        [{"role": "assistant", "content": "<answer>0120\n3450\n0000</answer>"}],
        "<answer>0 1 2 0\n3 4 5 0\n1 1 1 1</answer>",  # 8 of 12 cells
        "<answer>0120\n3450</answer>",  # wrong shape
        "<answer>nothing</answer> and no grid",
    ]
    assert reward(prompts=None, completions=completions, gold=[gold] * 4) == pytest.approx([1.0, 8 / 12, 0.0, 0.0])
    assert reward.__name__ == "grid_cells"
    (wrong,) = get_reward_funcs(["grid_cells"], grader=get_grader("gsm8k"), answer_format="answer_tag")
    with pytest.raises(ConfigError, match="grid"):
        wrong(completions=["<answer>18</answer>"], gold=["18"])


# ---- contamination ----


def test_arc_agi2_training_contains_376_arc_agi1_evaluation_tasks(caplog):
    train, _ = load_problems(agi_cfg("arc_agi2", split="train"), PROMPT)
    evaluation, _ = load_problems(agi_cfg("arc_agi1", split="test"), PROMPT)
    with pytest.raises(ConfigError, match="376 of the 400 evaluation.*allow_contamination=true"):
        check_contamination(train, evaluation, allow=False)
    with caplog.at_level(logging.WARNING):
        shared = check_contamination(train, evaluation, allow=True)
    assert len(shared) == 376 and "CONTAMINATED" in caplog.text
    clean, _ = load_problems(agi_cfg("arc_agi1", split="train"), PROMPT)
    assert not check_contamination(clean, evaluation, allow=False)


def test_same_questions_in_train_and_eval_are_refused():
    train, _ = load_problems(ai2_cfg("arc_easy", split="train", limit=50), PROMPT)
    evaluation, _ = load_problems(ai2_cfg("arc_easy", split="train", limit=10), PROMPT)
    with pytest.raises(ConfigError, match="10 of the 10"):
        check_contamination(train, evaluation, allow=False)
    test, _ = load_problems(ai2_cfg("arc_easy", split="test"), PROMPT)
    assert not check_contamination(train, test, allow=False)


def test_train_job_refuses_a_contaminated_eval_before_loading_the_model(tmp_path):
    result = run_job("train", "dataset=arc_agi2", "+dataset@eval.dataset=arc_agi1", "logger=none",
                     "dataset.tokenizer=null", "eval.dataset.tokenizer=null", f"hydra.run.dir={tmp_path / 'run'}",
                     timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "error:" in result.stderr and "dataset.allow_contamination=true" in result.stderr
    assert "Loading weights" not in result.stderr


# ---- the jobs end to end (slow) ----


def summary_of(run_dir):
    return json.loads((run_dir / "summary.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["arc_challenge", "arc_agi1"])  # smoke: ARC-AGI prompts <= 512 tokens
def test_evaluate_smoke_on_arc(tmp_path, dataset):
    run_dir = tmp_path / "run"
    result = run_job("evaluate", f"dataset={dataset}", "debug=smoke", "eval.num_samples=8", "eval.ks=[1,8]",
                     f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    summary = summary_of(run_dir)
    assert {"pass@1", "pass@8", "maj@8"} <= set(summary) and summary["pass@8"]["n"] == 4


@pytest.mark.slow
def test_grpo_smoke_trains_on_arc_easy(tmp_path):
    run_dir = tmp_path / "run"
    result = run_job("train", "algorithm=grpo", "dataset=arc_easy", "debug=smoke", "eval.limit=2",
                     f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((run_dir / "status.json").read_text())["status"] == "completed"
    assert "pass@8" in summary_of(run_dir)


@pytest.mark.parametrize("cfg", [ai2_cfg(limit=10**6), ai2_cfg(limit=10**6, sample="random"),
                                 agi_cfg(limit=10**6), agi_cfg(split="training", limit=10**6, sample="random")],
                         ids=["ai2_first", "ai2_random", "agi_first", "agi_random"])
@pytest.mark.reliability  # issue 16: crafted input, crash safety or secrets
def test_limit_above_the_split_size_is_a_config_error(cfg):
    with pytest.raises(ConfigError, match=r"dataset\.limit=1000000 is more than the \d+ problems"):
        load_problems(cfg, PROMPT)
