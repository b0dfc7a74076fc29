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


def _resolved(path):
    import tomllib

    return tomllib.loads((path / "config.toml").read_text())


@pytest.mark.parametrize(
    ("flags", "optimizer", "recipe"),
    [
        ([], "adam:1000,ssbroyden", True),
        (["--no-recipe"], "adam:1000,lbfgs", False),
        (["--optimizer", "adam"], "adam", False),
    ],
)
def test_the_command_line_starts_from_the_recipe_unless_told_otherwise(
    tmp_path, capsys, flags, optimizer, recipe
):
    from pinnopt.cli import main

    out = tmp_path / "run"
    args = ["solve", "burgers1d", "--steps", "2", "--width", "4", "--out", str(out), "--quiet"]
    assert main([*args, *flags]) == 0
    config = _resolved(out)
    assert config["optim"]["optimizer"] == optimizer
    assert config["problem"]["recipe"] is recipe
    assert config["model"]["width"] == 4  # a flag overrides its part of the recipe
    assert config["model"]["depth"] == (8 if recipe else 2)
    assert config["sampling"]["method"] == ("rad" if recipe else "fixed")
    assert f"with {optimizer}" in capsys.readouterr().out


def test_a_config_file_may_decline_the_recipe(tmp_path, capsys):
    from pinnopt.cli import main

    path = tmp_path / "c.toml"
    path.write_text('[problem]\nname = "burgers1d"\nrecipe = false\n[training]\nsteps = 2\n'
                    '[model]\nwidth = 4\n')  # fmt: skip
    assert main(["solve", "--config", str(path), "--out", str(tmp_path / "r"), "--quiet"]) == 0
    assert _resolved(tmp_path / "r")["optim"]["optimizer"] == "adam:1000,lbfgs"
