"""Fixtures shared by the blow-up tests."""

import pytest

from pinnopt.blowup.catalog import get_equation
from pinnopt.blowup.series_profile import find_series_profile


@pytest.fixture(scope="session")
def ccf():
    """The stable CCF profile by the analytic series (λ trainable from 1, degree 11)."""
    equation = get_equation("ccf")
    return equation, find_series_profile(equation, 0, "trainable", lam0=1.0, max_degree=11)
