"""One registry shape for every extension point (reasoning_rl/registry.py): names refused twice, one-line
errors for unknown names, modules found without an import list, and a toy algorithm added from tests/
only (tests/toy_algorithm.py + tests/conf/algorithm/toy.yaml), as docs/architecture.md shows."""

from __future__ import annotations

import contextlib
import sys
import types
from pathlib import Path

import pytest

from reasoning_rl.algorithms import ALGORITHMS, configured, get_algorithm
from reasoning_rl.data import DATASETS, get_dataset
from reasoning_rl.errors import ConfigError, Preempted, UnknownNameError
from reasoning_rl.generation import BACKENDS, build_backend
from reasoning_rl.grading import GRADERS, REWARDS, get_grader, get_reward_funcs
from reasoning_rl.registry import DuplicateNameError, Registry
from tests.test_config import compose_resolved

TESTS = Path(__file__).resolve().parent
SEARCHPATH = f"hydra.searchpath=[file://{TESTS / 'conf'}]"  # what a user gives: [file://tests/conf]
TOY = "tests.toy_algorithm"

# Every registry, with a name each already has.
REGISTRIES = {"dataset": (DATASETS, "gsm8k"), "grader": (GRADERS, "gsm8k"), "reward": (REWARDS, "correctness"),
              "algorithm": (ALGORITHMS, "grpo"), "generation backend": (BACKENDS, "hf")}


@contextlib.contextmanager
def isolated(registry: Registry, *modules: str):
    """These modules imported afresh inside, and their registrations gone again after: the registry and
    sys.modules stay as they were for them, and what other modules register meanwhile stays too."""

    def take_out() -> tuple[dict, dict]:
        entries = {n: e for n, e in registry._entries.items() if e[1] in modules}
        for name in entries:
            del registry._entries[name]
        return entries, {m: sys.modules.pop(m) for m in modules if m in sys.modules}

    entries, loaded = take_out()
    try:
        yield
    finally:
        take_out()
        registry._entries.update(entries)
        sys.modules.update(loaded)


@pytest.fixture
def toy():
    """A fresh toy algorithm, registered when the train job first looks it up (its yaml names the module)."""
    with isolated(ALGORITHMS, TOY):
        yield lambda: sys.modules[TOY]


def compose_toy(*overrides: str):
    return compose_resolved("train", [SEARCHPATH, "algorithm=toy", *overrides])


# ---- a toy algorithm from tests/ only ----


def test_a_toy_algorithm_from_tests_is_found_checked_and_dispatched(toy, monkeypatch):
    from reasoning_rl import train_job

    cfg = compose_toy()
    assert cfg.algorithm.name == "toy" and cfg.algorithm.module == TOY
    train_job.check_config(cfg)  # imports tests/toy_algorithm.py, which registers `toy`
    module = toy()
    algorithm = get_algorithm("toy")
    assert configured(cfg) is algorithm and "toy" in ALGORITHMS
    assert (algorithm.name, algorithm.train, algorithm.check_config) == ("toy", module.train, module.check_config)
    assert algorithm.backends == ("hf",)
    assert module.CALLS == [("check_config", cfg)]

    # The job hands the algorithm its context: no model loads (build_context and the run dir are stubbed),
    # and the context stops the run at once as a preempted run stops.
    ctx = types.SimpleNamespace(preempted=True, checkpoint_dir="checkpoints")

    @contextlib.contextmanager
    def job_run(cfg, resuming=None):
        yield types.SimpleNamespace(main=True), None

    monkeypatch.setattr(train_job, "job_run", job_run)
    monkeypatch.setattr(train_job, "record_parent", lambda run_dir, cfg: None)
    monkeypatch.setattr(train_job, "build_context", lambda cfg, run_dir, tracker, settings: ctx)
    monkeypatch.setattr(train_job.requeue, "schedule_requeue", lambda: "re-run the same command to resume")
    with pytest.raises(Preempted):
        train_job.run(cfg)
    assert module.CALLS[1:] == [("check_config", cfg), ("train", ctx)]


def test_the_toy_algorithms_own_check_and_backends_are_the_train_jobs(toy):
    from reasoning_rl.train_job import check_config

    with pytest.raises(ConfigError, match="algorithm.steps must be >= 1, got 0"):
        check_config(compose_toy("algorithm.steps=0"))
    # Its registration says it samples with generation=hf only; GRPO's says vllm too.
    with pytest.raises(ConfigError, match=r"^generation=vllm is for evaluation and algorithm=grpo; toy samples "
                                          r"with generation=hf$"):
        check_config(compose_toy("generation=vllm"))
    assert toy().CALLS == []


# ---- duplicates, unknown names ----


