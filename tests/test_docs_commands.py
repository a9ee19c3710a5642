"""Every `python -m reasoning_rl.<job> …` command that README.md and docs/*.md show composes.

Nothing runs: the Hydra jobs' overrides are composed in-process with Hydra's compose API (as
tests/test_config.py does) and go through the checks the job makes before it loads anything; the
plain CLIs' arguments go through their own parsers. A failure is named by the docs line.

**What is extracted.** From README.md and docs/*.md (not docs/results/: those are generated reports):
fenced code blocks whose info string is empty, bash, sh, shell, console or zsh, and inline `code`
spans in the prose (a span may wrap across lines). Every occurrence of `python -m reasoning_rl.` in
these files must become a command or be allow-listed below (test_every_occurrence_is_extracted):
a command in a yaml or python block, or in an indented code block, fails that test until it is
handled here.

**Shell handling**, in this order, per logical line:
- `#` at the start of a word, outside quotes, starts a comment to the end of the physical line.
- A physical line ending in `\\` continues on the next one; the command is named by its first line.
- A line that is only `NAME=value` assigns a shell variable; `$NAME` / `${NAME}` in later lines of the
  same block are expanded (unquoted, so the value is word-split as bash would).
- `for V in a b c; do BODY; done` becomes BODY once per value, `$V` expanded.
- Words are split as bash would (quotes removed, `'dataset.path={a: b}'` stays one word); `&&`,
  `||`, `;`, `|`, `&` separate commands, and only the ones that are `[NAME=value …] python -m
  reasoning_rl.X …` are kept. The `NAME=value` prefix is put into os.environ while the command is
  checked (e.g. `WANDB_MODE=online` changes logger.mode). Brace expansion (`runs/{a,b}`) is not done:
  such words are paths, and paths are not checked for existence anyway.

**Placeholders** (the docs show shapes of commands, not only literal ones):
- `[ … ]` starting a word (after a space, so not a Hydra list value such as `eval.ks=[1]`) is an optional
  part: the brackets are dropped and what is inside is kept, so its flags are checked too.
- `<anything>` (e.g. `outputs/evaluate/<base eval>`, `hydra.run.dir=<new dir>`) is a placeholder.
- A word or override value in capitals (`RUN_DIR`, `DIR`, `TRAIN_RUN_DIR`, `NAME`, `ENTITY/PROJECT`,
  `RUN_OR_SWEEP_DIR…`) is a placeholder, and so is a word or value holding `…` (`outputs/train/…/SFT_RUN`).
  Every placeholder becomes a path under the test's tmp dir (for a plain CLI that is only a string).
- A word that is only `…` ("and more arguments") is dropped; a trailing `…` on a word (`RUN_DIR…`,
  "one or more") is dropped from it.
- `KEY=…` (any value) is dropped from the overrides after checking that KEY is one of the job's config
  groups or keys; `KEY=VALUE` with a placeholder key (reproduce's `[KEY=VALUE…]`) is dropped from a
  Hydra job's overrides, and passed as it is to reproduce, whose overrides are any strings.
- In an inline span, `\\|` is `|` (an escaped pipe in a markdown table), and `key=a|b|c` lists
  alternatives: the command is checked once per alternative.
- SPELLED_OUT: a placeholder the prose resolves (`rl30_X` … "for X in grpo, ppo, trpo") is replaced
  by each value the prose gives. ALLOW_LIST: a fragment that is not a command at all, with the reason.
  Both are keyed by (file, text) and each entry must still match something in the docs.

**The checks.**
- train / evaluate: without `-m` the overrides compose (with Hydra's own config, so `hydra.launcher.*`
  and `hydra/launcher=` overrides are checked against the launcher); with `-m` (anywhere on the line)
  the sweep is expanded as Hydra's BasicSweeper does, the selected `sweep=` preset's
  `hydra.sweeper.params` included, and every job of it composes. Each composed config is resolved
  and goes through the job's own `run(cfg)` up to the point where the job would open its run dir
  (`job_run` is replaced by a stop): train_job.check_config (the algorithm's, eval, generation,
  logger, peft, checkpoint checks), evaluate's eval, generation, sampling, budget forcing, checkpoint
  and logger checks. Checks that read the run a command points at (`init_from=`:
  train_job.parent / warm_start.resolve_parent; `adapter=`: models.find_adapter) are stubbed,
  since the docs' run dirs do not exist here, and so is the one that asks whether this machine can run
  vLLM (generation.vllm.check_available: GPU commands are shown, and checked, on CPU too). What the
  job checks only once it reads its data (e.g. datasets.md's contamination example, which the docs
  show failing on purpose) is not part of composing and is not checked.
- compare / reproduce: their `parse_args` (argparse: unknown flags and missing positionals fail;
  abbreviated flags such as `--base` pass, as argparse accepts them); reproduce's overrides must parse
  as Hydra overrides. Run dirs are not read.
- pipeline: `split_argv` + `load_pipeline` (with the pipeline's own `pipeline.*` overrides, placeholders
  as tmp paths), then every evaluate/train stage's command line, as `pipeline.command` builds it from
  the docs command's stage overrides (plus its `hydra/launcher` overrides), composes and passes its
  job's checks like the above; with a launcher, `pipeline_slurm.launcher_params` composes it too.
- any other `python -m reasoning_rl.X` must name a module that has a `__main__` guard.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

import pytest

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

PREFIX = "python -m reasoning_rl."
SHELL_INFO = {"", "bash", "sh", "shell", "console", "zsh"}
HYDRA_JOBS = ("train", "evaluate")
PLACEHOLDER = "__DOCS_PLACEHOLDER__"

# (file, text the command holds) -> the concrete spellings of the placeholder, as the prose gives them.
SPELLED_OUT = {
    # "`python -m reasoning_rl.train experiment=rl30_X … hydra.run.dir=runs/rl30_X` for X in grpo, ppo, trpo"
    ("docs/algorithms.md", "rl30_X"): ["rl30_grpo", "rl30_ppo", "rl30_trpo"],
}

# (file, text the command holds) -> why it is not a command that can be composed.
ALLOW_LIST = {
    ("docs/compare.md", "python -m reasoning_rl.<job> <saved overrides> <your overrides>"):
        "describes what reproduce runs for any saved run: the job itself is the placeholder",
}


# ---------------------------------------------------------------------------------------------
# Extraction


@dataclass
class DocCommand:
    file: str
    line: int
    occurrence: int  # which PREFIX of that line (several may share a line)
    text: str  # the logical line as written (continuations joined), for messages and the allow-list
    env: dict[str, str]
    module: str  # after `reasoning_rl.`
    args: list[str] = field(default_factory=list)

    @property
    def origin(self) -> tuple[str, int, int]:
        return (self.file, self.line, self.occurrence)

    def shown(self) -> str:
        return shlex.join(["python", "-m", f"reasoning_rl.{self.module}", *self.args])


def strip_comment(line: str) -> str:
    """The line without a shell comment: `#` at the start of a word, outside quotes."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line


