"""Run the authors' reference code (github.com/BlueBlood6/SimuDy, ``recons.py``) headless on
the CPU, on our checkpoints, for the side-by-side timing. Nothing of it is copied here: the
harness takes the path of a checkout, copies it into a scratch folder and applies the two
edits it needs, each checked to match exactly once:

1. ``utils.py`` reads the terminal width with ``stty size`` at import; without a terminal it
   gets nothing. The edit falls back to 80 columns.
2. ``recons.py`` moves theta0 to ``"cuda"`` unconditionally; the edit moves it to the script's
   own ``device`` (cpu here).

``tqdm`` is imported by ``recons.py`` for its progress bar only; if it is not installed, a
one-line stand-in goes into the scratch folder. The timed loop calls the authors' own
``build_models`` and ``calc_steps_loss_sgd`` and repeats the body of their
``train_dummy_dataset`` (loss, zero_grad, backward, Adam step, scheduler step).
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import torch

from core.errors import SimudyError

EDITS = {
    "utils.py": [("_, term_width = os.popen('stty size', 'r').read().split()",
                  "_, term_width = (os.popen('stty size', 'r').read().split() or ['24', '80'])")],
    "recons.py": [('p.data.to("cuda")', "p.data.to(device)")],
}


class AuthorsCodeError(SimudyError):
    """The given folder is not the authors' code as expected."""


def prepare_checkout(source: Path, workdir: Path) -> Path:
    """A patched copy of the authors' code in ``workdir``; returns its folder."""
    source = Path(source)
    if not (source / "recons.py").is_file():
        raise AuthorsCodeError(f"{source}: no recons.py (pass the authors' SimuDy checkout)")
    dest = workdir / "authors"
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns(".git", "*.pth", "ckpts", "logs"))
    for name, edits in EDITS.items():
        path = dest / name
        text = path.read_text()
        for old, new in edits:
            if text.count(old) != 1:
                raise AuthorsCodeError(f"{path}: expected exactly one {old!r}; not the known version")
            text = text.replace(old, new)
        path.write_text(text)
    if importlib.util.find_spec("tqdm") is None:
        (dest / "tqdm.py").write_text("def tqdm(iterable, *args, **kwargs):\n    return iterable\n")
    return dest


def write_checkpoints(dest: Path, theta0: dict, thetaf: dict, num_images: int, batch_size: int,
                      lr: float) -> None:
    """theta0/thetaf where ``recons.py`` looks for them (its MLP has our state-dict keys)."""
    folder = dest / "ckpts" / "model_ckpt" / f"mlp_cifar10_num_img{num_images}_bsz{batch_size}_lr{lr}"
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.float() for k, v in theta0.items()}, folder / "ori.pth")
    torch.save({k: v.float() for k, v in thetaf.items()}, folder / "final.pth")


def argv(num_per_class: int, width: int, batch_size: int, lr: float, steps: int) -> list[str]:
    return ["recons.py", "--model_name", "mlp", "--num_imgs_per_class", str(num_per_class),
            "--width", str(width), "--bs", str(batch_size), "--tlr", str(lr), "--steps", str(steps)]


class AuthorsRun:
    """The authors' reconstruction, imported in this process (cwd must be the patched copy)."""

    def __init__(self, dest: Path, args: list[str], seed: int):
        import os
        import sys

        os.chdir(dest)
        sys.path.insert(0, str(dest))
        sys.argv = args
        torch.manual_seed(seed)
        import random
        random.seed(seed)
        spec = importlib.util.spec_from_file_location("recons", dest / "recons.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)  # module level: arguments, dummy images, labels
        model_init, _, model_diff = mod.build_models()
        mod.weight_change = mod.get_params_vec(model_diff)
        mod.start_params = [torch.cat([p.data.to(mod.device).reshape(-1) for p in model_init.parameters()],
                                      0).requires_grad_(True)]
        mod.criterion = torch.nn.CrossEntropyLoss()
        mod.dummy_dataset_optimizer = torch.optim.Adam([mod.x[i] for i in range(mod.num_batch)],
                                                       lr=mod.reconstruction_lr, betas=(0.8, 0.9))
        mod.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(mod.dummy_dataset_optimizer, T_max=100)
        self.mod, self.model = mod, model_init

    def step(self, epoch: int = 0) -> float:
        """One image update, as the body of the authors' ``train_dummy_dataset``."""
        m = self.mod
        loss, _, _ = m.calc_steps_loss_sgd(m.x, self.model, m.start_params, m.y, m.weight_change,
                                           m.steps, m.num_batch, m.rlr, epoch)
        m.dummy_dataset_optimizer.zero_grad()
        loss.backward()
        m.dummy_dataset_optimizer.step()
        m.scheduler.step()
        return float(loss.detach())
