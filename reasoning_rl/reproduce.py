"""Re-run a run from its saved overrides into a new run dir, then compare the new summary with the old.

    python -m reasoning_rl.reproduce outputs/evaluate/2026-11-28/10-00-00 [KEY=VALUE …] [--out NEW_DIR]

Reads RUN_DIR/.hydra (the job name from config.yaml, the command-line overrides from
overrides.yaml) and provenance.json; warns when the code's git sha, the package versions or the
hardware differ from the run's; runs `python -m reasoning_rl.<job> <saved overrides> <new overrides>
hydra.run.dir=NEW_DIR` in a subprocess (output streamed); then prints each summary metric old vs
new and whether they are identical (expected on CPU with the same seed) or the new value lies in
the old 95 % CI (expected on GPU). Exit status: the re-run's, 2 for bad input.

A warm-started run (`init_from=` another run) is reproduced with its chain: the parents are re-run
first, oldest first, into NEW_DIR.parent1, .parent2, … beside NEW_DIR, and each child starts from its
re-run parent (`--no-chain`: start from the original parent as it is).

Secrets were redacted when the run was saved: overrides whose value reads `<redacted>` are not
passed again; the environment (WANDB_API_KEY, HF_TOKEN, …) or a new override must supply them.

A run dir is data, not a script: only the user's own config keys are replayed. A saved override
that could make the re-run execute something is refused (exit 2, nothing run) unless the same
override is given again on this command line: a `hydra…` key (callbacks, searchpath, launcher
targets; where the run was placed is dropped instead), a `_target_`, `trust_remote_code=true`, or
an `${oc.env:…}` / resolver interpolation (it would read this machine's environment).

A plain argparse CLI: RUN_DIR is a positional path, and the overrides go to the re-run job
untouched rather than to this command's own config.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from reasoning_rl.comparison.runs import is_run_dir, load_config
from reasoning_rl.errors import UserError, exit_on_user_error
from reasoning_rl.tracking import provenance
from reasoning_rl.tracking.redact import REDACTED, redact_override
from reasoning_rl.tracking.run_dir import read_jsonl

JOBS = ("evaluate", "train")
# Hydra overrides that only say where and how the original ran: the re-run is one local job.
_PLACEMENT = ("hydra.run.dir", "hydra.sweep.", "hydra.mode", "hydra/launcher", "hydra.launcher.", "hydra.job.num",
              "hydra.job.id")
# Hydra's own config (`hydra.callbacks.*._target_` is instantiated and called), `+hydra@…` included.
_HYDRA_KEY = re.compile(r"hydra($|[./@])")
_REMOTE_CODE = re.compile(r"trust_remote_code\W*[=:]\W*(true|yes|on|1)\b", re.IGNORECASE)
_RESOLVER = re.compile(r"\$\{\s*[\w.]+\s*:")  # ${oc.env:…}, ${oc.create:…}: a plain ${a.b} reference is fine


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m reasoning_rl.reproduce", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="Hydra overrides on top of the saved ones")
    parser.add_argument("--out", type=Path, help="new run dir (default: outputs/reproduce/<date>/<time>)")
    parser.add_argument("--no-chain", action="store_true",
                        help="a warm-started run: start from its original parent "
                             "instead of re-running the parents first")
    return parser.parse_args(argv)


def _yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from None


def saved_run(run_dir: Path) -> tuple[str, list[str], list[str]]:
    """(job name, task overrides, hydra overrides) as the run saved them."""
    hydra_dir = run_dir / ".hydra"
    if not (hydra_dir / "config.yaml").is_file():
        raise UserError(f"{run_dir} is not a run dir: no .hydra/config.yaml to reproduce it from")
    config = _yaml(hydra_dir / "config.yaml") or {}
    hydra = (_yaml(hydra_dir / "hydra.yaml") or {}).get("hydra", {}) if (hydra_dir / "hydra.yaml").is_file() else {}
    job = config.get("job_name") or hydra.get("job", {}).get("name")
    if job not in JOBS:
        raise UserError(f"{run_dir}: job {job!r} cannot be reproduced (one of {', '.join(JOBS)})")
    overrides = _yaml(hydra_dir / "overrides.yaml") or [] if (hydra_dir / "overrides.yaml").is_file() else []
    hydra_overrides = hydra.get("overrides", {}).get("hydra") or []
    return job, [str(o) for o in overrides], [str(o) for o in hydra_overrides]


def override_key(override: str) -> str:
    return override.partition("=")[0].lstrip("+~")


def merge_overrides(saved: Sequence[str], new: Sequence[str]) -> list[str]:
    """The saved overrides with those the user gives again replaced (Hydra refuses a key twice)."""
    replaced = {override_key(o) for o in new}
    return [o for o in saved if override_key(o) not in replaced] + list(new)


def unsafe_reason(override: str) -> str | None:
    """Why a saved override may not be replayed, or None for a plain config value."""
    if _HYDRA_KEY.match(override_key(override)):
        return "a hydra key"
    if "_target_" in override:
        return "a _target_"
    if _REMOTE_CODE.search(override):
        return "trust_remote_code=true"
    if _RESOLVER.search(override.partition("=")[2]):
        return "a resolver interpolation"
    return None


def refuse_unsafe(saved: Sequence[str], new: Sequence[str]) -> None:
    """Refuse the saved overrides that could run code, except those whose key the user gives now
    (the user's value replaces the saved one, so the user chose what runs)."""
    given = {override_key(o) for o in new}
    unsafe = [f"{o} ({reason})" for o in saved if override_key(o) not in given and (reason := unsafe_reason(o))]
    if unsafe:
        raise UserError(f"refusing to replay from the run dir: {'; '.join(unsafe)}; "
                        "give the same override on the command line to run it anyway")


def drop_redacted(overrides: Sequence[str]) -> tuple[list[str], list[str]]:
    kept = [o for o in overrides if REDACTED not in o]
    return kept, [o for o in overrides if REDACTED in o]


def environment_differences(saved: Mapping[str, Any]) -> list[str]:
    """What differs between the run's provenance.json and this process: code, packages, hardware."""
    notes = []
    old_git, new_git = saved.get("git") or {}, provenance.git_state()
    if old_git.get("sha") != new_git.get("sha"):
        notes.append(f"the code differs: the run used git {str(old_git.get('sha'))[:12]}, "
                     f"this checkout is {str(new_git.get('sha'))[:12]}")
    if old_git.get("dirty"):
        notes.append("the run's checkout had uncommitted changes, which were not recorded")
    if new_git.get("dirty"):
        notes.append("this checkout has uncommitted changes")
    old_packages, new_packages = saved.get("packages") or {}, provenance.package_versions()
    changed = [f"{name} {old_packages.get(name)} -> {new_packages.get(name)}"
               for name in sorted(set(old_packages) | set(new_packages))
               if old_packages.get(name) != new_packages.get(name)]
    if changed:
        notes.append("package versions differ: " + ", ".join(changed))
    if saved.get("python") and saved["python"] != sys.version.split()[0]:
        notes.append(f"python differs: {saved['python']} -> {sys.version.split()[0]}")
    import torch

    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    if (saved.get("gpus") or []) != gpus:
        notes.append(f"the hardware differs: {saved.get('gpus') or 'CPU'} -> {gpus or 'CPU'}; "
                     "expect values within the CIs, not identical ones")
    return notes


def compare_summaries(old: Mapping[str, Mapping[str, float]],
                      new: Mapping[str, Mapping[str, float]]) -> tuple[str, bool]:
    """A metric-by-metric table and a verdict line; True when the two summaries are identical."""
    header = ("metric", "original [95% CI]", "re-run", "|difference|", "in original CI")
    rows, worst = [], (0.0, "")
    for metric in list(dict.fromkeys([*old, *new])):
        o, n = old.get(metric), new.get(metric)
        if o is None or n is None:
            rows.append((metric, "-" if o is None else f"{o['mean']:.4f}", "-" if n is None else f"{n['mean']:.4f}",
                         "-", "-"))
            continue
        diff = abs(n["mean"] - o["mean"])
        worst = max(worst, (diff, metric))
        inside = o["ci_low"] <= n["mean"] <= o["ci_high"]
        rows.append((metric, f"{o['mean']:.4f} [{o['ci_low']:.4f}, {o['ci_high']:.4f}]", f"{n['mean']:.4f}",
                     f"{diff:.4g}", "yes" if inside else "NO"))
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in [header, *rows]]
    identical = json.dumps(old, sort_keys=True) == json.dumps(new, sort_keys=True)
    if identical:
        lines.append("identical: the new summary.json equals the original exactly")
    else:
        outside = [r[0] for r in rows if r[4] == "NO"]
        unmatched = [r[0] for r in rows if r[4] == "-"]
        lines.append(f"not identical: max |difference| {worst[0]:.4g} ({worst[1]}); "
                     + (f"outside the original 95% CI: {', '.join(outside)}" if outside
                        else "every new value is inside the original 95% CI")
                     + (f"; in only one of the runs: {', '.join(unmatched)}" if unmatched else ""))
    return "\n".join(lines), identical


