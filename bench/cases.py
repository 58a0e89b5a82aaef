"""The benchmark cases, one registry entry each: what is trained, what is reconstructed, and
the paper's figure to compare with. ``quick`` variants keep the wiring and shrink the work."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from core.registry import Registry

CASES: Registry["Case"] = Registry("bench case")

VEHICLES = (0, 1, 8, 9)  # airplane, automobile, ship, truck (label 1); the rest are animals (0)
QUICK_STEPS = 8  # about this many unrolled SGD steps in a quick run
# Paper Table 3, ResNet-18 on one RTX 4090, 30,000 iterations: N -> (GB, hours).
PAPER_COST_4090 = {20: (4.3, 1.06), 50: (10.5, 6.1), 100: (19.0, 13.7), 120: (22.3, 15.4)}


def mlp_recipe(image_shape=(3, 32, 32), hidden=(1000, 1000), num_classes=10,
               loss: str = "cross_entropy", momentum: float = 0.0, weight_decay: float = 0.0) -> dict[str, Any]:
    optimizer = {"name": "sgd", "lr": 0.01, **({"momentum": momentum} if momentum else {}),
                 **({"weight_decay": weight_decay} if weight_decay else {})}
    return {"architecture": "mlp", "arch_options": {"hidden": list(hidden)}, "num_classes": num_classes,
            "image_shape": list(image_shape), "optimizer": optimizer,
            "epochs": 20, "batch_size": 20, "shuffle": False, "model_mode": "eval", "loss": loss}


def finetune_recipe(lr: float = 0.01, image_shape=(3, 32, 32)) -> dict[str, Any]:
    return {"architecture": "resnet18", "num_classes": 10, "image_shape": list(image_shape),
            "optimizer": {"name": "sgd", "lr": lr}, "epochs": 20, "batch_size": 20,
            "shuffle": False, "model_mode": "eval"}


@dataclass(frozen=True)
class Pretraining:
    """How a fine-tuning case's theta0 is made: the engine's trainer on images disjoint from
    the targets, BatchNorm in train mode, augmentation on. Cached by content hash."""

    recipe: dict[str, Any]
    per_class: int | None = None  # None: every image of the file
    data_file: str = "cifar10_pretrain_jpeg.npz"
    test_file: str = "cifar10_test.npz"
    seed: int = 0
    cpu_epochs: int | None = None  # fewer epochs on a CPU, where the full length takes hours

    def recipe_on(self, device_type: str) -> dict[str, Any]:
        if device_type == "cpu" and self.cpu_epochs:
            return {**self.recipe, "epochs": self.cpu_epochs}
        return self.recipe


def pretraining(image_shape=(3, 32, 32), *, epochs: int = 10, per_class: int | None = None,
                batch_size: int = 128, lr: float = 0.05, lr_schedule: dict[str, Any] | None = None,
                cpu_epochs: int | None = None) -> Pretraining:
    recipe = {"architecture": "resnet18", "num_classes": 10, "image_shape": list(image_shape),
              "optimizer": {"name": "sgd", "lr": lr, "momentum": 0.9, "weight_decay": 5e-4},
              "epochs": epochs, "batch_size": batch_size, "shuffle": True, "model_mode": "train",
              "augment": True, **({"lr_schedule": lr_schedule} if lr_schedule else {})}
    return Pretraining(recipe, per_class, cpu_epochs=cpu_epochs)


@dataclass(frozen=True)
class Case:
    name: str
    description: str
    recipe: dict[str, Any]  # theta0 -> thetaf on the targets
    method: str = "simudy"  # the reconstruction method (core.methods); cases that share the
    # recipe, targets and seed share theta0 and thetaf, so methods compare on one target
    per_class: int = 0  # targets: the first K images of every class (dataset order)
    offset: int = 0  # or images offset .. offset+K-1 of every class
    classes: tuple[int, ...] | None = None  # only these dataset classes, relabelled 0..C-1 in
    # this order (the recipe's num_classes must be len(classes)); None: 0..num_classes-1
    binary_per_group: int = 0  # or: the first k vehicles and the first k animals, labels 1 / 0
    num_dummy: int | None = None  # dummy images; None: the true N
    pretrain: Pretraining | None = None  # None: random init (seed)
    iterations: int = 30_000  # the reference's image updates
    cpu_iterations: int | None = None  # default on the CPU, where 30,000 would take days
    simulated_epochs: int | None = None  # None: the recipe's epochs (the engine's default)
    lr_search: bool = False  # reconstruct as if the training lr were unknown
    unknown_n: bool = False  # report the gradient-norm ranking of the dummies
    paper_ssim: float | None = None
    paper_note: str = ""
    quick_iterations: int = 60
    quick_lr_candidates: tuple[float, ...] = (0.01, 0.007, 0.004)
    quick_pretrain: Pretraining | None = None
    quick_steps: int = QUICK_STEPS
    data_file: str = "cifar10_train.npz"
    seed: int = 0
    test_only: bool = False
    extra_settings: dict[str, Any] = field(default_factory=dict)
    declared_recipe: dict[str, Any] | None = None  # what the audit is told, where it is not the
    # real recipe (a case that leaves something out); None: the real one

    @property
    def num_true(self) -> int:
        classes = 2 if self.binary_per_group else self.recipe["num_classes"]
        return (self.binary_per_group or self.per_class) * classes

    @property
    def paper_cost(self) -> tuple[float, float] | None:
        return PAPER_COST_4090.get(self.num_true) if self.recipe["architecture"] == "resnet18" else None

    def quick(self) -> "Case":
        """Same wiring, minutes on a CPU: few iterations, about ``quick_steps`` unrolled steps,
        a small pretraining, three lr candidates."""
        batches = -(-(self.num_dummy or self.num_true) // self.recipe["batch_size"])
        return replace(self, iterations=self.quick_iterations, cpu_iterations=None,
                       simulated_epochs=max(1, round(self.quick_steps / batches)),
                       pretrain=self.quick_pretrain if self.pretrain else None)


def register(case: Case) -> Case:
    CASES.register(case.name)(case)
    return case


def get_case(name: str) -> Case:
    return CASES.get(name)


def public_names() -> list[str]:
    return [n for n in CASES.names() if not CASES.get(n).test_only]


QUICK_PRETRAIN = pretraining(epochs=1, per_class=30, batch_size=50)
# A ResNet-18 unrolled step costs about a second per image on a CPU: quick runs unroll ~2 steps.
# The reference simulates 8 of the 20 real epochs for ResNet-18 (the paper's rows).
# theta0 for the paper's rows: the usual CIFAR schedule (lr 0.1, cosine to 0) long enough to aim
# at 0.85 test accuracy from the 10,000 pretraining images on a GPU; 10 epochs on a CPU.
RESNET_PRETRAIN = pretraining(epochs=60, lr=0.1, lr_schedule={"name": "cosine"}, cpu_epochs=10)
RESNET = dict(pretrain=RESNET_PRETRAIN, quick_pretrain=QUICK_PRETRAIN, cpu_iterations=100,
              quick_iterations=3, quick_steps=2, simulated_epochs=8)

register(Case("mlp-20", "MLP 3072-1000-1000-10 from scratch, 2 images/class", mlp_recipe(),
              per_class=2, cpu_iterations=500))
register(Case("mlp-100", "MLP 3072-1000-1000-10 from scratch, 10 images/class", mlp_recipe(),
              per_class=10, cpu_iterations=500, paper_ssim=0.3374))
# More MLP targets for the quality comparison (bench/quality.py): other images of the same
# classes, and a CIFAR-100 target with the same recipe (20 fine classes, every 5th, 1 image each).
register(Case("mlp-20-offset2", "MLP 3072-1000-1000-10 from scratch, images 2-3 of each class",
              mlp_recipe(), per_class=2, offset=2, cpu_iterations=500))
register(Case("mlp-20-cifar100", "MLP 3072-1000-1000-20 from scratch, CIFAR-100: the first image "
              "of 20 fine classes (0, 5, ..., 95)", mlp_recipe(num_classes=20), per_class=1,
              classes=tuple(range(0, 100, 5)), data_file="cifar100_train.npz", cpu_iterations=500))
# The common recipe rather than the paper's: SGD with momentum 0.9 and weight decay 5e-4.
MOMENTUM_MLP = mlp_recipe(momentum=0.9, weight_decay=5e-4)
register(Case("mlp-20-momentum-wd", "MLP 3072-1000-1000-10 from scratch, 2 images/class, SGD with "
              "momentum 0.9 and weight decay 5e-4", MOMENTUM_MLP, per_class=2, cpu_iterations=500))
# The same under a cosine lr schedule, declared to the audit or left out (a constant lr assumed).
COSINE_MLP = {**MOMENTUM_MLP, "lr_schedule": {"name": "cosine"}}
register(Case("mlp-20-cosine-wd", "MLP 3072-1000-1000-10 from scratch, 2 images/class, SGD with "
              "momentum 0.9, weight decay 5e-4 and a cosine lr schedule", COSINE_MLP, per_class=2,
              cpu_iterations=500))
register(Case("mlp-20-cosine-wd-undeclared", "mlp-20-cosine-wd's target, the audit told a constant lr "
              "(the schedule left out of its recipe)", COSINE_MLP, per_class=2, cpu_iterations=500,
              declared_recipe=MOMENTUM_MLP))
# Trained with AdamW (lr 1e-4, torch's weight decay 0.01), declared to the audit or not (the
# audit then assumes the paper's SGD at lr 0.01). Adam's update is not linear in the images: the
# generic engine runs it, without the low-rank engine or the input span.
ADAMW_MLP = {**mlp_recipe(), "optimizer": {"name": "adamw", "lr": 1e-4}}
register(Case("mlp-20-adamw", "MLP 3072-1000-1000-10 from scratch, 2 images/class, AdamW (lr 1e-4, "
              "weight decay 0.01)", ADAMW_MLP, per_class=2, cpu_iterations=500))
register(Case("mlp-20-adamw-undeclared", "mlp-20-adamw's target, the audit told SGD at lr 0.01 (the "
              "optimizer left out of its recipe)", ADAMW_MLP, per_class=2, cpu_iterations=500,
              declared_recipe=mlp_recipe()))
# A Vision Transformer trained as they usually are (AdamW), from scratch on 20 images: the
# engine's generic path on attention, LayerNorm and GELU (no CNN or MLP shortcut applies).
VIT_RECIPE = {"architecture": "vit", "arch_options": {"patch": 4, "dim": 96, "depth": 4, "heads": 3,
                                                      "mlp_ratio": 2},
              "num_classes": 10, "image_shape": [3, 32, 32], "optimizer": {"name": "adamw", "lr": 1e-3},
              "epochs": 20, "batch_size": 20, "shuffle": False, "model_mode": "eval"}
register(Case("vit-20", "ViT (patch 4, width 96, depth 4, 3 heads) from scratch, 2 images/class, "
              "AdamW (lr 1e-3, weight decay 0.01)", VIT_RECIPE, per_class=2, cpu_iterations=500))
# The paper's binary MLP: d-1000-1000-1, logistic loss (Haim et al.'s setting).
BINARY = mlp_recipe(num_classes=2, loss="logistic")
register(Case("binary-mlp-20", "MLP 3072-1000-1000-1 (logistic), vehicles vs animals, 10+10 images",
              BINARY, binary_per_group=10, cpu_iterations=500, paper_ssim=0.5378))
for _k, _paper in ((2, 0.3140), (5, 0.1982), (12, 0.1197)):
    register(Case(f"resnet18-{10 * _k}", f"ResNet-18 fine-tuned from pretrained theta0, {_k} images/class",
                  finetune_recipe(), per_class=_k, paper_ssim=_paper, **RESNET))
register(Case("resnet18-60-unknown-lr", "ResNet-18 fine-tuned at lr 7e-3, 6 images/class; lr searched",
              finetune_recipe(lr=0.007), per_class=6, lr_search=True, paper_ssim=0.1998,
              paper_note="paper: N=60 with the lr known", **RESNET))
register(Case("resnet18-40-unknown-n", "ResNet-18 fine-tuned, 4 images/class; 60 dummy images, "
              "gradient-norm ranking", finetune_recipe(), per_class=4, num_dummy=60, unknown_n=True,
              paper_ssim=0.2295, **RESNET))
# The paper's baselines on the same targets (its Tables 1 and 2), the same image-update budget.
# Each optimises 2N candidates (the comparison's ratio); the paper's figure is the attack's own.
BASELINES = {"kkt": "KKT (Haim 2022 binary, Buzaglo 2023 multi-class)", "ntk": "NTK (Loo et al. 2024)"}
for _method, _cases in (("kkt", (("mlp-100", 0.143), ("binary-mlp-20", 0.228), ("resnet18-50", 0.030))),
                        ("ntk", (("mlp-100", 0.138), ("binary-mlp-20", 0.354), ("resnet18-50", 0.077)))):
    for _base, _paper_baseline in _cases:
        _of = CASES.get(_base)
        register(replace(_of, name=f"{_base}-{_method}", method=_method, paper_ssim=_paper_baseline,
                         description=f"{BASELINES[_method]} on the target of {_base}",
                         paper_note=f"paper: {BASELINES[_method].split(' (')[0]} row"))

# Test only: 8x8 images and a narrow MLP, so the whole pipeline runs in seconds.
register(Case("tiny", "test only: MLP 192-32-10 on 8x8 images, 2 images/class",
              {**mlp_recipe(image_shape=(3, 8, 8), hidden=(32,)), "epochs": 3, "optimizer": {"lr": 0.05}},
              per_class=2, iterations=20, quick_iterations=5, test_only=True))
register(Case("tiny-unknown", "test only: tiny MLP, 1 image/class, 12 dummies, lr search and "
              "gradient-norm ranking", {**mlp_recipe(image_shape=(3, 8, 8), hidden=(32,)), "epochs": 3},
              per_class=1, num_dummy=12, lr_search=True, unknown_n=True, iterations=20,
              quick_iterations=5, quick_lr_candidates=(0.01, 0.005), test_only=True))
register(Case("tiny-kkt", "test only: KKT on the tiny target", CASES.get("tiny").recipe, method="kkt",
              per_class=2, iterations=20, quick_iterations=5, test_only=True))
register(Case("tiny-resnet", "test only: ResNet-18 on 8x8 images from a pretrained theta0, 1 image/class",
              {**finetune_recipe(image_shape=(3, 8, 8)), "epochs": 1}, per_class=1, iterations=20,
              quick_iterations=1, quick_steps=1, test_only=True,
              pretrain=pretraining((3, 8, 8), epochs=1, per_class=1, batch_size=10),
              quick_pretrain=pretraining((3, 8, 8), epochs=1, per_class=1, batch_size=10)))
