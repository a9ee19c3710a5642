"""RNG state in a checkpoint without pickle: torch's generators as tensors in rng.pt (loaded with
weights_only=True), python's and numpy's as plain numbers in rng.json. A checkpoint dir is data
someone may hand us; unpickling it could run anything."""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)


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
