import math

import pytest
import torch

from pinnopt.train.schedulers import SCHEDULERS, build_scheduler, scheduler_step


def _lrs(name, steps=100, loss=1.0, **options):
    w = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([w], lr=1.0)
    sched = build_scheduler(name, opt, steps, **options)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler_step(sched, loss)
    return out


def test_names():
    assert set(SCHEDULERS) == {
        "none", "exponential", "cosine", "plateau", "multistep", "warmup_cosine", "cyclical",
        "learned",
    }  # fmt: skip


def test_none_is_constant():
    assert _lrs("none") == [1.0] * 100


def test_exponential_reaches_final_factor():
    lrs = _lrs("exponential", steps=100, final_factor=0.01)
    assert lrs[0] == 1.0
    assert lrs[-1] == pytest.approx(0.01 ** (99 / 100), rel=1e-9)


def test_cosine_anneals_to_eta_min():
    lrs = _lrs("cosine", steps=100)
    assert lrs[50] == pytest.approx(0.5, abs=1e-9)
    assert lrs[-1] < 1e-3


def test_multistep_drops_at_fractions():
    lrs = _lrs("multistep", steps=100)
    assert lrs[49] == 1.0 and lrs[50] == pytest.approx(0.1) and lrs[75] == pytest.approx(0.01)


def test_warmup_cosine_rises_then_falls():
    lrs = _lrs("warmup_cosine", steps=100, warmup=0.1)
    assert lrs[0] == pytest.approx(0.1)
    assert max(lrs) == pytest.approx(1.0)
    assert lrs.index(max(lrs)) == 10
    assert lrs[-1] < 0.01


def test_cyclical_oscillates_between_bounds():
    lrs = _lrs("cyclical", steps=100, cycles=4, base_factor=0.1)
    assert min(lrs) == pytest.approx(0.1) and max(lrs) == pytest.approx(1.0)
    peaks = sum(1 for a, b, c in zip(lrs, lrs[1:], lrs[2:]) if b > a and b > c)
    assert peaks >= 3


def test_plateau_reduces_when_loss_stalls():
    lrs = _lrs("plateau", steps=30, patience=5, factor=0.5)
    assert lrs[0] == 1.0 and lrs[-1] < 0.2
    # a non-finite loss is ignored rather than crashing the schedule
    assert _lrs("plateau", steps=3, loss=math.nan) == [1.0] * 3


def test_unknown_name_and_option():
    w = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([w], lr=1.0)
    with pytest.raises(ValueError, match="unknown scheduler 'nope'; allowed: none"):
        build_scheduler("nope", opt, 10)
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['bogus'\] for scheduler cosine"):
        build_scheduler("cosine", opt, 10, bogus=1)
