"""Engine commands of ``simudy``: ``train``, ``reconstruct``, ``evaluate``. No service needed."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from core.architectures import model_for_recipe
from core.checkpoints import check_manifest, check_pair, load_checkpoint, manifest_of, save_safetensors
from core.data import check_images_fit, first_per_class, load_dataset, save_npz_bytes, to_normalized
from core.errors import DatasetError, RecipeError
from core.evaluation import evaluate_npz_bytes
from core.execution import DEVICE_NAMES, Execution, resolve_device
from core.job_settings import JobSettings, LrSearch
from core.methods import method_names, parse_settings
from core.methods.base import MethodInputs, Progress
from core.metrics import PAIRINGS
from core.pipeline import Pipeline
from core.recipe import Recipe, load_recipe
from core.train import accuracy, train


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
    p.add_argument("--device", default="auto", choices=DEVICE_NAMES)
    p.add_argument("--out", required=True, type=Path)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("reconstruct", help="reconstruct training images from theta0 and thetaf")
    add_reconstruction_args(p)
    add_execution_args(p)
    p.add_argument("--resume", action="store_true", help="continue from OUT/state.pt")
    p.add_argument("--out", required=True, type=Path)
    p.set_defaults(func=cmd_reconstruct)

    p = sub.add_parser("compare", help="run several methods on one target and compare them with the truth")
    p.add_argument("--methods", required=True, help="comma-separated, e.g. simudy,ntk,kkt")
    p.add_argument("--theta0", type=Path, help="weights before training (every method but kkt)")
    p.add_argument("--thetaf", required=True, type=Path)
    p.add_argument("--recipe", required=True, type=Path)
    p.add_argument("--truth", required=True, type=Path, help="npz of the true training images")
    p.add_argument("--num-images", required=True, type=int, help="the training set size N")
    p.add_argument("--iterations", type=int, help="the same image-update budget for every method")
    p.add_argument("--seed", type=int)
    p.add_argument("--settings", metavar="FILE|JSON",
                   help='each method\'s own settings, a JSON file or inline: {"kkt": {...}, "ntk": {...}}')
    add_execution_args(p)
    p.add_argument("--out", required=True, type=Path)
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("evaluate", help="score reconstructions against the true training images")
    p.add_argument("--reconstruction", required=True, type=Path)
    p.add_argument("--truth", required=True, type=Path)
    p.add_argument("--pairing", default="greedy", choices=PAIRINGS.names())
    p.add_argument("--out", required=True, type=Path)
    p.set_defaults(func=cmd_evaluate)


def add_reconstruction_args(p: argparse.ArgumentParser) -> None:
    """The inputs of a reconstruction, the same for a local run (`reconstruct`) and a job on a
    service (`submit`)."""
    p.add_argument("--theta0", type=Path, help="weights before training (every method but kkt)")
    p.add_argument("--thetaf", required=True, type=Path)
    p.add_argument("--recipe", required=True, type=Path)
    p.add_argument("--method", choices=method_names(), help="reconstruction method (default simudy)")
    p.add_argument("--num-images", required=True, type=int)
    p.add_argument("--iterations", type=int)
    p.add_argument("--lr-search", action="store_true", help="training lr unknown: grid search it")
    p.add_argument("--settings", metavar="FILE|JSON",
                   help='more settings of the method: a JSON file, or inline JSON such as {"tv_weight": 0}')
    p.add_argument("--seed", type=int)
    p.add_argument("--precision", choices=["fp32", "bf16"],
                   help="ask for a precision (bf16 changes the numbers slightly)")


def add_execution_args(p: argparse.ArgumentParser) -> None:
    """How a local run executes (a service's workers decide this for its jobs)."""
    p.add_argument("--device", default="auto", choices=DEVICE_NAMES)
    p.add_argument("--checkpoint-segments", type=int, default=0, metavar="K",
                   help="recompute the unrolled graph K steps at a time (less memory)")
    p.add_argument("--threads", type=int, help="CPU threads for torch")
    p.add_argument("--generic-engine", action="store_true",
                   help="never use an exact specialised engine (e.g. the low-rank MLP path)")


def read_settings(value: str) -> tuple[object, str]:
    """--settings: inline JSON (a value starting with "{", as the README shows) or a JSON file;
    (the parsed value, how messages call it)."""
    if value.lstrip().startswith("{"):
        try:
            return json.loads(value), "--settings"
        except json.JSONDecodeError as err:
            raise RecipeError(f"--settings is not valid JSON: {err}") from None
    try:
        return json.loads(Path(value).read_text()), f"settings {value}"
    except OSError as err:
        raise RecipeError(f"cannot read settings {value}: {err.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RecipeError(f"cannot read settings {value}: not JSON ({err})") from None


def settings_from_args(args: argparse.Namespace) -> JobSettings:
    """--settings JSON, then the flags on top of it."""
    extra = {}
    if args.settings:
        extra, what = read_settings(args.settings)
        if not isinstance(extra, dict):
            raise RecipeError(f"{what}: expected a JSON object")
    extra["num_images"] = args.num_images
    for key in ("method", "iterations", "seed", "precision"):
        if getattr(args, key) is not None:
            extra[key] = getattr(args, key)
    if args.lr_search and not extra.get("lr_search"):
        extra["lr_search"] = LrSearch().model_dump()
    return parse_settings(extra)


def execution_from_args(args: argparse.Namespace) -> Execution:
    return Execution(device=args.device, checkpoint_segments=args.checkpoint_segments,
                     threads=args.threads, fast_paths=not getattr(args, "generic_engine", False))


def inputs_from_args(args: argparse.Namespace) -> MethodInputs:
    """Load the recipe and checkpoints named on the command line and check they fit."""
    recipe = load_recipe(args.recipe)
    theta0 = load_checkpoint(args.theta0) if args.theta0 else None
    thetaf = load_checkpoint(args.thetaf)
    check_pair(recipe, theta0, thetaf)
    return MethodInputs(recipe=recipe, thetaf=thetaf, theta0=theta0)


def read_input(path: Path, what: str) -> bytes:
    """A file named on the command line; an unreadable one is a one-line DatasetError."""
    try:
        return path.read_bytes()
    except OSError as err:
        raise DatasetError(f"cannot read {what} {path}: {err.strerror}") from None


def read_truth(path: Path, recipe: Recipe) -> bytes:
    """--truth, checked against the recipe before any run (not after an hour of one)."""
    data = read_input(path, "truth")
    x, _ = load_dataset(data, name=f"truth {path.name}")
    check_images_fit(x, recipe, f"truth {path.name}")
    return data


def eval_set(x: np.ndarray, y: np.ndarray, *, classes: list[int] | None, positive: list[int] | None,
             name: str) -> tuple[np.ndarray, np.ndarray]:
    """--eval's images labelled as the training's: only the --classes trained on, and with
    --binary, 1 for the positive classes and 0 for the rest."""
    if classes:
        keep = np.isin(y, classes)
        if not keep.any():
            raise DatasetError(f"--eval {name} has no image of the --classes {', '.join(map(str, classes))}")
        x, y = x[keep], y[keep]
    if positive is not None:
        y = np.isin(y, positive).astype(np.int64)
    return x, y


def make_out_dir(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise RecipeError(f"cannot create output folder {path}: {err.strerror}") from None
    return path


def binary_classes(text: str) -> list[int]:
    """--binary: comma-separated class numbers."""
    try:
        return [int(c) for c in text.split(",")]
    except ValueError:
        raise DatasetError(f"--binary: expected comma-separated class numbers such as 0,1, "
                           f"got {text!r}") from None


def cmd_train(args: argparse.Namespace) -> int:
    recipe = load_recipe(args.recipe)
    if args.images_per_class is not None and args.images_per_class < 1:
        raise DatasetError(f"--images-per-class must be at least 1, got {args.images_per_class}")
    if args.offset < 0:
        raise DatasetError(f"--offset must be 0 or more, got {args.offset}")
    positive = binary_classes(args.binary) if args.binary else None
    x, y = load_dataset(args.dataset)
    check_images_fit(x, recipe, args.dataset.name)
    test = load_dataset(args.eval) if args.eval else None  # checked before the training, not after
    if test is not None:
        check_images_fit(test[0], recipe, args.eval.name)
        test = eval_set(*test, classes=args.classes, positive=positive, name=args.eval.name)
    if args.classes:
        if absent := sorted(set(args.classes) - set(np.unique(y).tolist())):
            raise DatasetError(f"--classes: class {absent[0]} has no images in {args.dataset.name}"
                               f" (its classes: {', '.join(map(str, np.unique(y)))})")
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
    if positive is not None:
        y = np.isin(y, positive).astype(np.int64)
    if y.max() >= recipe.num_classes:
        raise DatasetError(f"labels go up to {y.max()} but the recipe has num_classes {recipe.num_classes}")
    device = resolve_device(args.device)
    torch.manual_seed(args.seed)
    model = model_for_recipe(recipe)
    if args.init:
        theta0 = load_checkpoint(args.init)
        check_manifest(recipe, manifest_of(theta0), "init")
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
    if test is not None:
        tx, ty = test
        summary["test_accuracy"] = accuracy(model_for_recipe(recipe), thetaf, to_normalized(tx, recipe),
                                            torch.from_numpy(ty), device=device, loss=recipe.loss)
        print(f"test accuracy {summary['test_accuracy']:.4f}", file=sys.stderr)
    save_safetensors(theta0, out / "theta0.safetensors")
    save_safetensors(thetaf, out / "thetaf.safetensors")
    (out / "recipe.json").write_text(recipe.without_augmentation().model_dump_json(indent=2) + "\n")
    (out / "train_images.npz").write_bytes(save_npz_bytes(x=x, y=y))
    (out / "train_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(out)
    return 0


class TerminalMonitor:
    """A run on the command line: a one-line progress bar on a terminal (a line per 10%
    otherwise), and Ctrl-C / SIGTERM ask the run to stop after the current step, so its state
    can be saved and resumed."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.last_decile = -1
        self.stop_requested = False

    def on_progress(self, p: Progress) -> None:
        eta = f"{p.eta_seconds:.0f}s" if p.eta_seconds is not None else "?"
        metrics = " ".join(f"{k} {v:.4g}" for k, v in p.metrics.items())
        line = f"iter {p.iteration}/{p.iterations} {metrics} elapsed {p.elapsed_seconds:.0f}s eta {eta}"
        if self.tty:
            filled = int(30 * p.fraction)
            print(f"\r[{'#' * filled}{'.' * (30 - filled)}] {line}", end="", file=sys.stderr, flush=True)
            if p.iteration == p.iterations:
                print(file=sys.stderr)
        elif int(10 * p.fraction) != self.last_decile:
            self.last_decile = int(10 * p.fraction)
            print(line, file=sys.stderr, flush=True)

    def should_stop(self) -> bool:
        return self.stop_requested

    def _handler(self, signum, frame) -> None:  # noqa: ANN001
        self.stop_requested = True

    def __enter__(self) -> "TerminalMonitor":
        import signal

        self._old = {s: signal.signal(s, self._handler) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc: object) -> None:
        import signal

        for s, h in self._old.items():
            signal.signal(s, h)


def cmd_reconstruct(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    pipeline = Pipeline(inputs_from_args(args), settings, execution_from_args(args))
    out = make_out_dir(args.out)
    state_path = out / "state.pt"
    if args.resume and not state_path.exists():
        raise RecipeError(f"--resume: no saved state at {state_path}")
    state = state_path.read_bytes() if args.resume else None
    lr = None
    if pipeline.lr_candidates and state is None:
        lr = pipeline.search_lr(on_candidate=lambda s: print(
            f"lr {s['lr']:.4g}: loss after {len(s['losses'])} updates {s['score']:.4f}", file=sys.stderr))
    with TerminalMonitor() as monitor:
        pipeline.start(lr=lr, state=state)
        finished = pipeline.run(monitor)
    if not finished:
        state_path.write_bytes(pipeline.state_bytes())
        print(f"\nstopped at iteration {pipeline.method.iteration}; state saved to {state_path} "
              "(continue with --resume)", file=sys.stderr)
        return 130
    pipeline.finalize().write(out)
    state_path.unlink(missing_ok=True)
    print(out)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from core.compare import run_methods, table_markdown, write_comparison

    per_method: dict = {}
    if args.settings:
        per_method, what = read_settings(args.settings)
        if not isinstance(per_method, dict) or not all(isinstance(v, dict) for v in per_method.values()):
            raise RecipeError(f"{what}: expected {{method: {{option: value}}}}")
    shared = {"num_images": args.num_images}
    for key in ("iterations", "seed"):
        if getattr(args, key) is not None:
            shared[key] = getattr(args, key)
    inputs = inputs_from_args(args)
    truth = read_truth(args.truth, inputs.recipe)
    out = make_out_dir(args.out)
    monitor = TerminalMonitor()
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]

    def monitor_for(name: str) -> TerminalMonitor:
        print(f"{name}:", file=sys.stderr, flush=True)
        monitor.last_decile = -1
        return monitor

    with monitor:
        runs = run_methods(methods, inputs, truth, shared, per_method,
                           execution_from_args(args), out, monitor_for=monitor_for)
    write_comparison(runs, truth, out)
    print(table_markdown(runs), end="")
    print(out)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    metrics, pairs_png = evaluate_npz_bytes(read_input(args.reconstruction, "reconstruction"),
                                            read_input(args.truth, "truth"), pairing=args.pairing)
    out = make_out_dir(args.out)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (out / "pairs.png").write_bytes(pairs_png)
    print(metrics_line(metrics))
    return 0


def metrics_line(metrics: dict) -> str:
    """One line of the headline scores (``evaluate`` and ``submit --truth`` print it)."""
    return (f"ssim_paper_mean {metrics['ssim_paper_mean']:.4f}  ssim_mean {metrics['ssim_mean']:.4f}  "
            f"psnr_mean {metrics['psnr_mean']:.2f}  recovered>0.3 {metrics['recovered_above_0.3']}"
            f"/{metrics['num_originals']}")
