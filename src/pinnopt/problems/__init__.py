"""PDE problems: domains, residual terms and exact or reference solutions, by name."""

# imported for their registration
from pinnopt.problems import (  # noqa: F401
    allen_cahn,
    burgers,
    convection,
    heat,
    helmholtz,
    lshape,
    navier_stokes,
    poisson,
    reaction,
    wave,
)
from pinnopt.problems.base import Problem, Term
from pinnopt.problems.burgers import burgers_hopf_cole
from pinnopt.problems.constraints import Constraint, box_distance
from pinnopt.problems.geometry import (
    Annulus,
    Box,
    Difference,
    Disk,
    Geometry,
    Intersection,
    Polygon,
    Union,
    l_shape,
    with_normals,
)
from pinnopt.problems.observations import observation_terms, read_observations
from pinnopt.problems.registry import PROBLEMS, get_problem, register_problem
from pinnopt.problems.unknowns import Unknown

__all__ = [
    "PROBLEMS",
    "Annulus",
    "Box",
    "Constraint",
    "Difference",
    "Disk",
    "Geometry",
    "Intersection",
    "Polygon",
    "Problem",
    "Term",
    "Union",
    "Unknown",
    "box_distance",
    "burgers_hopf_cole",
    "get_problem",
    "l_shape",
    "observation_terms",
    "read_observations",
    "register_problem",
    "with_normals",
]
