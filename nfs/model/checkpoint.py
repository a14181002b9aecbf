"""Checkpoints as safetensors + JSON (never pickle): model weights, optimiser state, RNG, step, model card."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from nfs.model.config import NFSConfig
from nfs.model.network import NFSNetwork

MODEL_FILE = "model.safetensors"
CARD_FILE = "model_card.json"
TRAIN_STATE_FILE = "train_state.safetensors"
TRAIN_JSON_FILE = "train_state.json"


def _atomic_save_tensors(tensors: dict, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp))
    os.replace(tmp, path)


def _atomic_save_json(obj: dict, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    os.replace(tmp, path)


def save_model(directory: Path, model: NFSNetwork, card: dict) -> None:
    """Write model.safetensors and model_card.json (the card carries the config)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    _atomic_save_tensors(model.state_dict(), directory / MODEL_FILE)
    _atomic_save_json({**card, "config": model.cfg.to_dict()}, directory / CARD_FILE)


def weights_hash(model: NFSNetwork) -> str:
    """A short content hash of a model's configuration and weights (the same checkpoint gives the same hash in any
    process; changed weights give another)."""
    h = hashlib.sha1(json.dumps(model.cfg.to_dict(), sort_keys=True).encode())
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def load_model(directory: Path, device: str = "cpu") -> tuple[NFSNetwork, dict]:
    """Load a model and its card from a directory written by `save_model`."""
    directory = Path(directory)
    card_path, weights_path = directory / CARD_FILE, directory / MODEL_FILE
    if not card_path.exists() or not weights_path.exists():
        raise FileNotFoundError(f"no model in {directory} (expected {MODEL_FILE} and {CARD_FILE})")
    card = json.loads(card_path.read_text())
    model = NFSNetwork(NFSConfig.from_dict(card["config"]))
    model.load_state_dict(load_file(str(weights_path), device=device))
    model.eval()
    return model.to(device), card


def save_train_state(directory: Path, optimizer: torch.optim.Optimizer, scheduler, state: dict) -> None:
    """Optimiser tensors + torch RNG in safetensors; step, schedule and the rest in JSON."""
    directory = Path(directory)
    tensors, meta = {}, {"param_groups": optimizer.state_dict()["param_groups"], "opt_state_keys": {}}
    for pid, st in optimizer.state_dict()["state"].items():
        keys = []
        for name, value in st.items():
            if torch.is_tensor(value):
                tensors[f"opt.{pid}.{name}"] = value
                keys.append(name)
            else:
                meta.setdefault("opt_scalars", {})[f"{pid}.{name}"] = value
        meta["opt_state_keys"][str(pid)] = keys
    tensors["rng.torch"] = torch.get_rng_state()
    meta["scheduler"] = scheduler.state_dict() if scheduler is not None else None
    meta.update(state)
    _atomic_save_tensors(tensors, directory / TRAIN_STATE_FILE)
    _atomic_save_json(meta, directory / TRAIN_JSON_FILE)


def load_train_state(directory: Path, optimizer: torch.optim.Optimizer, scheduler) -> dict:
    directory = Path(directory)
    tensors = load_file(str(directory / TRAIN_STATE_FILE))
    meta = json.loads((directory / TRAIN_JSON_FILE).read_text())
    state = {}
    for pid, keys in meta["opt_state_keys"].items():
        st = {k: tensors[f"opt.{pid}.{k}"] for k in keys}
        for key, value in meta.get("opt_scalars", {}).items():
            p, name = key.split(".", 1)
            if p == pid:
                st[name] = value
        state[int(pid)] = st
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    if scheduler is not None and meta.get("scheduler"):
        scheduler.load_state_dict(meta["scheduler"])
    torch.set_rng_state(tensors["rng.torch"])
    return meta
