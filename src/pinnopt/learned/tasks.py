"""Task families for meta-learning optimizers, and an episode sampler with disjoint splits.

A :class:`Task` is one inner problem: it builds a fresh model (the same one every
call), gives the training loss of a model, and reports a final metric. A
:class:`TaskFamily` draws tasks from a seed: every random choice of a task (its data,
its target, its model's initial weights) comes from that seed alone, so a seed names
a task. An :class:`EpisodeSampler` hands out the tasks of one split, ``train``,
``val`` or ``test``: task i of split s has seed 3·(base_seed + i) + s_index, so the
three splits never share a seed. Families with discrete classes (digits) also keep
their classes apart by split.

Families:

* ``quadratic``: f(θ) = ½ (θ − θ*)ᵀ A (θ − θ*), A = Qᵀ diag(λ) Q with Q a random
  rotation and λ log-uniform in [1/condition, 1] — the classic learned-optimizer
  testbed (Andrychowicz et al., "Learning to learn by gradient descent by gradient
  descent", NeurIPS 2016).
* ``sinusoid``: K-shot regression of y = A sin(x − φ), A ∈ [0.1, 5], φ ∈ [0, π],
  x ∈ [−5, 5] (Finn, Abbeel & Levine, "Model-agnostic meta-learning", ICML 2017).
* ``digits``: N-way K-shot classification on scikit-learn's bundled 8×8 digits,
  classes split between meta-train, validation and held-out test (the few-shot
  protocol of Vinyals et al., "Matching networks for one shot learning", NeurIPS 2016).
* ``poisson``: −Δu = f on [0, 1]^d, u = 0 on the boundary, with the manufactured
  solution u = Σ_k a_k Π_i sin(k_i π x_i) over modes k ∈ {1, …, modes}^d,
  a_k = z_k / |k|^decay, z_k ~ N(0, 1), so f = π² Σ_k |k|² a_k Π_i sin(k_i π x_i);
  a smooth random source with an exact solution to measure the error against.
"""

from __future__ import annotations

import functools
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from pinnopt.evaluation import Evaluator
from pinnopt.models import MODELS, build_model
from pinnopt.objective import Objective
from pinnopt.problems.base import Box
from pinnopt.problems.poisson import poisson_problem
from pinnopt.registry import Registry

SPLITS = ("train", "val", "test")
DIGIT_CLASS_SPLITS = {"train": (0, 1, 2, 3), "val": (4, 5, 6), "test": (7, 8, 9)}


def _check_split(split: str) -> int:
    if split not in SPLITS:
        raise ValueError(f"Invalid split: {split!r}; allowed: {', '.join(SPLITS)}")
    return SPLITS.index(split)


def _check_seed(seed: int) -> None:
    if not (isinstance(seed, int) and 0 <= seed < 2**63):
        raise ValueError(f"Invalid seed: {seed!r} (need an integer in [0, 2**63))")


def _positive_int(name: str, value: int) -> None:
    if not (isinstance(value, int) and value >= 1):
        raise ValueError(f"Invalid {name}: {value!r} (need an integer >= 1)")


def _positive(name: str, value: float) -> None:
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"Invalid {name}: {value!r} (need a finite number > 0)")


def _interval(name: str, value: tuple[float, float], low: float = -math.inf) -> None:
    a, b = value
    if not (math.isfinite(a) and math.isfinite(b) and low <= a < b):
        raise ValueError(f"Invalid {name}: {value!r} (need finite lo < hi, lo >= {low})")


