"""ARC-AGI grids as text: render for the prompt, parse back from an answer, one canonical string for voting.

A grid is a list of equal-length rows of colours 0–9. Rendered one row per line with one digit per cell
and an optional cell separator ("" by default: `0120`; " " gives `0 1 2 0`). Digit-splitting tokenizers
(SmolLM2, Llama 2, Qwen) then spend one token per cell and one per row break, the cheapest readable
form. The canonical string (gold answers, majority votes) is the default rendering, so two answers vote
together exactly when their grids are equal, whatever separator the model used.
"""

from __future__ import annotations

import json
import re

Grid = list[list[int]]

_ROW_LINE = re.compile(r"[\d\s,;|]+")  # a line that holds only cells and separators
_CELL_SEPARATORS = re.compile(r"[\s,;|]+")
_JSON_OPEN = re.compile(r"\[\s*\[")
# A list of lists that is not itself inside a list: "[[0, 1], [1, 0]]" (what json.loads then reads).
_JSON_GRID = re.compile(r"(?<!\[)\[\s*\[[^\[\]]*\](?:\s*,\s*\[[^\[\]]*\])*\s*\]")
_CODE_FENCE = re.compile(r"```[a-zA-Z]*")


def grid_problem(grid) -> str | None:
    """Why `grid` is not a valid grid (non-empty, rectangular, cells 0–9), or None when it is."""
    if not isinstance(grid, list) or not grid:
        return "grid is empty or not a list of rows"
    if not all(isinstance(row, list) and row for row in grid):
        return "a row is empty or not a list"
    if len({len(row) for row in grid}) != 1:
        return f"ragged rows (lengths {sorted({len(row) for row in grid})})"
    for row in grid:
        for cell in row:
            if isinstance(cell, bool) or not isinstance(cell, int) or not 0 <= cell <= 9:
                return f"cell value {cell!r} outside 0-9"
    return None


def render_grid(grid: Grid, separator: str = "") -> str:
    return "\n".join(separator.join(str(cell) for cell in row) for row in grid)


def canonical_grid(grid: Grid) -> str:
    return render_grid(grid, "")


_BROKEN = object()  # a line of cells that is no row: "3,10" (10 is no colour)


def _row(line: str):
    """The cells of a grid row; None for prose or a blank line; _BROKEN for digits that form no row."""
    line = line.strip().strip("[]").strip()
    if not line or not _ROW_LINE.fullmatch(line):
        return None
    cells = [c for c in _CELL_SEPARATORS.split(line) if c]
    if len(cells) == 1:
        cells = list(cells[0])  # no separators: one digit per cell
    if not all(len(c) == 1 for c in cells):
        return _BROKEN
    return [int(c) for c in cells]


def _json_grid(text: str) -> Grid | None:
    grid = None
    # A regex for exactly two levels, not a bracket scan per "[[": a completion of 100 000 "[" then costs
    # linear time, and json.loads never sees the nesting that overflows its recursion.
    for match in _JSON_GRID.finditer(text):  # the last grid written wins, as with answer blocks
        try:
            candidate = json.loads(match.group())
        except json.JSONDecodeError:
            continue
        if grid_problem(candidate) is None:
            grid = candidate
    return grid


def parse_grid(text: str | None) -> Grid | None:
    """The last grid written in `text`: a run of digit rows (any of the separators " ,;|", or none) or a
    JSON list of lists. None when there is none or its rows are ragged."""
    if not text:
        return None
    text = _CODE_FENCE.sub("\n", text)
    if _JSON_OPEN.search(text):
        return _json_grid(text)
    runs: list[list] = [[]]
    for line in text.splitlines():
        row = _row(line)
        if row is None:
            if runs[-1]:
                runs.append([])  # prose or a blank line ends a grid
        else:
            runs[-1].append(row)
    grid = next((run for run in reversed(runs) if run), None)
    # A broken row spoils its grid rather than splitting it, so "012 / 3,10 / 456" is no answer at all.
    if grid is None or _BROKEN in grid or grid_problem(grid) is not None:
        return None
    return grid


def cell_accuracy(predicted: Grid | None, gold: Grid) -> float:
    """Fraction of cells right; 0 when there is no grid or its shape differs from the gold one."""
    if predicted is None or len(predicted) != len(gold) or len(predicted[0]) != len(gold[0]):
        return 0.0
    right = sum(p == g for prow, grow in zip(predicted, gold) for p, g in zip(prow, grow))
    return right / (len(gold) * len(gold[0]))
