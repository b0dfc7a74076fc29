"""Model transforms: exactly periodic inputs and exact (hard) output constraints.

Both are jet-aware (``forward_jet``), so :func:`pinnopt.derivatives.jet` keeps its
fast path through them.

* :class:`PeriodicInputs` replaces a coordinate x_i of period P by
  (cos(2π x_i/P), sin(2π x_i/P)); any smooth function of its output is then exactly
  P-periodic in x_i, derivatives included (Dong & Ni, "A method for representing
  periodic functions and enforcing exactly periodic boundary conditions with deep
  neural networks", J. Comput. Phys. 2021).
* :class:`OutputTransform` is u(x) = g(x) + d(x)·N(x): where d vanishes, u equals g
  whatever the network N (Lagaris, Likas & Fotiadis 1998; Sukumar & Srivastava 2022).
  g and d are plain callables of the points; the problem side builds them
  (:mod:`pinnopt.problems.constraints`), and this module does not import it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from pinnopt.derivatives import Jet, elementwise_jet, jet_of_input

__all__ = ["OutputTransform", "PeriodicInputs"]

Field = Callable[[Tensor], Tensor]


class PeriodicInputs(nn.Module):
    """x (N, d) ↦ (N, d + k): each periodic x_i of period P_i becomes cos(2π x_i / P_i) in
    place, and sin(2π x_i / P_i) is appended at the end (k periodic inputs, in increasing i).

    Every smooth function of the output is exactly P_i-periodic in x_i, with all its
    derivatives (Dong & Ni, J. Comput. Phys. 2021); the other coordinates pass through.
    ``bounds(lower, upper)`` is the box of the output (cos and sin in [−1, 1]), from
    which the next network builds its input scaling::

        periodic = PeriodicInputs(2, {0: 2 * math.pi})
        lo, hi = periodic.bounds(lower, upper)
        model = nn.Sequential(periodic, MLP(periodic.out_dim, 1, lower=lo, upper=hi))
    """

    def __init__(self, in_dim: int, periods: dict[int, float]) -> None:
        super().__init__()
        if isinstance(in_dim, bool) or not isinstance(in_dim, int) or in_dim < 1:
            raise ValueError(f"in_dim must be an integer >= 1, got {in_dim!r}")
        checked: dict[int, float] = {}
        for i, period in periods.items():
            if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < in_dim:
                raise ValueError(f"periodic input {i!r} does not exist; inputs are 0..{in_dim - 1}")
            p = float(period)
            if not (math.isfinite(p) and p > 0):
                raise ValueError(f"period of input {i} must be finite and > 0, got {period!r}")
            checked[i] = p
        self.in_dim = in_dim
        self.periods = dict(sorted(checked.items()))
        self.out_dim = in_dim + len(self.periods)
        index = torch.tensor(list(self.periods), dtype=torch.long)
        omega = torch.tensor([2 * math.pi / p for p in self.periods.values()], dtype=torch.float64)
        # fully determined by the constructor's arguments: kept out of the state dict
        self.register_buffer("index", index, persistent=False)
        self.register_buffer("omega", omega, persistent=False)

    def bounds(
        self, lower: Sequence[float], upper: Sequence[float]
    ) -> tuple[list[float], list[float]]:
        """The box of the output, given the box [lower, upper] of the input."""
        if len(lower) != self.in_dim or len(upper) != self.in_dim:
            raise ValueError(
                f"lower and upper must have {self.in_dim} entries, "
                f"got {len(lower)} and {len(upper)}"
            )
        lo = [-1.0 if i in self.periods else float(v) for i, v in enumerate(lower)]
        hi = [1.0 if i in self.periods else float(v) for i, v in enumerate(upper)]
        k = len(self.periods)
        return lo + [-1.0] * k, hi + [1.0] * k

    def _assemble(self, x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        # last dimension = features, for the value (N, d) and the derivative slots (N, d, d)
        return torch.cat([x.index_copy(-1, self.index, cos), sin], dim=-1)

    def forward(self, x: Tensor) -> Tensor:
        theta = x[..., self.index] * self.omega.to(x.dtype)
        return self._assemble(x, torch.cos(theta), torch.sin(theta))

    def forward_jet(self, z: Jet) -> Jet:
        omega = self.omega.to(z.value.dtype)
        theta = z.map(lambda t: t[..., self.index] * omega)  # linear in x
        s, c = torch.sin(theta.value), torch.cos(theta.value)
        cos_jet = elementwise_jet(theta, c, -s, -c)
        sin_jet = elementwise_jet(theta, s, c, -s)
        parts = zip(z.parts, cos_jet.parts, sin_jet.parts, strict=True)
        return Jet(*(None if t is None else self._assemble(t, a, b) for t, a, b in parts))

    def extra_repr(self) -> str:
        return f"in_dim={self.in_dim}, periods={self.periods}"


class OutputTransform(nn.Module):
    """u(x) = g(x) + d(x)·N(x): an exact (hard) constraint around ``network``.

    Where d vanishes, u = g whatever N is, so conditions imposed there hold before any
    training (Lagaris, Likas & Fotiadis 1998; Sukumar & Srivastava 2022). ``g`` and
    ``d`` map points (N, dim) to (N,) (the same for every component) or to
    (N, out_dim); both must be smooth, since their derivatives enter the jet.

    The jet is the product rule, slot by slot:

        value      g + d N
        grad       ∇g + ∇d N + d ∇N
        hess_diag  ∂²g + ∂²d N + 2 ∂d ∂N + d ∂²N
        lap        Δg + Δd N + 2 ∇d·∇N + d ΔN

    with the jets of g and d from ``torch.func`` (vmap of jacfwd; g and d are cheap)
    and the network's by :func:`~pinnopt.derivatives.propagate_jet`, or by
    ``torch.func`` when the network does not support jets.

    ``forward_jet`` takes the *input* jet of the raw coordinates (value x, gradient
    the identity, second derivatives zero): OutputTransform must be the outermost
    module, applied to the coordinates themselves. Only the shapes are checked.
    The parameters are the network's only.
    """

    def __init__(self, network: nn.Module, g: Field, d: Field, out_dim: int) -> None:
        super().__init__()
        if not isinstance(network, nn.Module):
            raise ValueError(f"network must be an nn.Module, got {type(network).__name__}")
        for name, fn in (("g", g), ("d", d)):
            if not callable(fn):
                raise ValueError(f"{name} must be a function of the points x (N, d), got {fn!r}")
        if isinstance(out_dim, bool) or not isinstance(out_dim, int) or out_dim < 1:
            raise ValueError(f"out_dim must be an integer >= 1, got {out_dim!r}")
        self.network = network
        self.out_dim = out_dim
        # plain attributes even if a module is passed: the parameters are the network's
        object.__setattr__(self, "g", g)
        object.__setattr__(self, "d", d)

    def _column(self, name: str, t: Tensor, n: int) -> Tensor:
        """(N,) or (N, out_dim) -> (N, 1) or (N, out_dim)."""
        if t.shape == (n,):
            return t.unsqueeze(1)
        if t.shape == (n, self.out_dim):
            return t
        raise ValueError(
            f"{name}(x) must have shape ({n},) or ({n}, {self.out_dim}), got {tuple(t.shape)}"
        )

    def _network_value(self, value: Tensor) -> Tensor:
        n = value.shape[0]
        if value.shape != (n, self.out_dim):
            raise ValueError(
                f"network output must have shape ({n}, {self.out_dim}), got {tuple(value.shape)}"
            )
        return value

    def forward(self, x: Tensor) -> Tensor:
        n = x.shape[0]
        out = self._network_value(self.network(x))
        return self._column("g", self.g(x), n) + self._column("d", self.d(x), n) * out

    def _field_jet(self, name: str, fn: Field, x: Tensor, order: int) -> Jet:
        """Value (N, m), gradient (N, dim, m), Hessian diagonal (N, dim, m) of g or d."""
        from torch.func import jacfwd, vmap

        n = x.shape[0]
        value = self._column(name, fn(x), n)
        if order == 0:
            return Jet(value)

        def point(xi: Tensor) -> Tensor:  # (dim,) -> (m,)
            return fn(xi.unsqueeze(0)).reshape(-1)

        if order == 1:
            grad = vmap(jacfwd(point))(x)  # (N, m, dim)
            return Jet(value, grad.transpose(1, 2))

        def first(xi: Tensor) -> tuple[Tensor, Tensor]:
            j = jacfwd(point)(xi)
            return j, j

        hess, grad = vmap(jacfwd(first, has_aux=True))(x)  # (N, m, dim, dim), (N, m, dim)
        hess = torch.diagonal(hess, dim1=2, dim2=3)
        return Jet(value, grad.transpose(1, 2), hess.transpose(1, 2))

    def forward_jet(self, z: Jet) -> Jet:
        x = z.value
        if x.ndim != 2:
            raise ValueError(f"points must have shape (N, d), got {tuple(x.shape)}")
        n, dim = x.shape
        for part, shape in (
            (z.grad, (n, dim, dim)),
            (z.hess_diag, (n, dim, dim)),
            (z.lap, (n, dim)),
        ):
            if part is not None and part.shape != shape:
                raise ValueError(
                    "OutputTransform.forward_jet needs the input jet of the raw coordinates "
                    f"(gradient (N, d, d), second derivatives (N, d, d) or (N, d)); got a part of "
                    f"shape {tuple(part.shape)} for points {tuple(x.shape)}: it must be the "
                    "outermost module"
                )
        if z.grad is None:
            order, trace = 0, False
        elif z.hess_diag is None and z.lap is None:
            order, trace = 1, False
        else:
            order, trace = 2, z.lap is not None

        net = jet_of_input(self.network, z)
        nv = self._network_value(net.value)
        gj = self._field_jet("g", self.g, x, order)
        dj = self._field_jet("d", self.d, x, order)
        dv = dj.value

        value = gj.value + dv * nv
        if order == 0:
            return Jet(value)
        nv3, dv3 = nv.unsqueeze(1), dv.unsqueeze(1)
        grad = gj.grad + dj.grad * nv3 + dv3 * net.grad
        if order == 1:
            return Jet(value, grad)
        if trace:
            lap = (
                gj.hess_diag.sum(dim=1)
                + dj.hess_diag.sum(dim=1) * nv
                + 2 * (dj.grad * net.grad).sum(dim=1)
                + dv * net.lap
            )
            return Jet(value, grad, None, lap)
        hess = gj.hess_diag + dj.hess_diag * nv3 + 2 * dj.grad * net.grad + dv3 * net.hess_diag
        return Jet(value, grad, hess)