def new_run_dir(out: Path | None, original: Path) -> Path:
    path = out or Path("outputs/reproduce") / time.strftime("%Y-%m-%d/%H-%M-%S")
    if path.resolve() == original.resolve():
        raise UserError("--out is the original run dir; the re-run needs a new one")
    if path.exists() and is_run_dir(path):  # a train run there would resume instead of starting afresh
        raise UserError(f"{path} already holds a run; choose a new dir with --out")
    return path


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def config_changes(old_dir: Path, new_dir: Path) -> list[str]:
    old, new = load_config(old_dir), load_config(new_dir)
    return [f"{k}: {old.get(k, '-')} -> {new.get(k, '-')}" for k in dict.fromkeys([*old, *new])
            if old.get(k, "-") != new.get(k, "-")]


def plan(run_dir: Path, new_overrides: Sequence[str], out: Path | None) -> tuple[list[str], Path, list[str]]:
    """(command, new run dir, warnings) for re-running run_dir; nothing is started."""
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: no such run dir")
    job, saved, hydra_saved = saved_run(run_dir)
    user_out = [o for o in new_overrides if override_key(o) == "hydra.run.dir"]
    out = new_run_dir(out or (Path(user_out[-1].partition("=")[2]) if user_out else None), run_dir)
    warnings = []
    overrides, redacted = drop_redacted(saved)
    warnings += [f"{o} was redacted when the run was saved and is not passed again; supply it through the "
                 "environment (e.g. WANDB_API_KEY, HF_TOKEN) or as an override" for o in redacted]
    placement = [o for o in [*hydra_saved, *overrides] if override_key(o).startswith(_PLACEMENT)]
    if any(override_key(o) == "hydra.mode" and o.endswith("MULTIRUN") for o in placement):
        warnings.append("the run was one job of a sweep; it is reproduced as a single local run")
    saved_rest = [o for o in [*overrides, *hydra_saved] if o not in placement]
    refuse_unsafe(saved_rest, new_overrides)
    overrides = merge_overrides(saved_rest, [o for o in new_overrides if o not in user_out])

    saved_provenance = _read_json(run_dir / "provenance.json")
    if saved_provenance is None:
        warnings.append(f"{run_dir}/provenance.json is missing: the code and package versions cannot be checked")
    else:
        warnings += environment_differences(saved_provenance)
    return [sys.executable, "-m", f"reasoning_rl.{job}", *overrides, f"hydra.run.dir={out}"], out, warnings


