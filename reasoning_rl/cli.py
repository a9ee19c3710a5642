"""Entry-point guard for Hydra jobs: problems Hydra would report as a traceback become one line."""

from __future__ import annotations

import errno
import os
import sys
import tempfile
from collections.abc import Callable, Sequence

from reasoning_rl import parallel

# A write failed for lack of room (EFBIG: a file size limit, e.g. `ulimit -f`).
DISK_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


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


def hydra_error_line(exc: BaseException) -> str:
    """Hydra's multi-line report of a bad override or config group, as one line."""
    from hydra.errors import OverrideParseException

    text = str(exc).split("Config search path:")[0]  # where Hydra looked; the available options say enough
    parts: list[str] = [f"cannot parse override {exc.override!r}:"] if isinstance(exc, OverrideParseException) else []
    for line in text.splitlines():
        if not line.strip() or line.startswith("See https://"):
            continue
        if line.startswith("\t") and parts:  # one of the "Available options in 'prompt':" list
            parts[-1] += (" " if parts[-1].endswith(":") else ", ") + line.strip()
        else:
            parts.append(line.strip())
    # Hydra's lines are sentences without a full stop at times: keep them apart.
    line = " ".join(p if p.endswith((".", ":")) or p is parts[-1] else f"{p};" for p in parts)
    if exc.__cause__ is not None:  # e.g. OmegaConf's "Key 'num_sample' is not in struct"
        line += f" ({str(exc.__cause__).splitlines()[0]})"
    return line


def run_hydra_job(hydra_main: Callable[[], None]) -> None:
    if parallel.rank() > 0 and not any(a.startswith("hydra.output_subdir=") for a in sys.argv):
        # Data parallel: rank 0 writes (and redacts) the run's .hydra/; another rank's copy would race it.
        sys.argv.append("hydra.output_subdir=null")
    problem = output_dir_problem(sys.argv[1:])
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(2)
    if os.environ.get("HYDRA_FULL_ERROR") == "1":  # the user asked for Hydra's own reports
        hydra_main()
        return
    # Without it Hydra prints a config error over several lines and exits 1; have it raise instead, so a
    # bad override or an unknown group option ends in one `error: …` line like every other bad input.
    os.environ["HYDRA_FULL_ERROR"] = "1"
    from hydra.errors import HydraException

    try:
        hydra_main()
    except HydraException as exc:
        print(f"error: {hydra_error_line(exc)}", file=sys.stderr)
        sys.exit(2)
    except OSError as exc:
        if exc.errno not in DISK_FULL:
            raise
        print(f"error: cannot write to {os.path.abspath(_output_root(sys.argv[1:]))} ({exc.strerror}): the disk "
              "is full or a size limit applies; free space or choose another hydra.run.dir", file=sys.stderr)
        sys.exit(2)
