"""Exact low-rank form of the unrolled simulation for a ReLU MLP trained by SGD.

Why: in the generic engine every unrolled step multiplies by the first layer's (h1 x d) weight,
d = 3072 for CIFAR: three quarters of the flops and of the memory (one saved copy of W1 per
step). But SGD only ever combines W1_0 with outer products: the gradient on batch b is
``s * delta1_b^T x_b`` (delta1: the gradient at the first layer's output, s: the clip scale),
and weight decay, momentum and nesterov only add scaled copies of the weight and of earlier
gradients. So W1 and its momentum buffer stay of the form ``c * W1_0 + A^T X`` (c a number
known in advance, 1 without weight decay; A an N x h1 matrix), and everything the simulation
needs from W1 comes from three products of the images taken once per image update:

    K = X X^T (N x N),   P = X W1_0^T (N x h1),   Q = X (W1_0 - W1_f)^T (N x h1)

    first-layer pre-activation at step t:  c_t P[b] + b1_t + K[b] A_t
    ||gradient of W1 on batch b||^2:       sum((delta1 delta1^T) * K[b, b])
    <W1_0 - W1_T, W1_0 - W1_f>:            (1 - c) <W1_0, W1_0 - W1_f> - sum(A_T * Q)
    ||W1_0 - W1_T||^2:                     (1 - c)^2 ||W1_0||^2 - 2 (1 - c) sum(A_T * P)
                                           + sum((A_T A_T^T) * K)

The later layers are small and stay dense. The inner gradients are written out by hand (the
MLP's backward pass), and SGD's rule is core.training_step's own ``sgd_update`` applied to this
representation, so autograd differentiates once through the whole unrolled run instead of
twice through each step. Equal to the generic engine up to float rounding (tests compare the
loss and the image gradient); chosen by ``Execution.fast_paths`` when ``supports`` says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from core.architectures.mlp import MLP
from core.training_step import ClipRule, TrainState, sgd_update, tensor_add
from core.simulation import DisplacementObjective, ObjectiveValue, SimulationPlan, batched_tv


def _cross_entropy_gradient(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.softmax(z, 1) - F.one_hot(y, z.shape[1]).to(z.dtype)


def _logistic_gradient(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(z) - y.to(z.dtype).reshape(-1, 1)


# d(loss of one row)/d(outputs), by hand, for each training loss (core.losses) this engine runs
OUTPUT_GRADIENTS = {"cross_entropy": _cross_entropy_gradient, "logistic": _logistic_gradient}


def supports(plan: SimulationPlan, state0: TrainState) -> bool:
    """MLP (our own class, so its forward is known), SGD starting without momentum buffers,
    a loss whose output gradient is written out here, fp32, every parameter trained and
    nothing else in the state."""
    model = plan.model
    return (type(model) is MLP and plan.precision == "fp32" and plan.optimizer.loss in OUTPUT_GRADIENTS
            and plan.optimizer.is_sgd and not state0.buffers and not state0.optimizer
            and set(state0.params) == {n for n, _ in model.named_parameters()}
            and all(v.dtype == torch.float32 for v in state0.params.values()))


@dataclass(frozen=True, eq=False)
class ImageSpanned:
    """``coef * W1_0 + rows^T X``: the first layer's weight, gradient or momentum buffer
    without forming it (``rows``: N x h1, None for zero)."""

    coef: float
    rows: torch.Tensor | None

    def plus(self, other: "ImageSpanned", alpha: float) -> "ImageSpanned":
        if other.rows is None:
            rows = self.rows
        elif self.rows is None:
            rows = other.rows * alpha
        else:
            rows = torch.add(self.rows, other.rows, alpha=alpha)
        return ImageSpanned(self.coef + alpha * other.coef, rows)


def _add(a, b, alpha: float):
    return a.plus(b, alpha) if isinstance(a, ImageSpanned) else tensor_add(a, b, alpha)


class LowRankMLPObjective:
    """The SimuDy loss and image gradient for an MLP, in the low-rank form above."""

    def __init__(self, plan: SimulationPlan, objective: DisplacementObjective, state0: TrainState):
        self.plan = plan
        self.objective = objective
        self.num_layers = len(plan.model.layers)
        self.state0 = {k: v.detach() for k, v in state0.params.items()}
        self.weight_names = [f"layers.{i}.weight" for i in range(self.num_layers)]
        self.bias_names = [f"layers.{i}.bias" if f"layers.{i}.bias" in self.state0 else None
                           for i in range(self.num_layers)]
        w1, t1 = self.state0["layers.0.weight"], objective.target["layers.0.weight"]
        self.h1 = w1.shape[0]
        self.first = torch.cat([w1, t1], 0)  # one product gives P and Q
        # Only weight decay moves c away from 1; these constants then enter the cosine.
        self.w1_dot_target = (w1 * t1).sum()
        self.w1_sq = (w1 * w1).sum()
        # Every parameter but W1, in the objective's order, for the dense part of the cosine.
        self.dense_names = [k for k in objective.target if k != "layers.0.weight"]

    def __call__(self, x: torch.Tensor, y: torch.Tensor, clips: tuple[ClipRule, ...]) -> ObjectiveValue:
        plan, L = self.plan, self.num_layers
        tv = batched_tv(x, plan.batches)
        X = x.flatten(1)
        K = X @ X.T
        PQ = X @ self.first.T
        P, Q = PQ[:, :self.h1], PQ[:, self.h1:]
        params: dict = {**self.state0, "layers.0.weight": ImageSpanned(1.0, None)}
        momentum: dict = {}
        output_gradient = OUTPUT_GRADIENTS[plan.optimizer.loss]
        plain = not plan.optimizer.momentum and not plan.optimizer.weight_decay  # the gradient is the step's direction
        for step in range(plan.num_steps):
            b = plan.step_batch(step)
            sgd = plan.step_optimizer(step)
            w1 = params["layers.0.weight"]
            weights = [params[n] for n in self.weight_names]
            biases = [params[n] if n is not None else None for n in self.bias_names]
            # forward
            z = P[b] if w1.coef == 1.0 else P[b] * w1.coef
            if w1.rows is not None:
                z = z + K[b] @ w1.rows
            if biases[0] is not None:
                z = z + biases[0]
            zs, hs = [z], []
            h = torch.relu(z)
            for i in range(1, L):
                hs.append(h)
                z = h @ weights[i].T
                if biases[i] is not None:
                    z = z + biases[i]
                zs.append(z)
                if i < L - 1:
                    h = torch.relu(z)
            # backward of the batch-mean loss, by hand
            delta = output_gradient(z, y[b]) / z.shape[0]
            deltas: list[torch.Tensor] = [delta] * L  # deltas[i]: at layer i's output
            for i in range(L - 1, 0, -1):
                delta = torch.where(zs[i - 1] > 0, delta @ weights[i], 0.0)
                deltas[i - 1] = delta
            bias_grads = [d.sum(0) if bias is not None else None for d, bias in zip(deltas, biases)]
            scale = self._clip_scale(deltas, [K[b, b]] + [h @ h.T for h in hs], bias_grads, clips)
            if scale is not None:
                deltas = [d * scale for d in deltas]
                bias_grads = [g if g is None else g * scale for g in bias_grads]
            # the gradients, then SGD's rule on each parameter
            rows = torch.arange(b.start, b.stop, device=x.device)
            if plain:  # the first layer's update straight into its rows
                base = torch.zeros_like(P) if w1.rows is None else w1.rows
                params["layers.0.weight"] = ImageSpanned(1.0, base.index_add(0, rows, deltas[0], alpha=-sgd.lr))
                grads = {}
            else:
                grads = {"layers.0.weight": ImageSpanned(0.0, torch.zeros_like(P).index_add(0, rows, deltas[0]))}
            for i in range(L):
                if i > 0 and plain:  # the outer product fused into one addmm: no full-size temporary
                    params[self.weight_names[i]] = torch.addmm(weights[i], deltas[i].T, hs[i - 1], alpha=-sgd.lr)
                elif i > 0:
                    grads[self.weight_names[i]] = deltas[i].T @ hs[i - 1]
                if bias_grads[i] is not None:
                    grads[self.bias_names[i]] = bias_grads[i]
            for name, g in grads.items():
                params[name], buf = sgd_update(params[name], g, momentum.get(name), sgd, _add)
                if buf is not None:
                    momentum[name] = buf
        cos = self._cosine(params, K, P, Q)
        loss = 1 - cos + self.objective.tv_weight * tv
        loss.backward(inputs=[x])
        return ObjectiveValue(loss.detach(), cos.detach(), tv.detach())

    @staticmethod
    def _clip_scale(deltas, grams, grads_b, clips: tuple[ClipRule, ...]) -> torch.Tensor | None:
        """The product of the clip rules' factors (None: no rule fires). A weight gradient
        ``delta^T h`` has squared norm ``sum((delta delta^T) * (h h^T))``: batch-sized Gram
        matrices, never the full gradient. The decision is read on the host, as the generic
        engine does, so a rule that does not fire costs nothing more."""
        if not clips:
            return None
        sq = sum(((d @ d.T) * g).sum() for d, g in zip(deltas, grams))
        for g in grads_b:
            if g is not None:
                sq = sq + (g * g).sum()
        norm = torch.sqrt(sq)
        scale = None
        for rule in clips:
            current = norm if scale is None else norm * scale
            if bool(current.detach() > rule.threshold):  # compared as the generic engine does
                factor = rule.target_norm / (current + 1e-6)
                scale = factor if scale is None else scale * factor
        return scale

    def _cosine(self, params: dict, K: torch.Tensor, P: torch.Tensor, Q: torch.Tensor) -> torch.Tensor:
        obj = self.objective
        w1 = params["layers.0.weight"]  # W1_0 - W1_T = (1 - c) W1_0 - A^T X
        shrink = 1.0 - w1.coef
        dot = torch.zeros((), device=K.device, dtype=K.dtype)
        sq = torch.zeros_like(dot)
        if shrink != 0.0:
            dot = dot + shrink * self.w1_dot_target
            sq = sq + shrink * shrink * self.w1_sq
        if w1.rows is not None:
            dot = dot - (w1.rows * Q).sum()
            sq = sq + ((w1.rows @ w1.rows.T) * K).sum()
            if shrink != 0.0:
                sq = sq - 2.0 * shrink * (w1.rows * P).sum()
        for k in self.dense_names:
            d = obj.theta0[k] - params[k]
            dot = dot + (d * obj.target[k]).sum()
            sq = sq + (d * d).sum()
        return dot / (torch.sqrt(sq) * obj.target_norm + 1e-12)
