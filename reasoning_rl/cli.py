"""Entry-point guard for Hydra jobs: problems Hydra would report as a traceback become one line."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable, Sequence


def _output_root(argv: Sequence[str]) -> str:
    """The part of the run/sweep dir known before Hydra resolves interpolations such as ${now:…}."""
    key = "hydra.sweep.dir=" if any(a in ("-m", "--multirun") for a in argv) else "hydra.run.dir="
    for arg in argv:
        if arg.startswith(key):
            value = arg[len(key):].strip("'\"")
            fixed = value.split("${", 1)[0]
            return fixed if fixed.endswith("/") or "${" not in value else os.path.dirname(fixed) or "."
    return "."


def output_dir_problem(argv: Sequence[str]) -> str | None:
    root = _output_root(argv)
    try:
        os.makedirs(root, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=root):
            pass
    except OSError as exc:
        return f"output dir {root!r} is not writable ({exc.strerror}); choose another with hydra.run.dir=…"
    return None


def run_hydra_job(hydra_main: Callable[[], None]) -> None:
    problem = output_dir_problem(sys.argv[1:])
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(2)
    hydra_main()
