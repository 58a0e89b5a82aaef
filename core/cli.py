"""Engine commands of ``simudy``: ``train``, ``reconstruct``, ``evaluate``. No service needed."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from core.checkpoints import check_pair, load_checkpoint, save_safetensors
from core.data import check_images_fit, first_per_class, load_dataset, save_npz_bytes, to_normalized
from core.errors import DatasetError, RecipeError
from core.evaluation import evaluate_npz_bytes
from core.pipeline import reconstruct
from core.recipe import load_recipe
from core.settings import LrSearch, ReconstructionSettings, parse_settings
from core.simudy import model_for_recipe
from core.state_io import state_from_bytes, state_to_bytes
from core.trainer import accuracy, train


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train theta0 -> thetaf on chosen images (make an audit target or pretrain)")
    p.add_argument("--dataset", required=True, type=Path, help="npz with x uint8 NHWC and y")
    p.add_argument("--recipe", required=True, type=Path)
    pick = p.add_mutually_exclusive_group(required=True)
    pick.add_argument("--images-per-class", type=int, metavar="K")
    pick.add_argument("--indices", type=Path, metavar="FILE", help="text file of dataset indices")
    pick.add_argument("--all", action="store_true", help="train on every image (pretraining)")
    p.add_argument("--offset", type=int, default=0, help="skip the first O images of each class")
    p.add_argument("--classes", type=int, nargs="+", help="keep only these classes")
    p.add_argument("--binary", type=str, metavar="POS_CLASSES",
                   help="relabel to 2 classes: comma-separated classes become 1, the rest 0")
    p.add_argument("--init", type=Path, help="theta0 to start from (default: random init by --seed)")
    p.add_argument("--eval", type=Path, metavar="TEST.npz", help="report test accuracy of thetaf")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--out", required=True, type=Path)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("reconstruct", help="reconstruct training images from theta0 and thetaf")
    add_reconstruction_args(p)
    p.add_argument("--resume", action="store_true", help="continue from OUT/state.pt")
    p.add_argument("--out", required=True, type=Path)
    p.set_defaults(func=cmd_reconstruct)

    p = sub.add_parser("evaluate", help="score reconstructions against the true training images")
    p.add_argument("--reconstruction", required=True, type=Path)
    p.add_argument("--truth", required=True, type=Path)
    p.add_argument("--pairing", default="greedy", choices=["greedy", "optimal"])
    p.add_argument("--out", required=True, type=Path)
    p.set_defaults(func=cmd_evaluate)


def add_reconstruction_args(p: argparse.ArgumentParser) -> None:
    """The inputs of a reconstruction, the same for a local run (`reconstruct`) and a job on a
    service (`submit`)."""
    p.add_argument("--theta0", required=True, type=Path)
    p.add_argument("--thetaf", required=True, type=Path)
    p.add_argument("--recipe", required=True, type=Path)
    p.add_argument("--num-images", required=True, type=int)
    p.add_argument("--iterations", type=int)
    p.add_argument("--lr-search", action="store_true", help="training lr unknown: grid search it")
    p.add_argument("--settings", type=Path, help="JSON with more reconstruction settings")
    p.add_argument("--seed", type=int)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"])


def settings_from_args(args: argparse.Namespace) -> ReconstructionSettings:
    """--settings JSON, then the flags on top of it."""
    extra = {}
    if args.settings:
        try:
            extra = json.loads(args.settings.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise RecipeError(f"cannot read settings {args.settings}: {err}") from None
        if not isinstance(extra, dict):
            raise RecipeError(f"settings {args.settings}: expected a JSON object")
    extra["num_images"] = args.num_images
    for key in ("iterations", "seed", "device"):
        if getattr(args, key) is not None:
            extra[key] = getattr(args, key)
    if args.lr_search and not extra.get("lr_search"):
        extra["lr_search"] = LrSearch().model_dump()
    return parse_settings(extra)


def read_input(path: Path, what: str) -> bytes:
    """A file named on the command line; an unreadable one is a one-line DatasetError."""
    try:
        return path.read_bytes()
    except OSError as err:
        raise DatasetError(f"cannot read {what} {path}: {err.strerror}") from None


def make_out_dir(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise RecipeError(f"cannot create output folder {path}: {err.strerror}") from None
    return path


def cmd_train(args: argparse.Namespace) -> int:
    from core.device import resolve_device

    recipe = load_recipe(args.recipe)
    x, y = load_dataset(args.dataset)
    check_images_fit(x, recipe, args.dataset.name)
    if args.classes:
        keep = np.isin(y, args.classes)
        x, y = x[keep], y[keep]
    if args.all:
        idx = np.arange(len(x))
    elif args.indices:
        try:
            idx = np.array([int(t) for t in args.indices.read_text().split()], dtype=np.int64)
        except (OSError, ValueError) as err:
            raise DatasetError(f"cannot read indices from {args.indices}: {err}") from None
        if len(idx) == 0 or idx.min() < 0 or idx.max() >= len(x):
            raise DatasetError(f"indices must lie in 0..{len(x) - 1}")
    else:
        idx = first_per_class(y, args.images_per_class, args.offset)
    x, y = x[idx], y[idx]
    if args.binary:
        positive = [int(c) for c in args.binary.split(",")]
        y = np.isin(y, positive).astype(np.int64)
    if y.max() >= recipe.num_classes:
        raise DatasetError(f"labels go up to {y.max()} but the recipe has num_classes {recipe.num_classes}")
    device = resolve_device(args.device)
    torch.manual_seed(args.seed)
    model = model_for_recipe(recipe)
    if args.init:
        theta0 = load_checkpoint(args.init)
        from core.checkpoints import check_against_model

        check_against_model(theta0, model.state_dict(), "init")
    else:
        theta0 = {k: v.clone() for k, v in model.state_dict().items()}
    out = make_out_dir(args.out)
    t0 = time.perf_counter()
    thetaf = train(model, theta0, to_normalized(x, recipe), torch.from_numpy(y), recipe,
                   seed=args.seed, device=device,
                   on_epoch=lambda e, loss: print(f"epoch {e + 1}/{recipe.epochs} loss {loss:.4f}",
                                                  file=sys.stderr))
    summary = {"num_images": int(len(x)), "indices": idx.tolist() if len(idx) <= 10_000 else None,
               "seconds": time.perf_counter() - t0, "seed": args.seed}
    if args.eval:
        tx, ty = load_dataset(args.eval)
        summary["test_accuracy"] = accuracy(model_for_recipe(recipe), thetaf, to_normalized(tx, recipe),
                                            torch.from_numpy(ty), device=device)
        print(f"test accuracy {summary['test_accuracy']:.4f}", file=sys.stderr)
    save_safetensors(theta0, out / "theta0.safetensors")
    save_safetensors(thetaf, out / "thetaf.safetensors")
    (out / "recipe.json").write_text(recipe.without_augmentation().model_dump_json(indent=2) + "\n")
    (out / "train_images.npz").write_bytes(save_npz_bytes(x=x, y=y))
    (out / "train_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(out)
    return 0


class _ProgressPrinter:
    """A one-line progress bar on a terminal, a line per 10% otherwise."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.last_decile = -1

    def __call__(self, p) -> None:
        eta = f"{p.eta_seconds:.0f}s" if p.eta_seconds is not None else "?"
        line = (f"iter {p.iteration}/{p.iterations} loss {p.loss:.4f} cos {p.cosine:.4f} "
                f"tv {p.tv:.3f} elapsed {p.elapsed_seconds:.0f}s eta {eta}")
        if self.tty:
            filled = int(30 * p.fraction)
            print(f"\r[{'#' * filled}{'.' * (30 - filled)}] {line}", end="", file=sys.stderr, flush=True)
            if p.iteration == p.iterations:
                print(file=sys.stderr)
        elif int(10 * p.fraction) != self.last_decile:
            self.last_decile = int(10 * p.fraction)
            print(line, file=sys.stderr, flush=True)