def ancestors(run_dir: Path) -> list[Path]:
    """The run dirs a warm-started run descends from (`init_from`), oldest first."""
    chain, seen = [], {run_dir.resolve()}
    parent = load_config(run_dir).get("init_from")
    while parent:
        path = Path(str(parent))
        if path.name == "adapter" and is_run_dir(path.parent):  # init_from=RUN/adapter
            path = path.parent
        if not is_run_dir(path):
            print(f"warning: {path} (init_from of {chain[0] if chain else run_dir}) is not a run dir: "
                  "it is used as it is, not re-run", file=sys.stderr)
            break
        if path.resolve() in seen:
            raise UserError(f"the init_from chain of {run_dir} loops at {path}")
        seen.add(path.resolve())
        chain.insert(0, path)
        parent = load_config(path).get("init_from")
    return chain


@exit_on_user_error
def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    chain = [] if args.no_chain else ancestors(args.run_dir)
    if not chain:
        return reproduce(args.run_dir, args.overrides, args.out)
    # The parents are re-run first, oldest first, each next to the final run dir; each child then
    # starts from its re-run parent. The command line's overrides apply to the last run only.
    out = new_run_dir(args.out, args.run_dir)
    parent_out = None
    for depth, ancestor in enumerate(chain):
        ancestor_out = out.with_name(f"{out.name}.parent{len(chain) - depth}")
        print(f"re-running the chain: {ancestor} -> {ancestor_out}", flush=True)
        code = reproduce(ancestor, [f"init_from={parent_out}"] if parent_out else [], ancestor_out)
        if code:
            return code
        parent_out = ancestor_out
    return reproduce(args.run_dir, [*args.overrides, f"init_from={parent_out}"], out)


def reproduce(original: Path, overrides: Sequence[str], out: Path | None) -> int:
    command, out, warnings = plan(original, overrides, out)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print("re-running: " + shlex.join(["python", *command[1:3], *[redact_override(c) for c in command[3:]]]),
          flush=True)
    result = subprocess.run(command)
    if result.returncode != 0:
        print(f"error: the re-run failed with exit status {result.returncode}; see {out}", file=sys.stderr)
        return result.returncode

    changes = config_changes(original, out)
    if changes:
        print("the re-run's config differs from the original's:\n  " + "\n  ".join(changes))
    old_summary, new_summary = _read_json(original / "summary.json"), _read_json(out / "summary.json")
    if old_summary is None:
        status = (_read_json(original / "status.json") or {}).get("status", "unknown")
        print(f"the original run ({status}) has no summary.json: nothing to compare; the re-run is in {out}")
        return 0
    table, _ = compare_summaries(old_summary, new_summary or {})
    print(f"\nsummary.json: original {original} vs re-run {out}\n{table}")
    print(samples_note(original, out))
    return 0


def samples_note(old_dir: Path, new_dir: Path) -> str:
    """Whether the re-run sampled the same completions: where two runs part, this says where."""
    try:
        old, new = read_jsonl(old_dir / "samples.jsonl"), read_jsonl(new_dir / "samples.jsonl")
    except OSError:
        return "samples.jsonl: missing in one of the runs"
    by_id = {r["id"]: r["completions"] for r in old}
    same = sum(by_id.get(r["id"]) == r["completions"] for r in new)
    if same == len(new) == len(old):
        return f"samples.jsonl: the same completions for all {same} problems"
    return f"samples.jsonl: the same completions for {same} of {len(new)} problems (the original has {len(old)})"


if __name__ == "__main__":
    sys.exit(main())
