import pytest

from pinnopt.config import Config, ConfigError, dump_config, load_config, make_config


def test_defaults_are_a_valid_run():
    cfg = make_config({})
    assert cfg.problem.name == "poisson2d"
    assert cfg.training.dtype == "float64"
    assert cfg.optim.optimizer == "adam:1000,lbfgs"
    assert cfg.training.threads == 1  # measured: benchmarks/threads.py, docs/configuration.md
    with pytest.raises(ConfigError, match="output.out: no run directory chosen yet"):
        cfg.out_dir()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"problem": {"name": "nope"}}, "problem.name: unknown problem 'nope'; allowed: allen_"),
        ({"model": {"kind": "cnn"}}, "model.kind: unknown model 'cnn'; allowed: chebykan, mlp"),
        ({"model": {"width": "wide"}}, "model.width: Input should be a valid integer"),
        ({"model": {"activation": "relu6"}}, "model.activation: unknown activation 'relu6'"),
        ({"training": {"steps": -1}}, "training.steps: Input should be greater than or equal to 0"),
        ({"training": {"dtype": "float16"}}, "training.dtype: Input should be 'float64' or"),
        ({"training": {"device": "tpu"}}, "training.device: unknown device 'tpu'"),
        ({"optim": {"optimizer": "adam:10,zzz"}}, "optim.optimizer: unknown optimizer 'zzz'"),
        ({"optim": {"scheduler": "linear"}}, "optim.scheduler: unknown scheduler 'linear'"),
        ({"optim": {"lr": 0}}, "optim.lr: Input should be greater than 0"),
        ({"model": {"colour": 1}}, "model.colour: unknown key; allowed: kind, width, depth"),
        (
            {"extra": {}},
            "extra: unknown key; allowed: problem, model, optim, training, sampling, weighting",
        ),
        ({"problem": {"points": {"pde": 0}}}, "problem.points: Value error|must be >= 1"),
    ],
)
def test_bad_values_name_the_field(data, message):
    with pytest.raises(ConfigError, match=message):
        make_config(data)


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (
            '[training]\nsteps = "1000"',
            "training.steps: Input should be a valid integer, got '1000'",
        ),
        ('[optim]\nlr = "1e-3"', "optim.lr: Input should be a valid number, got '1e-3' \\(str\\)"),
        ('[training]\nthreads = "1"', "training.threads: Input should be a valid integer, got '1'"),
        ("[training]\nthreads = true", "training.threads: .* got True \\(bool\\)"),
        ("[training]\nsteps = 10.0", "training.steps: Input should be a valid integer, got 10.0"),
        ('[problem]\npoints = { pde = "10" }', "problem.points.pde: Input should be a valid int"),
        ("[output]\nquiet = 1", "output.quiet: Input should be a valid boolean, got 1"),
    ],
)
def test_toml_values_of_the_wrong_type_are_refused_not_converted(tmp_path, toml, message):
    path = tmp_path / "c.toml"
    path.write_text(toml + "\n")
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_numbers_keep_their_meaning_across_int_and_float():
    cfg = make_config({"optim": {"lr": 1}, "training": {"time_limit": 60}})
    assert cfg.optim.lr == 1.0 and cfg.training.time_limit == 60.0


def test_toml_round_trip(tmp_path):
    options = {"lbfgs": {"history_size": 10}}
    cfg = make_config({"problem": {"name": "heat1d", "points": {"pde": 50}},
                       "optim": {"lr": 0.01, "options": options}})  # fmt: skip
    path = tmp_path / "c.toml"
    path.write_text(dump_config(cfg))
    again = load_config(path)
    assert again == cfg
    assert isinstance(again, Config)


def test_overrides_apply_on_top_of_file(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[problem]\nname = "wave1d"\n[training]\nsteps = 10\n')
    cfg = load_config(path, {"training": {"steps": 20}})
    assert cfg.problem.name == "wave1d" and cfg.training.steps == 20


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "none.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[problem\nname=")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_config(bad)