class _StopOnSignal:
    """Ctrl-C / SIGTERM ask the run to stop after the current iteration, so its state can be
    saved and resumed."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self) -> bool:
        return self.requested

    def _handler(self, signum, frame) -> None:
        self.requested = True

    def __enter__(self):
        import signal

        self._old = {s: signal.signal(s, self._handler) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc) -> None:
        import signal

        for s, h in self._old.items():
            signal.signal(s, h)


def cmd_reconstruct(args: argparse.Namespace) -> int:
    recipe = load_recipe(args.recipe)
    settings = settings_from_args(args)
    theta0, thetaf = load_checkpoint(args.theta0), load_checkpoint(args.thetaf)
    check_pair(recipe, theta0, thetaf)
    out = make_out_dir(args.out)
    state_path = out / "state.pt"
    state = state_from_bytes(state_path.read_bytes()) if args.resume and state_path.exists() else None
    if args.resume and state is None:
        raise RecipeError(f"--resume: no saved state at {state_path}")
    stop = _StopOnSignal()

    def on_candidate(s):
        print(f"lr {s['lr']:.4g}: loss after {len(s['losses'])} updates {s['score']:.4f}", file=sys.stderr)

    with stop:
        recon, outputs = reconstruct(theta0, thetaf, recipe, settings, on_progress=_ProgressPrinter(),
                                     on_candidate=on_candidate, should_stop=stop, state=state)
    if outputs is None:
        state_path.write_bytes(state_to_bytes(recon.state_dict()))
        print(f"\nstopped at iteration {recon.iteration}; state saved to {state_path} "
              "(continue with --resume)", file=sys.stderr)
        return 130
    (out / "reconstruction.npz").write_bytes(outputs.npz_bytes)
    (out / "grid.png").write_bytes(outputs.grid_png)
    (out / "loss.csv").write_text(outputs.loss_csv)
    summary = {**outputs.summary, "settings": json.loads(recon.settings.model_dump_json())}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    state_path.unlink(missing_ok=True)
    print(out)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    metrics, pairs_png = evaluate_npz_bytes(read_input(args.reconstruction, "reconstruction"),
                                            read_input(args.truth, "truth"), pairing=args.pairing)
    out = make_out_dir(args.out)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (out / "pairs.png").write_bytes(pairs_png)
    print(f"ssim_paper_mean {metrics['ssim_paper_mean']:.4f}  ssim_mean {metrics['ssim_mean']:.4f}  "
          f"psnr_mean {metrics['psnr_mean']:.2f}  recovered>0.3 {metrics['recovered_above_0.3']}"
          f"/{metrics['num_originals']}")
    return 0