def logical_lines(block: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """(first line, text): `\\` continuations joined by newlines (which count the lines), comments cut."""
    out, first, parts = [], None, []
    for number, raw in block:
        text = strip_comment(raw).rstrip()
        first = number if first is None else first
        continued = text.endswith("\\")
        parts.append(text[:-1] if continued else text)
        if not continued:
            out.append((first, "\n".join(parts)))
            first, parts = None, []
    if parts:
        out.append((first, "\n".join(parts)))
    return out


_ASSIGNMENT = re.compile(r"^[A-Za-z_]\w*=")
_FOR_LOOP = re.compile(r"\bfor\s+(\w+)\s+in\s+([^;]*);\s*do\s+(.*?);\s*done\b")
_VAR = re.compile(r"\$(?:\{(\w+)\}|(\w+))")
_ANGLE = re.compile(r"<[^<>()\n]*>")
_OPTIONAL = re.compile(r"(?<!\S)\[([^\[\]]*)\]")
_CAPS = re.compile(r"^[A-Z][A-Z0-9_]+(?:/[A-Z][A-Z0-9_]+)*$")
_ALTERNATIVES = re.compile(r"^([^\s=|]+=)([^\s|]+(?:\|[^\s|]+)+)$")
_TAGGED = re.compile(r"@@(\d+)@@reasoning_rl\.(.*)")


def _tokens(text: str) -> list[str]:
    lex = shlex.shlex(text, posix=True, punctuation_chars=True)
    lex.whitespace_split = True
    lex.commenters = ""  # comments are cut by strip_comment, which knows `a#b` is a word
    return list(lex)


def _expand_vars(text: str, variables: dict[str, str]) -> str:
    return _VAR.sub(lambda m: variables.get(m.group(1) or m.group(2), m.group(0)), text)


def _spelled_out(file: str, text: str) -> list[str]:
    for (where, literal), values in SPELLED_OUT.items():
        if where == file and literal in text:
            return [text.replace(literal, value) for value in values]
    return [text]


def _alternatives(text: str) -> list[str]:
    """`key=a|b|c` (an inline span's documented choices): one text per choice."""
    choices = []
    for word in text.split():
        m = _ALTERNATIVES.match(word)
        choices.append([m.group(1) + v for v in m.group(2).split("|")] if m else [word])
    return [" ".join(combo) for combo in itertools.product(*choices)]


def commands_of_line(file: str, first: int, raw: str, variables: dict[str, str], inline: bool) -> list[DocCommand]:
    """Our commands in one logical line (physical lines joined by newlines, the first one numbered
    `first`); `variables` collects the block's shell assignments."""
    origins, seen_on = [], {}  # where each PREFIX is: its physical line and its index there
    for m in re.finditer(re.escape(PREFIX), raw):
        line = first + raw.count("\n", 0, m.start())
        origins.append((line, seen_on.setdefault(line, 0)))
        seen_on[line] += 1
    text = raw.replace("\n", " ")
    for k in range(len(origins)):  # tag the k-th PREFIX (python -m @@k@@reasoning_rl.X): expansions keep it
        text = text.replace(PREFIX, f"python -m @@{k}@@reasoning_rl.", 1)

    if not origins:
        if _ASSIGNMENT.match(text.strip()):
            words = _tokens(text)
            if all(_ASSIGNMENT.match(w) for w in words):  # NAME=value: a shell variable
                variables.update(w.split("=", 1) for w in words)
        return []

    if inline:
        text = text.replace("\\|", "|")
    texts = []
    for spelled in _spelled_out(file, text):
        spelled = _FOR_LOOP.sub(
            lambda m: " ; ".join(_expand_vars(m.group(3), {m.group(1): v}) for v in m.group(2).split()), spelled)
        spelled = _expand_vars(spelled, variables)
        spelled = _ANGLE.sub(PLACEHOLDER, spelled)
        while _OPTIONAL.search(spelled):
            spelled = _OPTIONAL.sub(r"\1", spelled)
        texts.extend(_alternatives(spelled) if inline else [spelled])

    found = []
    for variant in texts:
        segment: list[str] = []
        try:
            tokens = _tokens(variant)
        except ValueError as exc:  # an unclosed quote
            raise ValueError(f"{file}:{first}: {exc}: {raw}") from None
        for token in [*tokens, ";"]:
            if token and set(token) <= set("&|;()<>"):
                cmd = _our_command(file, origins, raw, segment)
                if cmd:
                    found.append(cmd)
                segment = []
            else:
                segment.append(token)
    return found


def _our_command(file: str, origins, raw: str, words: list[str]) -> DocCommand | None:
    env = {}
    while words and _ASSIGNMENT.match(words[0]):
        name, _, value = words[0].partition("=")
        env[name] = value
        words = words[1:]
    if len(words) < 3 or words[0] not in ("python", "python3") or words[1] != "-m":
        return None
    m = _TAGGED.fullmatch(words[2])
    if not m:
        return None
    line, occurrence = origins[int(m.group(1))]
    return DocCommand(file=file, line=line, occurrence=occurrence, text=" ".join(raw.split()), env=env,
                      module=m.group(2), args=words[3:])


def extract_markdown(text: str, file: str) -> list[DocCommand]:
    """Our commands in a markdown text: fenced shell blocks and inline spans outside any fence."""
    lines = text.split("\n")
    commands: list[DocCommand] = []
    prose = []  # (line number, text) outside fences
    i = 0
    while i < len(lines):
        fence = re.match(r"^\s*(`{3,}|~{3,})\s*([\w+-]*)", lines[i])
        if not fence:
            prose.append((i + 1, lines[i]))
            i += 1
            continue
        marker, info = fence.group(1), fence.group(2).lower()
        body = []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(marker):
            body.append((i + 1, lines[i]))
            i += 1
        i += 1
        prose.append((i, ""))  # keeps an inline span from reaching across a block
        if info in SHELL_INFO:
            variables: dict[str, str] = {}
            for first, logical in logical_lines(body):
                commands += commands_of_line(file, first, logical, variables, inline=False)
    # Inline spans, which may wrap onto the next line of a paragraph.
    joined, starts = "", []
    for number, line in prose:
        starts.append((len(joined), number))
        joined += line + "\n"
    for m in re.finditer(r"(?<!`)`([^`]+)`(?!`)", joined):
        if PREFIX not in m.group(1):
            continue
        line = max(n for pos, n in starts if pos <= m.start(1))
        commands += commands_of_line(file, line, m.group(1), {}, inline=True)
    return commands


def occurrences(text: str, file: str) -> set[tuple[str, int, int]]:
    """Every PREFIX in the file, as (file, line, index on the line)."""
    return {(file, number, k) for number, line in enumerate(text.split("\n"), 1) for k in range(line.count(PREFIX))}


def _rel(path: Path) -> str:
    return str(path.relative_to(REPO))


DOC_COMMANDS = [c for path in DOCS for c in extract_markdown(path.read_text(), _rel(path))]


def allow_listed(cmd: DocCommand) -> str | None:
    for (file, fragment), reason in ALLOW_LIST.items():
        if file == cmd.file and fragment in cmd.text:
            return reason
    return None


# ---------------------------------------------------------------------------------------------
# Checking one command


class DoesNotCompose(Exception):
    """A docs command that its job would refuse."""


class _Stop(Exception):
    """Raised where the job would open its run dir: every check before it has passed."""


def _placeholder(value: str) -> bool:
    return PLACEHOLDER in value or "…" in value or bool(_CAPS.match(value))


def resolve_placeholders(args: list[str], tmp: Path, hydra: bool) -> tuple[list[str], list[str]]:
    """(args with placeholders as tmp paths, the keys of `KEY=…` overrides, which are dropped)."""
    out, elided = [], []
    for arg in args:
        if arg == "…":
            continue
        if arg.endswith("…") and not arg.endswith("=…"):
            arg = arg[:-1]
        key, eq, value = arg.partition("=")
        if hydra and eq and not arg.startswith("-"):
            if _CAPS.match(key):
                continue  # KEY=VALUE: any override
            if value == "…":
                elided.append(key)
                continue
            out.append(f"{key}={tmp / 'placeholder'}" if _placeholder(value) else arg)
        else:
            out.append(str(tmp / "placeholder") if _placeholder(arg) else arg)
    return out, elided


def _compose(job: str, overrides: list[str]):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name=job, overrides=overrides, return_hydra_config=True)


