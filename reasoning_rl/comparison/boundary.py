"""The reasoning boundary (Yue et al. 2025, "Does RL really incentivize reasoning capacity beyond the
base model?"): which problems a run solves at all with its N samples, against the baseline.

pass@N's mean can stay level while the run trades problems with the baseline; the sets say it:
**gained** = solved (at least one correct of N) by the run and not by the baseline, **lost** = the
other way round. RL that sharpens the base model's distribution raises pass@1 and loses problems
at large N; distinct answers per problem (fewer = narrower sampling) show the same from the side
of diversity. An unparsable answer (None) is not an answer: it is not counted as a distinct one.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reasoning_rl.comparison.runs import Run

EXAMPLES = 3  # problem ids shown per cell; the CSV has them all


@dataclass
class Boundary:
    run: str
    n_baseline: str  # samples per problem: "8", or "4-8" when a run's problems differ
    n_run: str
    problems: int | None = None  # paired problems; None when not compared (see note)
    solved_baseline: int | None = None
    solved_run: int | None = None
    gained: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    distinct_baseline: float | None = None  # mean distinct non-None extracted answers per problem
    distinct_run: float | None = None
    note: str = ""


def _by_id(records: Sequence[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    return {str(r["id"]): r for r in records}


def _samples_per_problem(records: Sequence[Mapping[str, Any]]) -> str:
    sizes = sorted({len(r["correct"]) for r in records})
    if not sizes:
        return "-"
    return str(sizes[0]) if len(sizes) == 1 else f"{sizes[0]}-{sizes[-1]}"


def distinct_answers(record: Mapping[str, Any]) -> int:
    return len({a for a in record["extracted"] if a is not None})


def compare_boundary(baseline: Sequence[Mapping[str, Any]], other: Sequence[Mapping[str, Any]], name: str) -> Boundary:
    """One row: `other` against `baseline`, both lists of samples.jsonl records."""
    base, run = _by_id(baseline), _by_id(other)
    row = Boundary(run=name, n_baseline=_samples_per_problem(baseline), n_run=_samples_per_problem(other))
    if set(base) != set(run):  # unpaired sets would count problems the other run never saw
        row.note = (f"different problems ({len(run)} and {len(base)}, {len(set(run) & set(base))} in common): "
                    f"not compared")
        return row
    ids = list(base)
    solved_base = {i for i in ids if any(base[i]["correct"])}
    solved_run = {i for i in ids if any(run[i]["correct"])}
    row.problems, row.solved_baseline, row.solved_run = len(ids), len(solved_base), len(solved_run)
    row.gained = [i for i in ids if i in solved_run - solved_base]
    row.lost = [i for i in ids if i in solved_base - solved_run]
    if ids:
        row.distinct_baseline = sum(distinct_answers(base[i]) for i in ids) / len(ids)
        row.distinct_run = sum(distinct_answers(run[i]) for i in ids) / len(ids)
    if row.n_baseline != row.n_run:
        row.note = f"N differs ({row.n_baseline} vs {row.n_run}): more samples solve more problems by chance alone"
    return row


def boundary_rows(runs: Sequence[Run], baseline: Run) -> list[Boundary]:
    rows = []
    for run in runs:
        if run is baseline:
            continue
        if not run.has_samples:
            rows.append(Boundary(run=run.name, n_baseline=_samples_per_problem(baseline.samples), n_run="-",
                                 note=f"{run.status}, no samples.jsonl"))
            continue
        rows.append(compare_boundary(baseline.samples, run.samples, run.name))
    return rows


def _examples(ids: Sequence[str]) -> str:
    shown = ", ".join(ids[:EXAMPLES])
    return shown + (f", … (+{len(ids) - EXAMPLES})" if len(ids) > EXAMPLES else "")


def _number(value: float | int | None, fmt: str = "{}") -> str:
    return "-" if value is None else fmt.format(value)


def table_rows(baseline: Run, rows: Sequence[Boundary]) -> tuple[list[str], list[list[str]]]:
    header = ["run", "N", "problems", f"solved@N {baseline.name}", "solved@N run", "gained", "lost",
              "gained e.g.", "lost e.g.", f"distinct answers {baseline.name}", "distinct answers run", "note"]
    body = []
    for b in rows:
        compared = b.problems is not None
        body.append([b.run, b.n_baseline if b.n_baseline == b.n_run else f"{b.n_baseline} vs {b.n_run}",
                     _number(b.problems), _number(b.solved_baseline), _number(b.solved_run),
                     str(len(b.gained)) if compared else "-", str(len(b.lost)) if compared else "-",
                     _examples(b.gained) or "-", _examples(b.lost) or "-",
                     _number(b.distinct_baseline, "{:.2f}"), _number(b.distinct_run, "{:.2f}"), b.note or ""])
    return header, body


def write_csv(path: Path, baseline: Run, rows: Sequence[Boundary]) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["baseline", "run", "n_baseline", "n_run", "problems", "solved_baseline", "solved_run",
                         "gained", "lost", "gained_ids", "lost_ids", "distinct_answers_baseline",
                         "distinct_answers_run", "note"])
        for b in rows:
            compared = b.problems is not None
            writer.writerow([baseline.name, b.run, b.n_baseline, b.n_run, *("" if v is None else v for v in (
                b.problems, b.solved_baseline, b.solved_run)), len(b.gained) if compared else "",
                len(b.lost) if compared else "", ";".join(b.gained), ";".join(b.lost),
                "" if b.distinct_baseline is None else b.distinct_baseline,
                "" if b.distinct_run is None else b.distinct_run, b.note])
    return path
