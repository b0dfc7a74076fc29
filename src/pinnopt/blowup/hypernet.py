"""A hypernetwork from the order n of a blow-up profile to its scaling rate λ_n.

Profiles of a family come in orders n = 0, 1, 2, …, and a good starting λ for a new
order is most of the work of finding it. ``LambdaHyperNet`` learns n ↦ λ_n from the
orders found so far and predicts the next ones. It models the inverse rate

    q(n) = 1/λ_n = a + b n + c · N(s n),     λ_n = 1 / q(n),

a linear part plus a small tanh MLP N (inputs scaled by s = 1/(n_max + 1), the
largest order it was trained on), because 1/λ grows about linearly in n for the
known families (Burgers: 1/λ_n = 2n + 2; Eggers & Fontelos 2015, §3) while λ itself
flattens towards 0, which a network extrapolates badly. The MLP's weights carry a
ridge penalty, so with a handful of orders the fit prefers the linear part and
bends only as far as the data ask. Training is full-batch L-BFGS on the relative
error of q, in float64. (The rate as the output of a network trained across
orders follows the spirit of Wang, Lai, Gómez-Serrano & Buckmaster, *Discovery of
unstable singularities*, 2025, who fit λ across a family of profiles to guess the
next one.)
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn


class LambdaHyperNet(nn.Module):
    """q(n) = 1/λ_n = a + b n + c · N(s n) with N a tanh MLP; see the module docstring."""

    def __init__(self, width: int = 16, depth: int = 2, seed: int = 0) -> None:
        super().__init__()
        if not (isinstance(width, int) and width >= 1):
            raise ValueError(f"width must be an integer >= 1, got {width!r}")
        if not (isinstance(depth, int) and depth >= 1):
            raise ValueError(f"depth must be an integer >= 1, got {depth!r}")
        self.width, self.depth = width, depth
        generator = torch.Generator().manual_seed(seed)
        layers: list[nn.Module] = []
        features = 1
        for _ in range(depth):
            layers += [nn.Linear(features, width), nn.Tanh()]
            features = width
        layers.append(nn.Linear(features, 1))
        self.mlp = nn.Sequential(*layers).to(torch.float64)
        with torch.no_grad():
            for p in self.mlp.parameters():
                p.copy_(torch.randn(p.shape, generator=generator, dtype=torch.float64) * 0.3)
        self.linear = nn.Linear(1, 1).to(torch.float64)
        with torch.no_grad():
            self.linear.weight.zero_()
            self.linear.bias.fill_(1.0)
        self.register_buffer("scale", torch.tensor(1.0, dtype=torch.float64))

    def inverse_rate(self, n: Tensor) -> Tensor:
        """q(n) = 1/λ_n for orders ``n`` (any shape), same shape."""
        x = n.to(torch.float64).reshape(-1, 1)
        q = self.linear(x) + self.mlp(x * self.scale)
        return q.reshape(n.shape)

    def forward(self, n: Tensor) -> Tensor:
        """λ_n for orders ``n``."""
        return 1.0 / self.inverse_rate(n)

    def predict(self, order: int) -> float:
        """λ for one order, as a float."""
        with torch.no_grad():
            return float(self(torch.tensor(float(order))))

    def fit(
        self, orders: Sequence[int], lambdas: Sequence[float], ridge: float = 1e-4,
        iterations: int = 500,
    ) -> float:  # fmt: skip
        """Fit to the rates ``lambdas`` found at ``orders``; returns the final relative RMS
        misfit of 1/λ. ``ridge`` weighs ‖MLP weights‖² against the data misfit."""
        if len(orders) != len(lambdas) or len(orders) < 2:
            raise ValueError(
                f"need at least 2 (order, lambda) pairs of equal count, got {len(orders)} "
                f"orders and {len(lambdas)} lambdas"
            )
        if not all(lam > 0 for lam in lambdas):
            raise ValueError(f"lambdas must be > 0, got {list(lambdas)}")
        if not ridge >= 0:
            raise ValueError(f"ridge must be >= 0, got {ridge}")
        n = torch.tensor([float(o) for o in orders], dtype=torch.float64)
        target = 1.0 / torch.tensor([float(v) for v in lambdas], dtype=torch.float64)
        with torch.no_grad():
            self.scale.fill_(1.0 / (float(n.max()) + 1.0))
        optimizer = torch.optim.LBFGS(
            self.parameters(), lr=1.0, max_iter=iterations, tolerance_grad=1e-14,
            tolerance_change=1e-16, history_size=50, line_search_fn="strong_wolfe",
        )  # fmt: skip

        def misfit() -> Tensor:
            return ((self.inverse_rate(n) - target) / target).pow(2).mean()

        def closure() -> Tensor:
            optimizer.zero_grad()
            penalty = sum(p.pow(2).sum() for p in self.mlp.parameters())
            loss = misfit() + ridge * penalty
            loss.backward()
            return loss

        optimizer.step(closure)
        with torch.no_grad():
            return float(misfit().sqrt())

    def save(self, path: str | Path) -> None:
        torch.save({"width": self.width, "depth": self.depth, "state": self.state_dict()}, path)

    @classmethod
    def load(cls, path: str | Path) -> LambdaHyperNet:
        """A hypernetwork saved by :meth:`save`; ValueError on a file that is not one."""
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
            net = cls(data["width"], data["depth"])
            net.load_state_dict(data["state"])
        except (OSError, RuntimeError, KeyError, TypeError, EOFError, pickle.UnpicklingError) as e:
            raise ValueError(f"{path}: not a LambdaHyperNet file ({e})") from None
        return net
