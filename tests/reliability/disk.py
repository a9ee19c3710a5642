"""Which files reached the disk (fsync) before a checkpoint's COMPLETE marker existed."""

from __future__ import annotations

import os
from pathlib import Path

from reasoning_rl.checkpointing import COMPLETE_MARKER


def record_fsyncs(monkeypatch) -> list[tuple[Path, bool]]:
    """Every os.fsync from now on, as (path, whether that path's folder already had COMPLETE)."""
    synced: list[tuple[Path, bool]] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        path = Path(os.readlink(f"/proc/self/fd/{fd}"))
        folder = path if path.is_dir() else path.parent
        synced.append((path, (folder / COMPLETE_MARKER).exists()))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return synced


def assert_synced_before_marker(folder: Path, synced: list[tuple[Path, bool]]) -> None:
    """Each file of a complete checkpoint was fsynced while it had no COMPLETE marker yet."""
    folder = folder.resolve()
    assert (folder / COMPLETE_MARKER).exists()
    early = {path for path, marked in synced if not marked}
    files = [p.resolve() for p in folder.rglob("*") if p.is_file() and p.name != COMPLETE_MARKER]
    assert files, f"{folder} holds no files"
    missing = [str(p.relative_to(folder)) for p in files if p not in early]
    assert not missing, f"not on disk before {COMPLETE_MARKER}: {missing}"
    assert (folder / COMPLETE_MARKER) in {path for path, _ in synced}, "the marker itself is fsynced too"
