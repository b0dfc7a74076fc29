"""Task families and the episode sampler: disjoint splits, determinism, trainable tasks."""

from __future__ import annotations

import math

import pytest
import torch

from pinnopt.derivatives import jet
from pinnopt.learned import (
    FAMILIES,
    SPLITS,
    DigitsFamily,
    EpisodeSampler,
    PoissonFamily,
    QuadraticFamily,
    SinusoidFamily,
    build_family,
    load_digits,
)
from pinnopt.learned.tasks import register_family

SMALL = {
    "quadratic": lambda: QuadraticFamily(dim=5, condition=10.0),
    "sinusoid": lambda: SinusoidFamily(k_shot=10, k_query=20, width=16),
    "digits": lambda: DigitsFamily(n_way=3, k_shot=5, k_query=5, width=16),
    "poisson": lambda: PoissonFamily(dim=1, modes=3, n_pde=32, n_bc=2, width=8),
}


def flat(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_split_seeds_never_overlap_whatever_the_base_seeds():
    family = SMALL["quadratic"]()
    seeds = {
        split: {EpisodeSampler(family, split, base).seed(i) for base in (0, 7) for i in range(50)}
        for split in SPLITS
    }
    for a in SPLITS:
        for b in SPLITS:
            if a != b:
                assert not seeds[a] & seeds[b], (a, b)
    sampler = EpisodeSampler(family, "val", 2)
    assert [t.seed for t in sampler.take(3)] == [7, 10, 13]
    assert [t.seed for t, _ in zip(sampler, range(3))] == [7, 10, 13]
    assert all(t.split == "val" for t in sampler.take(2, start=5))


@pytest.mark.parametrize("name", list(SMALL))
def test_same_seed_same_task_and_different_seeds_differ(name):
    family = SMALL[name]()
    a, b, c = family.sample(4), family.sample(4), family.sample(5)
    ma, mb, mc = a.init_model(), b.init_model(), c.init_model()
    assert torch.equal(flat(ma), flat(mb)) and torch.equal(flat(ma), flat(a.init_model()))
    assert float(a.loss(ma).detach()) == float(b.loss(mb).detach())
    assert float(a.loss(ma).detach()) != float(c.loss(mc).detach())


@pytest.mark.parametrize("name", list(SMALL))
def test_task_builds_and_its_loss_decreases_under_adam(name):
    task = EpisodeSampler(SMALL[name](), "train").task(1)
    model = task.init_model()
    assert all(p.dtype == torch.float64 for p in model.parameters())
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    closure = task.closure(model, opt)
    first = float(closure().detach())
    assert math.isfinite(first)
    for _ in range(10):
        opt.step(closure)
    assert float(task.loss(model).detach()) < first
    metric = task.evaluate(model)
    assert math.isfinite(metric)
    if task.higher_is_better:  # accuracy
        assert 0.0 <= metric <= 1.0


def test_quadratic_minimum_is_zero_at_its_target_and_spectrum_is_bounded():
    task = QuadraticFamily(dim=6, condition=50.0).sample(3)
    model = task.init_model()
    with torch.no_grad():
        model.theta.copy_(task.info["target"])
    assert task.evaluate(model) == 0.0
    eig = torch.linalg.eigvalsh(task.info["matrix"])
    assert float(eig.min()) >= 1 / 50.0 - 1e-12 and float(eig.max()) <= 1.0 + 1e-12


def test_sinusoid_targets_lie_in_their_ranges():
    family = SinusoidFamily()
    for seed in range(5):
        task = family.sample(seed)
        assert 0.1 <= task.info["amplitude"] <= 5.0 and 0.0 <= task.info["phase"] <= math.pi
        xs, ys = task.info["support"]
        assert xs.shape == (10, 1) and xs.abs().max() <= 5.0
        torch.testing.assert_close(
            ys, task.info["amplitude"] * torch.sin(xs[:, 0] - task.info["phase"])
        )


def test_digit_classes_are_disjoint_across_splits_and_support_query_never_overlap():
    family = DigitsFamily(n_way=3, k_shot=4, k_query=6)
    classes = {s: set(family.class_splits[s]) for s in SPLITS}
    assert not classes["train"] & classes["val"]
    assert not classes["train"] & classes["test"]
    assert not classes["val"] & classes["test"]
    _, labels = load_digits()
    for split in SPLITS:
        for task in EpisodeSampler(family, split).take(4):
            assert set(task.info["classes"]) <= classes[split]
            assert len(set(task.info["classes"])) == 3
            s, q = task.info["support_index"], task.info["query_index"]
            assert len(s) == 3 * 4 and len(q) == 3 * 6
            assert not set(s.tolist()) & set(q.tolist())
            assert set(labels[s].tolist()) == set(labels[q].tolist()) == set(task.info["classes"])
            _, ys = task.info["support"]
            assert sorted(set(ys.tolist())) == [0, 1, 2]  # relabelled 0 … n_way − 1
            for c, label in zip(task.info["classes"], range(3)):
                assert set(ys[labels[s] == c].tolist()) == {label}


@pytest.mark.parametrize("dim", [1, 2])
def test_poisson_exact_solution_satisfies_its_own_residual(dim):
    task = PoissonFamily(dim=dim, modes=3).sample(11)
    problem, points, source = task.info["problem"], task.info["points"], task.info["source"]
    scale = float(source(points["pde"]).abs().max())
    assert scale > 1.0  # a non-trivial source
    for term in problem.terms:  # exact derivatives of u through the jet code (torch.func)
        x = points[term.name]
        r = term.residual(jet(task.info["exact_model"], x, term.order, term.trace), x)
        assert float(r.abs().max()) <= 1e-12 * scale, term.name
    # and a central finite difference of u, independent of the jet code: −Δ_h u ≈ f
    x = 0.1 + 0.8 * torch.rand(8, dim, dtype=torch.float64)
    h = 1e-4
    lap = torch.zeros(8, dtype=torch.float64)
    for i in range(dim):
        e = torch.zeros(dim, dtype=torch.float64)
        e[i] = h
        lap += (problem.exact(x + e) - 2 * problem.exact(x) + problem.exact(x - e)) / h**2
    torch.testing.assert_close(-lap, source(x), rtol=0, atol=1e-5 * scale)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: EpisodeSampler(QuadraticFamily(), "dev"), r"Invalid split: 'dev'"),
        (lambda: EpisodeSampler(QuadraticFamily(), base_seed=-1), r"Invalid base_seed: -1"),
        (lambda: EpisodeSampler(QuadraticFamily()).seed(-2), r"Invalid index: -2"),
        (lambda: QuadraticFamily().sample(-1), r"Invalid seed: -1"),
        (lambda: QuadraticFamily(dim=0), r"Invalid dim: 0"),
        (lambda: QuadraticFamily(condition=0.5), r"Invalid condition: 0\.5"),
        (lambda: SinusoidFamily(amplitude=(2.0, 1.0)), r"Invalid amplitude"),
        (lambda: DigitsFamily(n_way=4), r"Invalid n_way: 4 \(class_splits\['val'\] has 3\)"),
        (
            lambda: DigitsFamily(
                class_splits={"train": (0, 1, 2), "val": (2, 3, 4), "test": (5, 6, 7)}
            ),
            "'val' shares",
        ),  # fmt: skip
        (lambda: DigitsFamily(class_splits={"train": (0, 1, 2)}), r"Invalid class_splits: keys"),
        (lambda: DigitsFamily(k_query=500).sample(0), r"Invalid k_shot \+ k_query: 505"),
        (lambda: PoissonFamily(decay=-1.0), r"Invalid decay: -1\.0"),
        (lambda: build_family("mnist"), r"unknown task family 'mnist'; allowed: quadratic"),
        (lambda: build_family("poisson", nosuch=1), r"bad option for task family poisson"),
    ],
)
def test_errors_name_the_parameter(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_build_family_by_name():
    family = build_family("poisson", dim=2, modes=2)
    assert isinstance(family, PoissonFamily) and family.dim == 2
    assert family.sample(0).info["amplitudes"].shape == (4,)


def test_families_register_by_name_in_order_and_refuse_a_duplicate():
    assert list(FAMILIES) == ["quadratic", "sinusoid", "digits", "poisson", "pde_mix", "pde_fit"]
    assert all(cls().name == name for name, cls in FAMILIES.items())
    with pytest.raises(ValueError, match=r"task family 'poisson' is already registered"):
        register_family("poisson")(PoissonFamily)
    assert FAMILIES["poisson"] is PoissonFamily


def test_val_may_share_train_classes_only_when_asked_and_then_never_their_images():
    splits = {"train": (0, 1, 2, 3, 4), "val": (0, 1, 2, 3, 4), "test": (5, 6, 7, 8, 9)}
    with pytest.raises(ValueError, match="'val' shares"):
        DigitsFamily(n_way=5, class_splits=splits)
    with pytest.raises(ValueError, match="'test' shares"):
        bad = {"train": (0, 1, 2), "val": (0, 1, 2), "test": (2, 3, 4)}
        DigitsFamily(n_way=3, val_shares_train=True, class_splits=bad)
    with pytest.raises(ValueError, match="Invalid val_shares_train"):
        DigitsFamily(val_shares_train=1)
    family = DigitsFamily(n_way=5, k_shot=1, k_query=15, class_splits=splits,
                          val_shares_train=True)  # fmt: skip
    _, labels = load_digits()
    used = {}
    for split in SPLITS:
        rows = set()
        for task in EpisodeSampler(family, split).take(30):
            assert set(task.info["classes"]) == set(splits[split])
            s, q = task.info["support_index"], task.info["query_index"]
            assert len(s) == 5 and len(q) == 75 and not set(s.tolist()) & set(q.tolist())
            rows |= set(s.tolist()) | set(q.tolist())
        used[split] = rows
    assert not used["train"] & used["val"]  # shared classes, disjoint images
    assert not (used["train"] | used["val"]) & used["test"]
    # train and val take alternate images of each shared class, in dataset order
    for c in splits["train"]:
        rows = torch.nonzero(labels == c).flatten().tolist()
        assert {r for r in used["train"] if labels[r] == c} <= set(rows[0::2])
        assert {r for r in used["val"] if labels[r] == c} <= set(rows[1::2])
    # without the option nothing changes: the default family draws the same tasks
    a = EpisodeSampler(DigitsFamily()).task(3).info["support_index"]
    b = EpisodeSampler(DigitsFamily(val_shares_train=True)).task(3).info["support_index"]
    assert torch.equal(a, b)  # no shared classes by default, so no image split


ROTATED = {"train": (0, 1, 2, 3, 4), "val": (0, 1, 2, 3, 4), "test": (5, 6, 7, 8, 9)}


def test_digit_transforms_are_the_eight_symmetries_of_the_square():
    images, _ = load_digits()
    x = images[:3]
    square = x.reshape(3, 8, 8)
    views = [DigitsFamily.transform(x, t).reshape(3, 8, 8) for t in range(8)]
    assert torch.equal(views[0], square)
    assert torch.equal(views[1][:, 0, :], square[:, :, 7])  # 90° ccw: top row ← right column
    assert torch.equal(views[2], square.flip(1).flip(2))
    assert torch.equal(views[4], square.flip(2))  # left-right mirror
    for t in range(8):
        assert torch.equal(views[t], torch.rot90(views[4 * (t >= 4)], t % 4, dims=(1, 2)))
    assert len({v.numpy().tobytes() for v in views}) == 8  # eight distinct images


def test_rotated_train_classes_are_real_rotations_with_distinct_labels_and_test_untouched():
    family = DigitsFamily(n_way=5, k_shot=2, k_query=3, class_splits=ROTATED,
                          val_shares_train=True, train_transforms=(0, 1, 2),
                          val_transforms=(3,))  # fmt: skip
    images, labels = load_digits()
    seen = {s: set() for s in SPLITS}
    rows = {s: set() for s in SPLITS}
    for split in SPLITS:
        for task in EpisodeSampler(family, split).take(40):
            pairs = list(zip(task.info["classes"], task.info["transforms"]))
            assert len(set(pairs)) == 5  # five distinct (digit, transform) classes
            seen[split] |= set(pairs)
            s, q = task.info["support_index"], task.info["query_index"]
            assert not set(s.tolist()) & set(q.tolist())
            assert len(set(s.tolist()) | set(q.tolist())) == 5 * 5  # no image used twice
            rows[split] |= set(s.tolist()) | set(q.tolist())
            for index, (x, y), k in ((s, task.info["support"], 2), (q, task.info["query"], 3)):
                assert torch.equal(y, torch.arange(5).repeat_interleave(k))
                for i, (c, t) in enumerate(pairs):
                    block = slice(i * k, (i + 1) * k)
                    assert set(labels[index[block]].tolist()) == {c}
                    want = torch.rot90(images[index[block]].reshape(-1, 8, 8), t, dims=(1, 2))
                    assert torch.equal(x[block], want.reshape(-1, 64))
    digits = set(ROTATED["train"])
    assert seen["train"] == {(c, t) for c in digits for t in (0, 1, 2)}
    assert seen["val"] == {(c, 3) for c in digits}  # new classes: a rotation never trained on
    assert seen["test"] == {(c, 0) for c in ROTATED["test"]}  # test is never transformed
    assert not rows["train"] & rows["val"] and not (rows["train"] | rows["val"]) & rows["test"]
    # test episodes are exactly those of the family without transforms
    plain = DigitsFamily(n_way=5, k_shot=2, k_query=3, class_splits=ROTATED,
                         val_shares_train=True)  # fmt: skip
    for a, b in zip(EpisodeSampler(family, "test").take(5), EpisodeSampler(plain, "test").take(5)):
        assert torch.equal(a.info["query"][0], b.info["query"][0])
        assert a.info["classes"] == b.info["classes"]


def test_digit_transform_options_are_checked_and_default_to_the_identity():
    with pytest.raises(ValueError, match="Invalid train_transforms"):
        DigitsFamily(train_transforms=(0, 8))
    with pytest.raises(ValueError, match="Invalid val_transforms"):
        DigitsFamily(val_transforms=())
    with pytest.raises(ValueError, match="Invalid train_transforms"):
        DigitsFamily(train_transforms=(1, 1))
    assert DigitsFamily(train_transforms=[0, 1]).train_transforms == (0, 1)  # from a config
    # four train digits × two transforms make eight classes: 8-way fits, val's 3 do not
    with pytest.raises(ValueError, match=r"n_way: 4 \(class_splits\['val'\] has 3\)"):
        DigitsFamily(n_way=4, train_transforms=(0, 1))
    family = DigitsFamily(n_way=3, val_transforms=(0, 4))
    assert len(family._pool("val")) == 6 and len(family._pool("train")) == 4
    with pytest.raises(ValueError, match=r"\['val'\] × val_transforms has 6"):
        DigitsFamily(n_way=7, class_splits={"train": (0, 1, 2, 3, 4, 5, 6), "val": (7, 8, 9),
                                            "test": ()}, val_transforms=(0, 4))  # fmt: skip
    one = {"train": (0,), "val": (1, 2, 3, 4, 5), "test": (6, 7, 8, 9)}  # digit 0: 178 images
    with pytest.raises(ValueError, match=r"k_query: 60 \(digit 0 has 178 images, 240 needed"):
        DigitsFamily(n_way=4, k_shot=10, k_query=50, class_splits=one,
                     train_transforms=(0, 1, 2, 3)).sample(0)  # fmt: skip
    task = DigitsFamily().sample(5)
    assert task.info["transforms"] == (0, 0, 0)
