"""Checkpoints, one module for every trainer (the TRL ones through callbacks/checkpoint.py, PPO/TRPO,
ORPO's rounds): the `checkpoint-<step>/` layout, the COMPLETE marker written only after every file
reached the disk, rotation that never leaves none, RNG state without pickle, weights loaded back, the
newest checkpoint that still reads back, and the refusal to resume under a different config.

A checkpoint dir is data someone may hand us: nothing in it is unpickled (torch.load weights_only,
RNG state as tensors plus JSON numbers).
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from reasoning_rl.errors import ConfigError, DataError, UserError

COMPLETE_MARKER = "COMPLETE"
# Config sections that decide what a checkpoint contains; logging, eval cadence and checkpoint
# cadence may change between a run and its resume. Generation settings shape the rollouts (and the
# curve's evals): a resume with another temperature or max_new_tokens would train a different run.
FINGERPRINT_KEYS = ("model", "dataset", "prompt", "algorithm", "hparams", "peft", "generation", "seed")
# Throughput only: how many sequences share a forward pass, how much GPU memory vLLM takes.
NOT_FINGERPRINTED = {"generation.batch_size", "generation.gpu_memory_utilization", "generation.enable_prefix_caching"}
_STEP = re.compile(r"^checkpoint-(\d+)$")
log = logging.getLogger(__name__)
T = TypeVar("T")


def complete_checkpoints(folder: Path) -> list[Path]:
    """The `checkpoint-<step>` dirs of `folder` that carry the COMPLETE marker, newest first."""
    if not folder.is_dir():
        return []
    complete = [(int(m.group(1)), p) for p in folder.iterdir()
                if (m := _STEP.match(p.name)) and (p / COMPLETE_MARKER).exists()]
    return [p for _, p in sorted(complete, reverse=True)]


def latest_complete_checkpoint(folder: Path) -> Path | None:
    complete = complete_checkpoints(folder)
    return complete[0] if complete else None


def has_complete_checkpoint(folder: Path) -> bool:
    """Anything to resume from: a complete checkpoint, or (ORPO) a round's complete final weights."""
    return folder.is_dir() and any(p.parent.name == "final" or _STEP.match(p.parent.name)
                                   for p in folder.rglob(COMPLETE_MARKER))


class DamagedCheckpoint(Exception):
    """A file of a complete checkpoint is truncated or garbled (not a UserError: an older one may load)."""


def read_headers(folder: Path) -> None:
    """Raise DamagedCheckpoint, naming the file, if a file of the checkpoint does not read back. Reads file
    headers only: safetensors headers, torch.save's zip directory, JSON."""
    from safetensors import safe_open

    for path in sorted(folder.rglob("*")):
        if not path.is_file():
            continue
        try:
            if path.suffix == ".safetensors":
                with safe_open(str(path), "pt") as f:
                    f.keys()
            elif path.suffix in (".pt", ".pth", ".bin"):
                with zipfile.ZipFile(path) as z:
                    z.namelist()
            elif path.suffix == ".json":
                json.loads(path.read_text())
        except Exception as exc:  # noqa: BLE001  (each reader has its own error types)
            raise DamagedCheckpoint(f"{path.name}: {type(exc).__name__}: {str(exc)[:200]}") from exc


def load_newest(folder: Path, load: Callable[[Path], T], newest: Path | None = None) -> tuple[Path, T] | None:
    """`load` the newest complete checkpoint of `folder` (at or before `newest`): one that fails to load
    (a truncated or garbled file) is named in a warning and the next older one is tried. Returns (its
    path, what `load` returned), or None when there is no complete checkpoint. A UserError (a checkpoint
    of another setup) is not damage and is raised as is; all of them failing is a DataError, since
    resuming from nothing would silently restart."""
    complete = complete_checkpoints(folder)
    if newest is not None:
        complete = [p for p in complete if _step(p) <= _step(newest)]
    for path in complete:
        try:
            return path, load(path)
        except UserError:
            raise
        except Exception as exc:  # noqa: BLE001  (safetensors, torch, zip, json: each its own errors)
            log.warning("checkpoint %s cannot be loaded (%s: %s); falling back to the previous complete "
                        "checkpoint", path, type(exc).__name__, str(exc)[:200])
    if complete:
        raise DataError(f"no complete checkpoint in {folder} can be loaded (newest: {complete[0].name}); "
                        "delete them, or use checkpoint.resume=never to start over")
    return None


def latest_loadable_checkpoint(folder: Path) -> Path | None:
    """The newest complete checkpoint whose file headers read back (see load_newest)."""
    found = load_newest(folder, read_headers)
    return found[0] if found else None


