"""Exact low-rank form of the unrolled simulation for a ReLU MLP trained by plain SGD.

Why: in the generic engine every unrolled step multiplies by the first layer's (h1 x d) weight,
d = 3072 for CIFAR: three quarters of the flops and of the memory (one saved copy of W1 per
step). But SGD only ever adds outer products to W1: the step on batch b adds
``-lr * s * delta1_b^T x_b`` (delta1: the gradient at the first layer's output, s: the clip
scale). So ``W1_t = W1_0 - lr * E_t^T X`` with E (N x h1) the per-image sum of those deltas,
and everything the simulation needs from W1 comes from three products of the images taken once
per image update:

    K = X X^T (N x N),   P = X W1_0^T (N x h1),   Q = X (W1_0 - W1_f)^T (N x h1)

    first-layer pre-activation at step t:  P[b] + b1_t - lr * K[b] E_t
    ||gradient of W1 on batch b||^2:       sum((delta1 delta1^T) * K[b, b])
    <W1_0 - W1_T, W1_0 - W1_f>:            lr * sum(E_T * Q)
    ||W1_0 - W1_T||^2:                     lr^2 * sum((E_T E_T^T) * K)

The later layers are small and stay dense. The inner gradients are written out by hand (the
MLP's backward pass), so autograd differentiates once through the whole unrolled run instead of
twice through each step. Equal to the generic engine up to float rounding (tests compare the
loss and the image gradient); chosen by ``Execution.fast_paths`` when ``supports`` says so.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from core.architectures.mlp import MLP
from core.sgd_step import ClipRule, TrainState
from core.simulation import DisplacementObjective, ObjectiveValue, SimulationPlan, batched_tv


def _cross_entropy_gradient(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.softmax(z, 1) - F.one_hot(y, z.shape[1]).to(z.dtype)


def _logistic_gradient(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(z) - y.to(z.dtype).reshape(-1, 1)


# d(loss of one row)/d(outputs), by hand, for each training loss (core.losses) this engine runs
OUTPUT_GRADIENTS = {"cross_entropy": _cross_entropy_gradient, "logistic": _logistic_gradient}


def supports(plan: SimulationPlan, state0: TrainState) -> bool:
    """MLP (our own class, so its forward is known), plain SGD (no momentum, no weight decay),
    a loss whose output gradient is written out here, fp32, every parameter trained and
    nothing else in the state."""
    sgd = plan.sgd
    model = plan.model
    return (type(model) is MLP and plan.precision == "fp32" and sgd.loss in OUTPUT_GRADIENTS
            and sgd.momentum == 0
            and sgd.weight_decay == 0 and not state0.buffers and not state0.momentum
            and set(state0.params) == {n for n, _ in model.named_parameters()}
            and all(v.dtype == torch.float32 for v in state0.params.values()))


class LowRankMLPObjective:
    """The SimuDy loss and image gradient for an MLP, in the low-rank form above."""

    def __init__(self, plan: SimulationPlan, objective: DisplacementObjective, state0: TrainState):
        self.plan = plan
        self.objective = objective
        self.lr = plan.sgd.lr
        layers = plan.model.layers
        self.num_layers = len(layers)
        p0 = state0.params
        self.weights0 = [p0[f"layers.{i}.weight"].detach() for i in range(self.num_layers)]
        self.biases0 = [p0.get(f"layers.{i}.bias") for i in range(self.num_layers)]
        self.biases0 = [None if b is None else b.detach() for b in self.biases0]
        w1, t1 = self.weights0[0], objective.target["layers.0.weight"]
        self.h1 = w1.shape[0]
        self.first = torch.cat([w1, t1], 0)  # one product gives P and Q
        # Every parameter but W1, in the objective's order, for the dense part of the cosine.
        self.dense_names = [k for k in objective.target if k != "layers.0.weight"]

    def __call__(self, x: torch.Tensor, y: torch.Tensor, clips: tuple[ClipRule, ...]) -> ObjectiveValue:
        plan, lr, L = self.plan, self.lr, self.num_layers
        tv = batched_tv(x, plan.batches)
        X = x.flatten(1)
        K = X @ X.T
        PQ = X @ self.first.T
        P, Q = PQ[:, :self.h1], PQ[:, self.h1:]
        E = None  # per-image sum of clip-scaled first-layer deltas; None while zero
        weights = list(self.weights0)  # weights[0] is never used (implicit)
        biases = list(self.biases0)
        output_gradient = OUTPUT_GRADIENTS[plan.sgd.loss]
        for step in range(plan.num_steps):
            b = plan.step_batch(step)
            # forward
            z = P[b] if E is None else P[b] - lr * (K[b] @ E)
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
            grads_b = [d.sum(0) if bias is not None else None for d, bias in zip(deltas, biases)]
            scale = self._clip_scale(deltas, [K[b, b]] + [h @ h.T for h in hs], grads_b, clips)
            # SGD update; the weight's outer product is fused into one addmm (no full-size temporaries)
            d1 = deltas[0] if scale is None else deltas[0] * scale
            rows = torch.arange(b.start, b.stop, device=x.device)
            E = (torch.zeros_like(P) if E is None else E).index_add(0, rows, d1)
            for i in range(L):
                if i > 0:
                    d = deltas[i] if scale is None else deltas[i] * scale
                    weights[i] = torch.addmm(weights[i], d.T, hs[i - 1], alpha=-lr)
                if grads_b[i] is not None:
                    g_b = grads_b[i] if scale is None else grads_b[i] * scale
                    biases[i] = biases[i] - lr * g_b
        cos = self._cosine(E, K, Q, weights, biases)
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

    def _cosine(self, E, K, Q, weights, biases) -> torch.Tensor:
        obj, lr = self.objective, self.lr
        params = {}
        for i in range(self.num_layers):
            if i > 0:
                params[f"layers.{i}.weight"] = weights[i]
            if biases[i] is not None:
                params[f"layers.{i}.bias"] = biases[i]
        dot = torch.zeros((), device=K.device, dtype=K.dtype)
        sq = torch.zeros_like(dot)
        if E is not None:
            dot = dot + lr * (E * Q).sum()
            sq = sq + lr * lr * ((E @ E.T) * K).sum()
        for k in self.dense_names:
            d = obj.theta0[k] - params[k]
            dot = dot + (d * obj.target[k]).sum()
            sq = sq + (d * d).sum()
        return dot / (torch.sqrt(sq) * obj.target_norm + 1e-12)
