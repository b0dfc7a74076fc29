import pytest

from pinnopt.config import Config, ConfigError, dump_config, load_config, make_config


def test_defaults_are_a_valid_run():
    cfg = make_config({})
    assert cfg.problem.name == "poisson2d"
    assert cfg.training.dtype == "float64"
    assert cfg.optim.optimizer == "adam:1000,lbfgs"
    assert str(cfg.out_dir()) == "runs/poisson2d"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"problem": {"name": "nope"}}, "problem.name: unknown problem 'nope'; allowed: burgers1d"),
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
        ({"extra": {}}, "extra: unknown key; allowed: problem, model, optim, training, output"),
        ({"problem": {"points": {"pde": 0}}}, "problem.points: Value error|must be >= 1"),
    ],
)
def test_bad_values_name_the_field(data, message):
    with pytest.raises(ConfigError, match=message):
        make_config(data)


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