def _job_config(cfg):
    """The job's own config (what the job body gets), resolved."""
    from omegaconf import OmegaConf, open_dict

    cfg = cfg.copy()
    with open_dict(cfg):
        del cfg["hydra"]
    OmegaConf.resolve(cfg)
    return cfg


def run_job_checks(job: str, cfg) -> None:
    """The job's `run(cfg)` up to opening its run dir; the checks that read other runs, or this machine
    (vLLM installed, a GPU), are stubbed."""
    import reasoning_rl.evaluate_job as evaluate_job
    import reasoning_rl.generation.vllm as vllm
    import reasoning_rl.models as models
    import reasoning_rl.train_job as train_job

    body = {"train": train_job, "evaluate": evaluate_job}[job]

    def stop(*args, **kwargs):
        raise _Stop

    with mock.patch.object(body, "job_run", stop), \
            mock.patch.object(train_job, "parent", lambda cfg: None), \
            mock.patch.object(models, "find_adapter", lambda path: Path(path)), \
            mock.patch.object(vllm, "check_available", lambda: None):
        try:
            body.run(cfg)
        except _Stop:
            return
    raise AssertionError(f"reasoning_rl.{job}_job.run returned without opening its run dir")


def hydra_jobs(job: str, args: list[str]) -> list[list[str]]:
    """The override lists of the job(s) the command starts: one, or every job of a `-m` sweep."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    flags = [a for a in args if a.startswith("-") and a not in ("-m", "--multirun")]
    if flags:
        raise DoesNotCompose(f"{flags[0]}: not a flag the docs' commands use (only -m/--multirun is handled)")
    overrides = [a for a in args if a not in ("-m", "--multirun")]
    if len(overrides) == len(args):
        return [overrides]
    parser = OverridesParser.create()
    parsed = parser.parse_overrides(overrides)
    base = _compose(job, [o.input_line for o in parsed if not o.is_sweep_override()])
    params = [f"{k}={v}" for k, v in (base.hydra.sweeper.get("params") or {}).items()]
    return [list(j) for batch in BasicSweeper.split_arguments(parser.parse_overrides(params + overrides), None)
            for j in batch]


def check_hydra_job(job: str, args: list[str], tmp: Path) -> int:
    from omegaconf import OmegaConf

    import reasoning_rl.launching.launcher  # noqa: F401  (registers the launcher schemas)

    overrides, elided = resolve_placeholders(args, tmp, hydra=True)
    jobs = hydra_jobs(job, overrides)
    for job_overrides in jobs:
        cfg = _compose(job, job_overrides)
        for key in elided:  # `model=…`: any value, but the key must be the job's
            plain = key.lstrip("+~")
            if plain not in cfg.hydra.runtime.choices and OmegaConf.select(cfg, plain, default="<none>") == "<none>":
                raise DoesNotCompose(f"{key}=…: {job} has no config group or key {plain!r}")
        run_job_checks(job, _job_config(cfg))
    return len(jobs)


def _parse_cli(parse_args, args: list[str]) -> argparse.Namespace:
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            return parse_args(args)
    except SystemExit as exc:
        raise DoesNotCompose(err.getvalue().strip() or f"exit {exc.code}") from None


def check_pipeline(args: list[str], tmp: Path) -> int:
    from reasoning_rl.pipeline import command, load_pipeline, split_argv

    args, _ = resolve_placeholders(args, tmp, hydra=False)
    own, launcher, stage_overrides = split_argv(args)
    root, stages = load_pipeline(own)
    if launcher:
        from reasoning_rl.launching.pipeline_slurm import launcher_params

        launcher_params(launcher)
    composed = 0
    for stage in stages:
        if stage.job == "compare":
            continue
        cfg = _compose(stage.job, [*command(stage, root, stage_overrides)[3:], *launcher])
        run_job_checks(stage.job, _job_config(cfg))
        composed += 1
    assert composed, f"pipeline {own}: no evaluate/train stage"
    return composed


def check_command(cmd: DocCommand, tmp: Path) -> int:
    """Raise DoesNotCompose unless the command composes / parses; returns how many jobs (or stages) it checked."""
    from hydra.errors import HydraException

    from reasoning_rl.errors import UserError

    try:
        with mock.patch.dict(os.environ, cmd.env):
            if cmd.module in HYDRA_JOBS:
                return check_hydra_job(cmd.module, cmd.args, tmp)
            if cmd.module == "pipeline":
                return check_pipeline(cmd.args, tmp)
            if cmd.module == "compare":
                from reasoning_rl.compare import parse_args

                _parse_cli(parse_args, resolve_placeholders(cmd.args, tmp, hydra=False)[0])
                return 1
            if cmd.module == "reproduce":
                from hydra.core.override_parser.overrides_parser import OverridesParser

                from reasoning_rl.reproduce import parse_args

                parsed = _parse_cli(parse_args, resolve_placeholders(cmd.args, tmp, hydra=False)[0])
                OverridesParser.create().parse_overrides(parsed.overrides)
                return 1
            path = REPO / "reasoning_rl" / (cmd.module.replace(".", "/") + ".py")
            if not re.fullmatch(r"\w+(\.\w+)*", cmd.module) or not path.is_file():
                raise DoesNotCompose(f"reasoning_rl.{cmd.module}: no such module")
            if not re.search(r"^if __name__ == .__main__.:", path.read_text(), re.MULTILINE):
                raise DoesNotCompose(f"reasoning_rl.{cmd.module} is not a `python -m` entry point")
            return 1
    except DoesNotCompose:
        raise
    except (HydraException, UserError, AssertionError) as exc:
        cause = f" ({str(exc.__cause__).splitlines()[0]})" if exc.__cause__ else ""
        raise DoesNotCompose(f"{type(exc).__name__}: {str(exc).strip()}{cause}") from exc


# ---------------------------------------------------------------------------------------------
# Tests


def _id(cmd: DocCommand) -> str:
    return f"{cmd.file}:{cmd.line} {cmd.shown()[:110]}"


# Allow-listed fragments are not commands (each entry's reason is in ALLOW_LIST, and a stale entry fails
# below): they are left out here rather than skipped.
@pytest.mark.parametrize("cmd", [c for c in DOC_COMMANDS if not allow_listed(c)], ids=_id)
def test_docs_command_composes(cmd, tmp_path):
    try:
        assert check_command(cmd, tmp_path) >= 1
    except DoesNotCompose as exc:
        pytest.fail(f"{cmd.file}:{cmd.line}: `{cmd.text}` does not compose: {exc}", pytrace=False)


def test_every_occurrence_is_extracted():
    """Each `python -m reasoning_rl.` in the docs became a command: none is silently skipped."""
    found = {c.origin for c in DOC_COMMANDS}
    missing = []
    for path in DOCS:
        lines = path.read_text().split("\n")
        for file, line, _ in sorted(occurrences(path.read_text(), _rel(path)) - found):
            missing.append(f"{file}:{line}: {lines[line - 1].strip()}")
    assert not missing, "not extracted (a code block or shell form the extractor does not know):\n" + "\n".join(missing)


def test_enough_commands_are_found():
    mentioning = [_rel(p) for p in DOCS if PREFIX in p.read_text()]
    assert len(mentioning) >= 8, mentioning
    for file in mentioning:
        assert any(c.file == file for c in DOC_COMMANDS), f"{file} shows `{PREFIX}…` but no command was extracted"
    assert len(DOC_COMMANDS) >= sum(p.read_text().count(PREFIX) for p in DOCS)
    assert {"train", "evaluate", "compare", "reproduce", "pipeline"} <= {c.module for c in DOC_COMMANDS}


def test_every_table_entry_is_used():
    for file, fragment in [*SPELLED_OUT, *ALLOW_LIST]:
        assert fragment in (REPO / file).read_text(), f"stale entry ({file!r}, {fragment!r}): remove it"
    assert all(any(allow_listed(c) for c in DOC_COMMANDS if c.file == f and t in c.text) for f, t in ALLOW_LIST)


# --- the extractor and the checks themselves ---

SAMPLE = """
Some prose with `python -m reasoning_rl.train algorithm=sft\\|grpo …` in a table.

