"""The ``l2o`` rule's step without meta-gradients as one compiled computation per
param group (``torch.compile``), for :class:`~pinnopt.learned.LearnedOptimizer`.

:class:`~pinnopt.learned.methods.L2ORule` is written for meta-training: differentiable,
one ``nn.Module`` call per piece, the per-coordinate MLP on chunks of coordinates. Run
as an optimizer its step costs several of Adam's: the per-tensor Python work dominates
a small model, the MLP's (coordinates × width) activations a large one. Here the same
math is one function of lists of tensors that the compiler fuses into two loops per
tensor, with nothing of the size of the model in between:

1. m, v updated in place; the tensor's statistics (rms g, mean a, rms a) reduced;
2. after the per-tensor LSTM and head (tiny), θ ← θ − scale·lr·e^σ (d + b) with the MLP
   d = a + W₂ softsign(W₁ (a, r) + b₁) + b₂ evaluated per coordinate, never stored.

The MLP is written out unit by unit (``mlp_hidden_size`` terms of a sum), so that the
compiler sees element-wise work instead of a matrix product whose (n, width) result
would be written to memory. The result equals :meth:`L2ORule.forward` up to rounding
(tests: 1e-12 in float64).
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from pinnopt.learned.methods import ADAM_BETAS, ADAM_EPS, L2ORule
from pinnopt.optim.compiler import compiling


def rule_weights(rule: L2ORule) -> list[Tensor]:
    """The tensors :func:`l2o_update` reads, in its order."""
    first, last = rule.mlp[0], rule.mlp[2]
    lstm = [getattr(rule.lstm, f"{kind}_l{k}") for k in range(rule.lstm.num_layers)
            for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]  # fmt: skip
    return [first.weight, first.bias, last.weight, last.bias, *lstm, rule.head.weight,
            rule.head.bias]  # fmt: skip


def l2o_update(
    params: list[Tensor],
    grads: list[Tensor],
    ms: list[Tensor],
    vs: list[Tensor],
    hidden: Tensor,
    cell: Tensor,
    scalars: Tensor,
    weights: list[Tensor],
    lr: float,
) -> tuple[Tensor, Tensor]:
    """One ``l2o`` step in place on ``params``, ``ms``, ``vs``; returns the LSTM's new
    (hidden, cell), each (num_layers, len(params), hidden_size).

    ``scalars`` = (1 − β1ᵗ, 1 − β2ᵗ, scale) in float64, so that a new step count or
    scale is a new value, not a new compiled variant."""
    (b1, b2), eps = ADAM_BETAS, ADAM_EPS
    w1, c1, w2, c2 = weights[:4]
    head_w, head_b = weights[-2:]
    dt = w1.dtype
    correction1, correction2, scale = scalars[0], scalars[1], scalars[2]
    stats, ar = [], []
    for g, m, v in zip(grads, ms, vs):
        m_new = b1 * m + (1 - b1) * g
        v_new = b2 * v + (1 - b2) * g * g
        m.copy_(m_new)
        v.copy_(v_new)
        denom = torch.sqrt(v_new / correction2.to(g.dtype)) + eps
        a = ((m_new / correction1.to(g.dtype)) / denom).to(dt)
        r = (g / denom).to(dt)
        ar.append((a, r))
        gd = g.to(dt)
        rms_g = torch.sqrt(torch.mean(gd * gd))
        stats.append(torch.stack([torch.log(rms_g + 1e-30) / 10, torch.mean(a),
                                  torch.sqrt(torch.mean(a * a))]))  # fmt: skip
    x = torch.stack(stats)
    new_h, new_c = [], []
    for k in range(hidden.shape[0]):  # nn.LSTM's cell, gates in its order i, f, g, o
        w_ih, w_hh, b_ih, b_hh = weights[4 + 4 * k : 8 + 4 * k]
        gates = x @ w_ih.T + b_ih + hidden[k] @ w_hh.T + b_hh
        i, f, g_, o = gates.chunk(4, dim=1)
        c = torch.sigmoid(f) * cell[k] + torch.sigmoid(i) * torch.tanh(g_)
        x = torch.sigmoid(o) * torch.tanh(c)
        new_h.append(x)
        new_c.append(c)
    sigma_bias = x @ head_w.T + head_b
    for j, (p, (a, r)) in enumerate(zip(params, ar)):
        d = a + c2[0]
        for unit in range(w1.shape[0]):
            z = a * w1[unit, 0] + r * w1[unit, 1] + c1[unit]
            d = d + w2[0, unit] * (z / (1 + torch.abs(z)))
        u = (-lr * torch.exp(sigma_bias[j, 0]) * (d + sigma_bias[j, 1])).to(p.dtype)
        p.copy_(p + u * scale.to(p.dtype))
    return torch.stack(new_h), torch.stack(new_c)


_SEEN: set[tuple] = set()  # the (shapes, dtypes) already compiled in this process


@functools.cache
def _compiled_update():
    return torch.compile(l2o_update, fullgraph=True, dynamic=False)


def fused_l2o_step(
    params, grads, ms, vs, hidden, cell, scalars, weights, lr
) -> tuple[Tensor, Tensor]:
    """:func:`l2o_update` under ``torch.compile`` (compiled once per process and set of
    shapes)."""
    update = _compiled_update()
    key = (lr, *((p.shape, p.dtype, p.device) for p in params), weights[0].dtype)
    if key in _SEEN:
        return update(params, grads, ms, vs, hidden, cell, scalars, weights, lr)
    with compiling():
        result = update(params, grads, ms, vs, hidden, cell, scalars, weights, lr)
    _SEEN.add(key)
    return result
