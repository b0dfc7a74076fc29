"""Recipes: a run that asks for one and names no optimizer starts from its problem's recipe."""

import pytest

from pinnopt.config import ConfigError, make_config
from pinnopt.problems import PROBLEMS
from pinnopt.recipes import RECIPES, Recipe, recipe_for, with_recipe


def test_every_registered_problem_has_a_recipe_that_validates():
    assert set(RECIPES) == set(PROBLEMS)
    for name, recipe in RECIPES.items():
        config = make_config({"problem": {"name": name, "recipe": True}})
        assert config.problem.recipe is True
        assert config.optim.optimizer == recipe.config["optim"]["optimizer"], name
        assert config.training.time_limit == recipe.config["training"]["time_limit"], name


def test_the_run_overrides_any_part_and_a_method_takes_its_section_whole():
    recipe = Recipe({
        "model": {"depth": 8, "width": 20},
        "optim": {"optimizer": "adam:10,gn"},
        "sampling": {"method": "rad", "period": 500, "pool": 7},
        "training": {"steps": 100, "time_limit": 60.0},
    })  # fmt: skip
    data = {
        "problem": {"name": "x", "recipe": True},
        "model": {"width": 9},
        "sampling": {"method": "resample"},
        "training": {"steps": 5},
    }
    RECIPES["x"] = recipe
    try:
        out = with_recipe(data)
    finally:
        del RECIPES["x"]
    assert out["model"] == {"depth": 8, "width": 9}
    assert out["sampling"] == {"method": "resample"}  # not rad's period and pool
    assert out["training"] == {"steps": 5, "time_limit": 60.0}
    assert out["optim"] == {"optimizer": "adam:10,gn"}
    assert recipe.config["model"] == {"depth": 8, "width": 20}  # the recipe is not changed


def test_a_chosen_optimizer_or_no_request_means_no_recipe():
    chosen = make_config({"problem": {"name": "burgers1d", "recipe": True},
                          "optim": {"optimizer": "adam"}})  # fmt: skip
    assert chosen.problem.recipe is False
    assert chosen.model.depth == 2 and chosen.sampling.method == "fixed"
    plain = make_config({"problem": {"name": "burgers1d"}})
    assert plain.problem.recipe is False and plain.optim.optimizer == "adam:1000,lbfgs"


def test_a_recipe_run_keeps_the_runs_own_flags():
    config = make_config({"problem": {"name": "burgers1d", "recipe": True},
                          "training": {"steps": 3}})  # fmt: skip
    assert config.training.steps == 3
    assert config.optim.optimizer == recipe_for("burgers1d").config["optim"]["optimizer"]


def test_a_bad_override_still_names_its_field():
    with pytest.raises(ConfigError, match="model.width: Input should be greater than or equal"):
        make_config({"problem": {"name": "burgers1d", "recipe": True}, "model": {"width": 0}})


def test_summaries_name_the_pieces():
    recipe = Recipe({
        "model": {"depth": 8, "width": 20},
        "optim": {"optimizer": "adam:1000,ssbroyden"},
        "sampling": {"method": "rad", "period": 500},
        "training": {"time_limit": 600},
    })  # fmt: skip
    assert recipe.summary() == "adam:1000,ssbroyden · 8x20 · rad/500 · 600 s"
    assert recipe_for("nope") is None