```bash
# a comment: python -m reasoning_rl.train is not run here
COMMON="logger=none eval.limit=4"
WANDB_MODE=online python -m reasoning_rl.evaluate dataset.limit=2 \\
    eval.num_samples=2 $COMMON   # trailing comment
pip install x && python -m reasoning_rl.compare RUN_DIR… [--baseline NAME] [--out DIR]
for a in sft grpo; do python -m reasoning_rl.train experiment=learn_$a hydra.run.dir=runs/$a; done
```

```python
print("python -m reasoning_rl.train is not a shell command here")
```
"""


def test_extractor_handles_the_shell_forms():
    cmds = extract_markdown(SAMPLE, "sample.md")
    shown = [(c.line, c.module, c.args, c.env) for c in cmds]
    assert shown == [
        (7, "evaluate", ["dataset.limit=2", "eval.num_samples=2", "logger=none", "eval.limit=4"],
         {"WANDB_MODE": "online"}),
        (9, "compare", ["RUN_DIR…", "--baseline", "NAME", "--out", "DIR"], {}),
        (10, "train", ["experiment=learn_sft", "hydra.run.dir=runs/sft"], {}),
        (10, "train", ["experiment=learn_grpo", "hydra.run.dir=runs/grpo"], {}),
        (2, "train", ["algorithm=sft", "…"], {}),
        (2, "train", ["algorithm=grpo", "…"], {}),
    ], shown
    # Not extracted: the commented-out one and the one in the python block (test_every_occurrence_is_extracted's job).
    assert occurrences(SAMPLE, "sample.md") - {c.origin for c in cmds} == {("sample.md", 5, 0), ("sample.md", 14, 0)}


def test_env_prefix_reaches_the_composed_config():
    (cmd,) = extract_markdown("`WANDB_MODE=online python -m reasoning_rl.evaluate logger=wandb`", "x.md")
    with mock.patch.dict(os.environ, cmd.env):
        assert _job_config(_compose("evaluate", cmd.args)).logger.mode == "online"


def test_a_sweep_preset_expands_to_its_jobs(tmp_path):
    (cmd,) = extract_markdown("`python -m reasoning_rl.train -m sweep=algorithms hydra/launcher=slurm_local`", "x.md")
    assert check_command(cmd, tmp_path) == len(
        [p for p in (CONF / "algorithm").glob("*.yaml") if not p.stem.startswith("_")])


BROKEN = [
    ("python -m reasoning_rl.train hparams.learing_rate=1", "learing_rate"),  # a misspelt key
    ("python -m reasoning_rl.train algorithm=grpp", "grpp"),  # no such group option
    ("python -m reasoning_rl.train checkpoint.keep=0", "checkpoint.keep"),  # composes; the job's check refuses it
    ("python -m reasoning_rl.evaluate dataset.limit=1,2", "multirun"),  # a sweep without -m
    ("python -m reasoning_rl.train -m experiment=rl30_grpo,rl30_nope", "rl30_nope"),  # one sweep job is wrong
    ("python -m reasoning_rl.evaluate model=… prompts=…", "prompts"),  # `KEY=…` with a key the job lacks
    ("python -m reasoning_rl.train -m experiment=article_1b_gsm8k hydra.launcher.gpus_per_nod=4", "gpus_per_nod"),
    ("WANDB_MODE=onlin python -m reasoning_rl.evaluate", "onlin"),  # the env prefix reaches the logger check
    ("python -m reasoning_rl.compare RUN_DIR --basline NAME", "--basline"),
    ("python -m reasoning_rl.reproduce --out NEW_DIR", "RUN_DIR"),  # the positional is missing
    ("python -m reasoning_rl.pipeline pipeline=artcle pipeline.dir=DIR", "artcle"),
    ("python -m reasoning_rl.pipeline pipeline=article pipeline.dir=DIR hparams.learing_rate=1", "learing_rate"),
    ("python -m reasoning_rl.trian algorithm=grpo", "no such module"),
]


@pytest.mark.parametrize("text,why", BROKEN, ids=[b[0] for b in BROKEN])
def test_a_broken_command_fails(text, why, tmp_path):
    (cmd,) = extract_markdown(f"```bash\n{text}\n```\n", "broken.md")
    with pytest.raises(DoesNotCompose, match=re.escape(why)):
        check_command(cmd, tmp_path)
