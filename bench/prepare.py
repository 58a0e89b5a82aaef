"""Everything before the reconstruction: the target images, theta0 (random init, or a
pretrained ResNet cached by content hash) and thetaf (the case's real training, also cached)."""

from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.cases import VEHICLES, Case, Pretraining
from bench.provenance import shown_path
from core.architectures import model_for_recipe
from core.checkpoints import load_checkpoint, save_safetensors
from core.data import check_images_fit, first_per_class, load_dataset, save_npz_bytes, to_normalized
from core.errors import DatasetError
from core.execution import device_description
from core.recipe import Recipe, parse_recipe
from core.train import accuracy, train

DEFAULT_CACHE = Path(__file__).resolve().parent / "cache"


@dataclass
class Prepared:
    recipe: Recipe  # the recipe the audit is told (the case's declared one, else the real one)
    theta0_path: Path
    thetaf_path: Path
    truth_path: Path  # npz of the target images (x uint8 NHWC, y)
    indices: list[int]
    theta0_info: dict[str, Any]


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def content_key(**parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def _data(data_dir: Path, name: str) -> Path:
    path = data_dir / name
    if not path.is_file():
        raise DatasetError(f"{path}: no such file (--data must be the folder holding {name})")
    return path


def select_targets(case: Case, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(indices, labels): the first K of every class (from ``offset``; with ``classes``, of
    those classes, relabelled 0..C-1), or the first k vehicles and k animals."""
    if not case.binary_per_group:
        if case.classes is None:
            idx = first_per_class(y, case.per_class, case.offset, num_classes=case.recipe["num_classes"])
            return idx, y[idx]
        if len(case.classes) != case.recipe["num_classes"]:
            raise DatasetError(f"{case.name}: {len(case.classes)} classes, the recipe has {case.recipe['num_classes']}")
        within = np.flatnonzero(np.isin(y, case.classes))
        position = {c: i for i, c in enumerate(case.classes)}
        relabelled = np.array([position[int(c)] for c in y[within]], dtype=np.int64)
        local = first_per_class(relabelled, case.per_class, case.offset, num_classes=len(case.classes))
        return within[local], relabelled[local].astype(np.int64)
    vehicle = np.isin(y, VEHICLES)
    picked = [np.flatnonzero(vehicle)[:case.binary_per_group], np.flatnonzero(~vehicle)[:case.binary_per_group]]
    if min(len(p) for p in picked) < case.binary_per_group:
        raise DatasetError(f"need {case.binary_per_group} vehicles and as many animals")
    idx = np.sort(np.concatenate(picked))
    return idx, vehicle[idx].astype(np.int64)


def _log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def pretrained_theta0(p: Pretraining, data_dir: Path, cache: Path, device: torch.device) -> tuple[Path, dict]:
    """Pretrain theta0 once per machine; later calls find it under ``cache`` by content hash."""
    recipe_dict = p.recipe_on(device.type)
    recipe = parse_recipe(recipe_dict)
    data, test = _data(data_dir, p.data_file), _data(data_dir, p.test_file)
    key = content_key(recipe=recipe_dict, data=file_sha256(data), per_class=p.per_class, seed=p.seed,
                      epochs=recipe.epochs)
    path, meta_path = cache / f"theta0-{key}.safetensors", cache / f"theta0-{key}.json"
    recipe_path = cache / f"theta0-{key}.recipe.json"
    cache.mkdir(parents=True, exist_ok=True)
    recipe_path.write_text(json.dumps(recipe_dict, indent=2) + "\n")
    # The same theta0, by hand: the bench and `simudy train` share the seed, init and trainer.
    command = (f"simudy train --dataset {shown_path(data)} --recipe {shown_path(recipe_path)} "
               + (f"--images-per-class {p.per_class}" if p.per_class else "--all")
               + f" --seed {p.seed} --eval {shown_path(test)} --out DIR")
    if path.exists() and meta_path.exists():
        return path, {**json.loads(meta_path.read_text()), "command": command}
    x, y = load_dataset(data)
    check_images_fit(x, recipe, p.data_file)
    if p.per_class:
        idx = first_per_class(y, p.per_class)
        x, y = x[idx], y[idx]
    _log(f"pretraining theta0 ({recipe.architecture}, {len(x)} images, {recipe.epochs} epochs) -> {path}")
    torch.manual_seed(p.seed)
    model = model_for_recipe(recipe)
    init = {k: v.clone() for k, v in model.state_dict().items()}
    started = time.perf_counter()
    theta0 = train(model, init, to_normalized(x, recipe), torch.from_numpy(y), recipe, seed=p.seed,
                   device=device, on_epoch=lambda e, loss: _log(f"pretrain epoch {e + 1} loss {loss:.4f}"))
    train_seconds = time.perf_counter() - started
    tx, ty = load_dataset(test)
    acc = accuracy(model_for_recipe(recipe), theta0, to_normalized(tx, recipe), torch.from_numpy(ty),
                   device=device)
    meta = {"key": key, "recipe": recipe_dict, "data_file": p.data_file, "num_images": int(len(x)),
            "seed": p.seed, "test_file": p.test_file, "test_accuracy": acc, "command": command,
            "train_seconds": train_seconds, "device": device_description(device)}
    save_safetensors(theta0, path)
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    _log(f"theta0 test accuracy {acc:.4f}")
    return path, meta


def prepare(case: Case, data_dir: Path, cache: Path, device: torch.device) -> Prepared:
    recipe = parse_recipe(case.recipe)
    data = _data(data_dir, case.data_file)
    x, y = load_dataset(data)
    check_images_fit(x, recipe, case.data_file)
    idx, labels = select_targets(case, x, y)
    if case.pretrain:
        theta0_path, info = pretrained_theta0(case.pretrain, data_dir, cache, device)
        theta0 = load_checkpoint(theta0_path)
    else:
        torch.manual_seed(case.seed)
        theta0 = {k: v.clone() for k, v in model_for_recipe(recipe).state_dict().items()}
        theta0_path, info = None, {"init": "random", "seed": case.seed}
    key = content_key(recipe=case.recipe, data=file_sha256(data), indices=idx.tolist(),
                      labels=labels.tolist(), seed=case.seed, theta0=info.get("key", info))
    thetaf_path = cache / f"thetaf-{key}.safetensors"
    truth_path = cache / f"truth-{key}.npz"
    if theta0_path is None:
        theta0_path = cache / f"theta0-{key}.safetensors"
    if not (thetaf_path.exists() and truth_path.exists() and theta0_path.exists()):
        _log(f"training thetaf ({case.name}: {len(idx)} images, {recipe.epochs} epochs)")
        thetaf = train(model_for_recipe(recipe), theta0, to_normalized(x[idx], recipe),
                       torch.from_numpy(labels), recipe, seed=case.seed, device=device)
        cache.mkdir(parents=True, exist_ok=True)
        save_safetensors(theta0, theta0_path)
        save_safetensors(thetaf, thetaf_path)
        truth_path.write_bytes(save_npz_bytes(x=x[idx], y=labels))
    declared = parse_recipe(case.declared_recipe) if case.declared_recipe else recipe
    return Prepared(declared, theta0_path, thetaf_path, truth_path, idx.tolist(), info)