def _step(checkpoint: Path) -> int:
    return int(_STEP.match(checkpoint.name).group(1))


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def mark_complete(folder: Path) -> None:
    """Write the COMPLETE marker once every file of the checkpoint is on disk: without the fsyncs a
    power cut can keep the marker (metadata) but lose the data written just before it."""
    for path in sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True):  # files, then their dirs
        if not path.is_symlink():
            _fsync(path)
    _fsync(folder)
    marker = folder / COMPLETE_MARKER
    with open(marker, "w") as f:
        f.flush()
        os.fsync(f.fileno())
    _fsync(folder)
    _fsync(folder.parent)


def rotate_checkpoints(folder: Path, keep: int | None, protect: Path | None = None) -> None:
    """Keep the newest `keep` complete checkpoints (at least one, whatever keep says); drop older ones
    and the incomplete leftovers of crashes that are older than the newest complete one."""
    if keep is None:
        return
    keep = max(1, int(keep))
    complete = complete_checkpoints(folder)
    if not complete:
        return
    newest = _step(complete[0])
    stale = complete[keep:] + [p for p in folder.iterdir() if (m := _STEP.match(p.name))
                               and not (p / COMPLETE_MARKER).exists() and int(m.group(1)) < newest]
    for old in stale:
        if protect is None or old.resolve() != protect.resolve():
            shutil.rmtree(old, ignore_errors=True)


def _flatten(cfg: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(cfg, Mapping):
        out = {}
        for k, v in cfg.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): cfg}


def fingerprint(config: Mapping[str, Any]) -> dict[str, Any]:
    flat = _flatten({k: config.get(k) for k in FINGERPRINT_KEYS})
    return {k: v for k, v in flat.items() if k not in NOT_FINGERPRINTED}


# Keys that got a shared name (conf/algorithm/grpo.yaml): GRPO's checkpoints written before recorded the
# same settings under TRL's name only.
_RENAMED = {"algorithm.num_generations": "algorithm.args.num_generations", "algorithm.kl_coef": "algorithm.args.beta"}


def check_resumable(folder: Path, config: Mapping[str, Any]) -> None:
    """Record the config that produced these checkpoints; refuse to mix in a different one."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config_fingerprint.json"
    current = fingerprint(config)
    if path.exists():
        saved = json.loads(path.read_text())
        # A fingerprint written before a section was part of it says nothing about that section.
        recorded = {k.split(".", 1)[0] for k in saved}
        unrecorded = sorted({k.split(".", 1)[0] for k in current} - recorded)
        if unrecorded:
            log.warning("%s was recorded without %s: those settings are not checked on this resume", path,
                        ", ".join(unrecorded))
        for new, old in _RENAMED.items():  # a GRPO fingerprint from before the shared names
            if new not in saved and old in saved and new in current:
                saved[new] = saved[old]
        changed = sorted(k for k in set(saved) | set(current)
                         if k.split(".", 1)[0] in recorded and saved.get(k) != current.get(k))
        if changed:
            shown = ", ".join(f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in changed[:3])
            raise ConfigError(
                f"{folder} holds checkpoints of a different config ({shown}); refusing to resume. "
                "Use a new hydra.run.dir, or checkpoint.resume=never to start over there"
            )
    else:
        path.write_text(json.dumps(current, indent=2, sort_keys=True, default=str))


# ---- RNG state: torch's generators as tensors in rng.pt, python's and numpy's as numbers in rng.json


def save_rng(folder: Path) -> None:
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    (folder / "rng.json").write_text(json.dumps({
        "python": [version, list(internal), gauss],
        "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
    }))
    torch.save({"torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}, folder / "rng.pt")


def load_rng(folder: Path) -> None:
    if not (folder / "rng.json").is_file():  # written before rng.json existed: its rng.pt is a pickle
        log.warning("%s has no rng.json (an older checkpoint format): resuming with fresh random state", folder)
        return
    saved = json.loads((folder / "rng.json").read_text())
    version, internal, gauss = saved["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = saved["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    tensors = torch.load(folder / "rng.pt", weights_only=True)
    torch.set_rng_state(tensors["torch"])
    if tensors["cuda"]:
        torch.cuda.set_rng_state_all(tensors["cuda"])


# ---- weights


def load_weights(model, folder: Path) -> None:
    """Put the weights saved by `model.save_pretrained(folder)` back into `model`."""
    from peft import PeftModel
    from peft.utils import load_peft_weights, set_peft_model_state_dict

    if isinstance(model, PeftModel):
        result = set_peft_model_state_dict(model, load_peft_weights(str(folder)))
        if result.unexpected_keys:
            raise UserError(f"{folder} does not match this adapter (e.g. {result.unexpected_keys[0]})")
    else:
        from safetensors.torch import load_file

        state = {}
        for file in sorted(folder.glob("*.safetensors")):
            state.update(load_file(file))
        model.load_state_dict(state, strict=False)
