"""The model a run decodes with: the shipped one (loaded once), an untrained one for development, and copies of a
model on other devices."""
from __future__ import annotations

import copy
import functools
import weakref
from pathlib import Path

import torch

from nfs.model.checkpoint import load_model
from nfs.model.config import get_preset
from nfs.model.network import NFSNetwork
from nfs.regions import N_REGIONS
from nfs.resources import SHIPPED_MODEL_DIR


@functools.lru_cache(maxsize=2)
def load_shipped_model(directory: str | None = None) -> tuple[NFSNetwork, dict]:
    """The trained model shipped in ckpts/ (safetensors + model card), loaded once."""
    path = Path(directory) if directory else SHIPPED_MODEL_DIR
    if not path.exists():
        raise FileNotFoundError(f"no trained model at {path}: train one with `python -m nfs train` "
                                "and copy runs/<name>/best there")
    return load_model(path)


def untrained_model(preset: str = "cpu") -> NFSNetwork:
    """A randomly initialised network of a preset (`nfs.model.config`), in eval mode: development without a
    checkpoint (the app's --random-init)."""
    return NFSNetwork(get_preset(preset, n_regions=N_REGIONS)).eval()


_DEVICE_COPIES: "weakref.WeakKeyDictionary[NFSNetwork, dict]" = weakref.WeakKeyDictionary()


def model_on(model: NFSNetwork, device: torch.device) -> NFSNetwork:
    """`model` itself when its weights are on `device`, else a copy moved there (made once per model and device),
    so a model shared by several sessions is never moved under another's feet."""
    if next(model.parameters()).device == device:
        return model
    copies = _DEVICE_COPIES.setdefault(model, {})
    if str(device) not in copies:
        copies[str(device)] = copy.deepcopy(model).to(device).eval()
    return copies[str(device)]
