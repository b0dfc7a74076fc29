"""Add a profile equation to pinnopt.blowup in a few lines: the generalised
Constantin–Lax–Majda family ω_t + a u ω_x = u_x ω, u_x = Hω (a = −1 is CCF).

Self-similar profile equation, ω = (1 − t)^(−1) Ω(x / (1 − t)^(1+λ)):

    Ω + ((1 + λ) y + a U) Ω' − Ω U' = 0,    U' = HΩ,

far field Ω ~ |y|^(−1/(1+λ)), and at y = 0: λ = (1 − a) HΩ(0) − 2.

    python examples/blowup_custom_equation.py --a -1
"""

import argparse

from pinnopt.blowup.equation import ProfileEquation, register_equation
from pinnopt.blowup.series_profile import find_series_profile


def gclm(a: float) -> ProfileEquation:
    return ProfileEquation(
        name=f"gclm({a:g})",
        description=f"generalised CLM with a = {a:g}",
        residual=lambda f, y, lam: (
            f["f"] + ((1 + lam) * y + a * f["U"]) * f["df"] - f["f"] * f["hf"]
        ),
        decay=lambda lam: 1 / (1 + lam),
        lambda_rule=lambda at0: (1 - a) * at0["hf"] - 2,
        bracket=(0.3, 1.5),
    )


def main(a: float = -1.0, max_degree: int = 23) -> float:
    equation = register_equation(gclm(a), replace=True)
    result = find_series_profile(equation, lambda_mode="funnel", max_degree=max_degree)
    check = result.check()
    print(f"{equation.name}: λ = {result.lam:.15f}, max |E| = {check['max_residual']:.2e}")
    return result.lam


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", type=float, default=-1.0)
    parser.add_argument("--max-degree", type=int, default=23)
    args = parser.parse_args()
    main(args.a, args.max_degree)