@dataclass(frozen=True)
class Task:
    """One inner optimization problem drawn from a family.

    ``init_model()`` returns a fresh model with the task's initial weights (the same
    every call); ``loss(model)`` is the scalar training loss (support set, collocation
    points); ``evaluate(model)`` the final metric named ``metric`` (on a query set or
    evaluation points; ``higher_is_better`` says its direction). ``info`` holds the
    family's facts about the task (its target, data indices, classes, problem).
    """

    family: str
    split: str
    seed: int
    init_model: Callable[[], nn.Module]
    loss: Callable[[nn.Module], Tensor]
    evaluate: Callable[[nn.Module], float]
    metric: str
    higher_is_better: bool = False
    info: dict[str, Any] = field(default_factory=dict)

    def closure(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> Callable[[], Tensor]:
        """A ``step(closure)`` closure: zero the gradients, evaluate the loss, backward."""

        def run() -> Tensor:
            optimizer.zero_grad()
            loss = self.loss(model)
            loss.backward()
            return loss

        return run


class TaskFamily(ABC):
    """A distribution over tasks: ``sample(seed, split)`` draws the task named by ``seed``.

    ``split`` matters only to families whose tasks draw from a split-specific pool
    (the digit classes); seeds are kept apart by :class:`EpisodeSampler`.
    """

    name: str

    @abstractmethod
    def sample(self, seed: int, split: str = "train") -> Task: ...


FAMILIES: Registry[type[TaskFamily]] = Registry("task family")


register_family = FAMILIES.register  # decorator adding a task family class under a name


class _Point(nn.Module):
    """A model that is one parameter vector θ: the 'network' of a quadratic task."""

    def __init__(self, theta: Tensor) -> None:
        super().__init__()
        self.theta = nn.Parameter(theta.clone())


@register_family("quadratic")
@dataclass(frozen=True)
class QuadraticFamily(TaskFamily):
    """Random quadratics f(θ) = ½ (θ − θ*)ᵀ A (θ − θ*), min f = 0 at θ*.

    A = Qᵀ diag(λ) Q, Q a random rotation (QR of a Gaussian matrix), λ_i log-uniform
    in [1/condition, 1]; θ* and θ_0 standard normal (Andrychowicz et al., NeurIPS 2016).
    The metric is the final loss f(θ) = f(θ) − min f.
    """

    dim: int = 8
    condition: float = 100.0
    dtype: torch.dtype = torch.float64
    name: str = "quadratic"

    def __post_init__(self) -> None:
        _positive_int("dim", self.dim)
        if not (self.condition >= 1 and math.isfinite(self.condition)):
            raise ValueError(f"Invalid condition: {self.condition!r} (need 1 <= condition < inf)")

    def sample(self, seed: int, split: str = "train") -> Task:
        _check_seed(seed)
        _check_split(split)
        g = torch.Generator().manual_seed(seed)
        n, dt = self.dim, self.dtype
        q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
        eig = torch.exp(-math.log(self.condition) * torch.rand(n, generator=g, dtype=torch.float64))
        a = (q.T * eig) @ q
        a = (0.5 * (a + a.T)).to(dt)
        target = torch.randn(n, generator=g, dtype=torch.float64).to(dt)
        start = torch.randn(n, generator=g, dtype=torch.float64).to(dt)

        def loss(model: nn.Module) -> Tensor:
            d = model.theta - target
            return 0.5 * d @ (a @ d)

        def evaluate(model: nn.Module) -> float:
            with torch.no_grad():
                return float(loss(model))

        return Task(self.name, split, seed, lambda: _Point(start), loss, evaluate, "loss",
                    info={"matrix": a, "eigenvalues": eig.to(dt), "target": target})  # fmt: skip


@register_family("sinusoid")
@dataclass(frozen=True)
class SinusoidFamily(TaskFamily):
    """K-shot sinusoid regression y = A sin(x − φ) (Finn et al., "Model-agnostic
    meta-learning", ICML 2017): A ~ U(amplitude), φ ~ U(phase), x ~ U(x_range).

    The loss is the mean squared error on ``k_shot`` support points, the metric the
    mean squared error on ``k_query`` fresh query points; the model an MLP 1 → 1.
    """

    k_shot: int = 10
    k_query: int = 100
    amplitude: tuple[float, float] = (0.1, 5.0)
    phase: tuple[float, float] = (0.0, math.pi)
    x_range: tuple[float, float] = (-5.0, 5.0)
    width: int = 40
    depth: int = 2
    dtype: torch.dtype = torch.float64
    name: str = "sinusoid"

    def __post_init__(self) -> None:
        for key in ("k_shot", "k_query", "width", "depth"):
            _positive_int(key, getattr(self, key))
        _interval("amplitude", self.amplitude, 0.0)
        _interval("phase", self.phase)
        _interval("x_range", self.x_range)

    def sample(self, seed: int, split: str = "train") -> Task:
        _check_seed(seed)
        _check_split(split)
        g = torch.Generator().manual_seed(seed)

        def uniform(n: int, bounds: tuple[float, float]) -> Tensor:
            lo, hi = bounds
            return lo + (hi - lo) * torch.rand(n, generator=g, dtype=torch.float64)

        amp, phase = float(uniform(1, self.amplitude)), float(uniform(1, self.phase))
        xs = uniform(self.k_shot, self.x_range)[:, None].to(self.dtype)
        xq = uniform(self.k_query, self.x_range)[:, None].to(self.dtype)
        ys, yq = (amp * torch.sin(x[:, 0] - phase) for x in (xs, xq))

        def init_model() -> nn.Module:
            lo, hi = self.x_range
            return build_model("mlp", 1, [lo], [hi], width=self.width, depth=self.depth,
                               seed=seed, dtype=self.dtype)  # fmt: skip

        def loss(model: nn.Module) -> Tensor:
            return (model(xs)[:, 0] - ys).square().mean()

        def evaluate(model: nn.Module) -> float:
            with torch.no_grad():
                return float((model(xq)[:, 0] - yq).square().mean())

        info = {"amplitude": amp, "phase": phase, "support": (xs, ys), "query": (xq, yq)}
        return Task(self.name, split, seed, init_model, loss, evaluate, "query_mse", info=info)


@functools.cache
def load_digits() -> tuple[Tensor, Tensor]:
    """scikit-learn's bundled digits: images (1797, 64) float64 in [0, 16], labels (1797,)."""
    from sklearn.datasets import load_digits as sk_load_digits  # shipped with the package

    data = sk_load_digits()
    return torch.as_tensor(data.data, dtype=torch.float64), torch.as_tensor(data.target)


@register_family("digits")
@dataclass(frozen=True)
class DigitsFamily(TaskFamily):
    """N-way K-shot classification on scikit-learn's 8×8 digits (Vinyals et al., NeurIPS 2016).

    An episode of split s picks ``n_way`` classes from ``class_splits[s]`` (the splits'
    classes are disjoint: meta-train on some digits, test on held-out ones), relabels
    them 0 … n_way − 1, and draws for each class ``k_shot`` support and ``k_query``
    query images without overlap. The loss is the cross-entropy on the support set,
    the metric the accuracy on the query set; the model an MLP 64 → n_way.

    Ten digits cannot give three disjoint pools of five classes, so a 5-way protocol
    needs ``val_shares_train=True``: ``class_splits["val"]`` may then reuse train
    classes (``test`` stays disjoint from both), and the images of every class in both
    pools are split between them (train episodes draw that class's even-numbered
    images in dataset order, val episodes the odd-numbered ones), so no validation
    image is ever seen in meta-training. Validation then measures new episodes and
    new images of the train classes, not new classes; only ``test`` holds new classes.

    Class augmentation (Santoro et al., ICML 2016; Finn et al., ICML 2017, on
    Omniglot): ``train_transforms`` and ``val_transforms`` list symmetries of the 8×8
    square, each of which turns every digit of that split's pool into a class of its
    own, so the pool has len(digits) × len(transforms) classes. Transform t ∈ 0…7 is a
    rotation by (t mod 4) × 90° counter-clockwise (``torch.rot90`` with k = t mod 4 on
    the (8, 8) image), after a left-right mirror when t ≥ 4; 0 is the identity, the
    default, and then nothing changes. ``info["classes"]`` holds each episode class's
    digit, ``info["transforms"]`` its transform. Two classes of one digit in an episode
    never share an image. ``test`` episodes are never transformed. With
    ``val_shares_train`` and disjoint transforms, e.g. train (0, 1, 2) and val (3,),
    validation classes are new classes (a rotation never seen in meta-training) of
    images never seen in meta-training. Note that some digits are nearly symmetric
    (0, 1 and 8 under 180°), so some augmented classes are near-duplicates.
    """

    n_way: int = 3
    k_shot: int = 5
    k_query: int = 10
    class_splits: dict[str, tuple[int, ...]] = field(
        default_factory=lambda: dict(DIGIT_CLASS_SPLITS)
    )
    width: int = 32
    depth: int = 1
    dtype: torch.dtype = torch.float64
    name: str = "digits"
    val_shares_train: bool = False
    train_transforms: tuple[int, ...] = (0,)
    val_transforms: tuple[int, ...] = (0,)

    def __post_init__(self) -> None:
        for key in ("n_way", "k_shot", "k_query", "width", "depth"):
            _positive_int(key, getattr(self, key))
        if not isinstance(self.val_shares_train, bool):
            raise ValueError(f"Invalid val_shares_train: {self.val_shares_train!r} (need a bool)")
        for key in ("train_transforms", "val_transforms"):
            ts = getattr(self, key)
            if not (isinstance(ts, (tuple, list)) and ts and len(set(ts)) == len(ts)
                    and all(isinstance(t, int) and 0 <= t <= 7 for t in ts)):  # fmt: skip
                raise ValueError(f"Invalid {key}: {ts!r} (need distinct ints in 0-7, at least one)")
            object.__setattr__(self, key, tuple(ts))  # a list (from a config file) → tuple
        if set(self.class_splits) != set(SPLITS):
            raise ValueError(
                f"Invalid class_splits: keys {sorted(self.class_splits)}; need {list(SPLITS)}"
            )
        seen: set[int] = set()
        for split in SPLITS:
            classes = tuple(self.class_splits[split])
            if not all(isinstance(c, int) and 0 <= c <= 9 for c in classes):
                raise ValueError(f"Invalid class_splits[{split!r}]: {classes} (digits are 0-9)")
            shares = seen & set(classes)
            if split == "val" and self.val_shares_train:
                shares = set()  # val may reuse train classes; test never shares any
            if shares or len(set(classes)) != len(classes):
                raise ValueError(f"Invalid class_splits: {split!r} shares or repeats classes")
            n_classes = len(self._pool(split))
            if n_classes < self.n_way:
                pool = f"class_splits[{split!r}]"
                if n_classes != len(classes):
                    pool += f" × {split}_transforms"
                raise ValueError(f"Invalid n_way: {self.n_way} ({pool} has {n_classes})")
            seen |= set(classes)

    def _pool(self, split: str) -> list[tuple[int, int]]:
        """The classes of a split as (digit, transform), digit-major."""
        transforms = {"train": self.train_transforms, "val": self.val_transforms}.get(split, (0,))
        return [(c, t) for c in self.class_splits[split] for t in transforms]

    @staticmethod
    def transform(images: Tensor, t: int) -> Tensor:
        """Images (n, 64) under transform t: mirror left-right if t ≥ 4, then rotate by
        (t mod 4) × 90° counter-clockwise."""
        x = images.reshape(-1, 8, 8)
        if t >= 4:
            x = torch.flip(x, dims=(2,))
        return torch.rot90(x, t % 4, dims=(1, 2)).reshape(-1, 64)

    def sample(self, seed: int, split: str = "train") -> Task:
        _check_seed(seed)
        _check_split(split)
        images, labels = load_digits()
        g = torch.Generator().manual_seed(seed)
        pool = self._pool(split)
        classes = [pool[int(i)] for i in torch.randperm(len(pool), generator=g)[: self.n_way]]
        n_per = self.k_shot + self.k_query
        drawn: dict[int, Tensor] = {}  # digit → its shuffled rows; its classes take slices
        support, query, xs, xq = [], [], [], []
        for c, t in classes:
            if c not in drawn:
                rows = torch.nonzero(labels == c).flatten()
                if split in ("train", "val") and c in self._shared_classes():
                    rows = rows[0::2] if split == "train" else rows[1::2]
                need = n_per * sum(d == c for d, _ in classes)
                if len(rows) < need:
                    raise ValueError(
                        f"Invalid k_shot + k_query: {n_per} (digit {c} has {len(rows)} images"
                        + (f", {need} needed)" if need > n_per else ")")
                    )
                drawn[c] = rows[torch.randperm(len(rows), generator=g)]
            rows, drawn[c] = drawn[c][:n_per], drawn[c][n_per:]
            support.append(rows[: self.k_shot])
            query.append(rows[self.k_shot :])
            xs.append(self.transform(images[support[-1]], t))
            xq.append(self.transform(images[query[-1]], t))
        s_idx, q_idx = torch.cat(support), torch.cat(query)
        label = torch.arange(self.n_way)
        xs_, ys = torch.cat(xs).to(self.dtype), label.repeat_interleave(self.k_shot)
        xq_, yq = torch.cat(xq).to(self.dtype), label.repeat_interleave(self.k_query)

        def init_model() -> nn.Module:
            return build_model("mlp", 64, [0.0] * 64, [16.0] * 64, out_dim=self.n_way,
                               width=self.width, depth=self.depth, seed=seed,
                               dtype=self.dtype)  # fmt: skip

        def loss(model: nn.Module) -> Tensor:
            return nn.functional.cross_entropy(model(xs_), ys)

        def evaluate(model: nn.Module) -> float:
            with torch.no_grad():
                return float((model(xq_).argmax(dim=1) == yq).to(torch.float64).mean())

        info = {"classes": tuple(c for c, _ in classes), "transforms": tuple(t for _, t in classes),
                "support_index": s_idx, "query_index": q_idx, "support": (xs_, ys),
                "query": (xq_, yq)}  # fmt: skip
        return Task(self.name, split, seed, init_model, loss, evaluate, "query_accuracy",
                    higher_is_better=True, info=info)  # fmt: skip

    def _shared_classes(self) -> set[int]:
        """The digits of both the train and the val pool (none unless val_shares_train)."""
        if not self.val_shares_train:
            return set()
        return set(self.class_splits["train"]) & set(self.class_splits["val"])


class _Exact(nn.Module):
    """u(x) of a manufactured solution as a module, so that jets of it can be taken."""

    def __init__(self, fn: Callable[[Tensor], Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(x)[:, None]


@register_family("poisson")
@dataclass(frozen=True)
class PoissonFamily(TaskFamily):
    """−Δu = f on [0, 1]^d, u = 0 on the boundary, with a random smooth manufactured solution

        u(x) = Σ_k a_k Π_i sin(k_i π x_i),  k ∈ {1, …, modes}^d,  a_k = z_k / |k|^decay,

    z_k ~ N(0, 1), hence f = π² Σ_k |k|² a_k Π_i sin(k_i π x_i). The residual terms are
    those of the registry's Poisson problems (:mod:`pinnopt.problems.poisson`); the
    loss is the PINN objective ½‖r(θ)‖², the metric the relative L2 error on the
    problem's evaluation points; the model d → 1 (float64) is ``model`` (``mlp`` or
    ``chebykan``, with ``degree``) of ``width`` and ``depth``.
    """

    dim: int = 1
    modes: int = 4
    decay: float = 2.0
    n_pde: int = 64
    n_bc: int = 16
    width: int = 16
    depth: int = 2
    model: str = "mlp"
    degree: int = 5
    name: str = "poisson"

    def __post_init__(self) -> None:
        for key in ("dim", "modes", "n_pde", "n_bc", "width", "depth", "degree"):
            _positive_int(key, getattr(self, key))
        if self.model not in MODELS:
            raise ValueError(f"Invalid model: {self.model!r}; allowed: {', '.join(MODELS)}")
        if not (self.decay >= 0 and math.isfinite(self.decay)):
            raise ValueError(f"Invalid decay: {self.decay!r} (need 0 <= decay < inf)")

    def sample(self, seed: int, split: str = "train") -> Task:
        _check_seed(seed)
        _check_split(split)
        g = torch.Generator().manual_seed(seed)
        d = self.dim
        axes = [torch.arange(1, self.modes + 1, dtype=torch.float64)] * d
        k = torch.stack([m.reshape(-1) for m in torch.meshgrid(*axes, indexing="ij")], dim=1)
        k2 = k.square().sum(dim=1)
        amplitudes = torch.randn(len(k), generator=g, dtype=torch.float64) / k2 ** (self.decay / 2)

        def basis(x: Tensor) -> Tensor:  # (N, M): Π_i sin(k_i π x_i)
            return torch.sin(math.pi * x[:, None, :] * k.to(x)).prod(dim=2)

        def exact(x: Tensor) -> Tensor:
            return basis(x) @ amplitudes.to(x)

        def source(x: Tensor) -> Tensor:
            return basis(x) @ (math.pi**2 * k2 * amplitudes).to(x)

        box = Box([0.0] * d, [1.0] * d)
        text = f"-Lap u = f on [0,1]^{d}, random manufactured u, seed {seed}"
        problem = poisson_problem(
            f"poisson{d}d_random", box, exact, source, self.n_pde, self.n_bc, text
        )
        points = problem.sample(g)
        evaluator = functools.cache(lambda: Evaluator(problem))

        def init_model() -> nn.Module:
            return build_model(self.model, d, box.lower, box.upper, width=self.width,
                               depth=self.depth, degree=self.degree, seed=seed)  # fmt: skip

        def loss(model: nn.Module) -> Tensor:
            return Objective(problem, model, points).loss()

        def evaluate(model: nn.Module) -> float:
            return evaluator()(model)["rel_l2"]

        info = {"problem": problem, "points": points, "modes": k, "amplitudes": amplitudes,
                "source": source, "exact_model": _Exact(exact)}  # fmt: skip
        return Task(self.name, split, seed, init_model, loss, evaluate, "rel_l2", info=info)


def build_family(name: str, **options: Any) -> TaskFamily:
    """The family ``name`` with its options; ValueError names what is wrong."""
    if name not in FAMILIES:
        raise ValueError(f"unknown task family {name!r}; allowed: {', '.join(FAMILIES)}")
    try:
        return FAMILIES[name](**options)
    except TypeError as e:
        raise ValueError(f"bad option for task family {name}: {e}") from None


@dataclass(frozen=True)
class EpisodeSampler:
    """The tasks of one split of a family, in a fixed order: task i has seed
    3·(base_seed + i) + (0, 1, 2 for train, val, test).

    Seeds of different splits differ modulo 3, so no two splits ever share a task,
    whatever ``base_seed`` each sampler uses; a fixed ``base_seed`` makes the
    validation and test sets the same in every run.
    """

    family: TaskFamily
    split: str = "train"
    base_seed: int = 0

    def __post_init__(self) -> None:
        _check_split(self.split)
        if not (isinstance(self.base_seed, int) and self.base_seed >= 0):
            raise ValueError(f"Invalid base_seed: {self.base_seed!r} (need an integer >= 0)")

    def seed(self, index: int) -> int:
        if not (isinstance(index, int) and index >= 0):
            raise ValueError(f"Invalid index: {index!r} (need an integer >= 0)")
        return 3 * (self.base_seed + index) + SPLITS.index(self.split)

    def task(self, index: int) -> Task:
        return self.family.sample(self.seed(index), self.split)

    def take(self, n: int, start: int = 0) -> list[Task]:
        """Tasks start, …, start + n − 1."""
        if not (isinstance(n, int) and n >= 0):
            raise ValueError(f"Invalid n: {n!r} (need an integer >= 0)")
        return [self.task(start + i) for i in range(n)]

    def __iter__(self) -> Iterator[Task]:
        index = 0
        while True:
            yield self.task(index)
            index += 1