@pytest.mark.parametrize("kind", REGISTRIES)
def test_a_name_is_registered_once_in_every_registry(kind):
    registry, taken = REGISTRIES[kind]
    registry.get(taken)
    assert registry.kind == kind
    with pytest.raises(DuplicateNameError, match=rf"^{kind} {taken!r} is already registered \(by reasoning_rl\."):
        registry.register(taken)  # refused at once, before any object is decorated


def test_the_public_register_functions_refuse_duplicates():
    from reasoning_rl.algorithms import register_algorithm
    from reasoning_rl.data import register_dataset
    from reasoning_rl.generation import register_backend
    from reasoning_rl.grading import register_grader, register_reward

    get_algorithm("grpo")
    for register, taken in ((register_dataset, "gsm8k"), (register_grader, "choice"), (register_reward, "format_soft"),
                            (register_algorithm, "grpo"), (register_backend, "vllm")):
        with pytest.raises(ValueError, match="already registered"):
            register(taken)


@pytest.mark.parametrize("kind", REGISTRIES)
def test_an_unknown_name_is_one_line_listing_the_known_ones(kind):
    registry, _ = REGISTRIES[kind]
    with pytest.raises(UnknownNameError) as info:
        registry.get("nope")
    message = str(info.value)
    assert message == f"unknown {kind} 'nope'; known {kind}s: {', '.join(registry.names())}"
    assert "\n" not in message and isinstance(info.value, ConfigError) and isinstance(info.value, KeyError)
    assert "nope" not in registry and registry.names() == sorted(registry)


def test_the_lookup_functions_raise_the_registry_error():
    lookups = [lambda: get_dataset("nope"), lambda: get_grader("nope"), lambda: get_algorithm("nope"),
               lambda: get_reward_funcs(["correctness", "nope"], grader=get_grader("gsm8k"), answer_format="boxed"),
               lambda: build_backend({"backend": "nope"})]
    for lookup, kind in zip(lookups, ["dataset", "grader", "algorithm", "reward", "generation backend"], strict=True):
        with pytest.raises(UnknownNameError, match=f"^unknown {kind} 'nope'; known {kind}s: "):
            lookup()


def test_a_grader_is_named_by_its_registration():
    assert get_grader("numeric").name == "numeric" and get_grader("gsm8k").name == "gsm8k"
    assert not hasattr(GRADERS["choice"], "name")  # no second place to name it


# ---- discovery ----


def _write_package(root: Path, name: str, files: dict[str, str]) -> None:
    (root / name).mkdir()
    for filename, text in files.items():
        (root / name / filename).write_text(text)


def test_discovery_imports_the_packages_modules_without_an_import_list(tmp_path, monkeypatch):
    registering = "from {pkg} import THINGS\n\n\n@THINGS.register({name!r})\ndef thing():\n    return {name!r}\n"
    _write_package(tmp_path, "plug_pkg", {
        "__init__.py": "from reasoning_rl.registry import Registry\n\nTHINGS = Registry('thing', package='plug_pkg')\n",
        "alpha.py": registering.format(pkg="plug_pkg", name="alpha"),
        "other.py": registering.format(pkg="plug_pkg", name="gamma"),  # not named like its entry
        "_private.py": "raise AssertionError('modules starting with _ are not imported')\n",
    })
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        import plug_pkg

        assert plug_pkg.THINGS._entries == {}
        assert plug_pkg.THINGS.get("alpha")() == "alpha"
        assert "plug_pkg.other" not in sys.modules  # the module named like the entry was enough
        assert "gamma" in plug_pkg.THINGS  # a miss imports the whole package
        assert plug_pkg.THINGS.names() == ["alpha", "gamma"] and "plug_pkg._private" not in sys.modules
        with pytest.raises(UnknownNameError, match="known things: alpha, gamma$"):
            plug_pkg.THINGS.get("delta")
    finally:
        for name in [m for m in sys.modules if m == "plug_pkg" or m.startswith("plug_pkg.")]:
            del sys.modules[name]


def test_a_new_algorithm_module_is_found_in_the_package(tmp_path, monkeypatch):
    """A module dropped into reasoning_rl/algorithms/ (here: a folder added to the package's path) is an
    algorithm as soon as its name is asked for: nothing to import or list by hand."""
    import reasoning_rl.algorithms as package

    (tmp_path / "dropped_in.py").write_text(
        "from reasoning_rl.algorithms import register_algorithm\n\n\n"
        "def check_config(cfg):\n    pass\n\n\n"
        "def train(ctx):\n    pass\n\n\n"
        "register_algorithm('dropped_in', check_config=check_config, backends=('hf', 'vllm'))(train)\n")
    monkeypatch.setattr(package, "__path__", [*package.__path__, str(tmp_path)])
    with isolated(ALGORITHMS, "reasoning_rl.algorithms.dropped_in"):
        algorithm = get_algorithm("dropped_in")
        assert algorithm.backends == ("hf", "vllm")
        assert algorithm.train.__module__ == "reasoning_rl.algorithms.dropped_in"
