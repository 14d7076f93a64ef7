import dataclasses
import json

import pytest

from digits.errors import ConfigError
from digits.train.config import PRESET_PURPOSES, PRESETS, AugmentConfig, TrainConfig, get_preset, override


def test_seed_preset_is_the_articles_recipe():
    cfg = get_preset("seed")
    assert (cfg.model, cfg.optimizer, cfg.lr, cfg.batch_size, cfg.epochs, cfg.val_split) == (
        "seed",
        "adam",
        1e-3,
        32,
        10,
        0.2,
    )
    assert cfg.eps == 1e-7  # Keras' Adam epsilon
    assert not cfg.augment.enabled


@pytest.mark.parametrize("name", list(PRESETS))
def test_presets_round_trip_through_json_dict(name):
    cfg = PRESETS[name]
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


def test_every_preset_says_what_it_is_for_in_the_train_help(capsys):
    from digits.cli import main

    assert list(PRESET_PURPOSES) == list(PRESETS)
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    for name, purpose in PRESET_PURPOSES.items():
        assert f"{name} ({purpose})" in help_text


def test_config_is_frozen_and_overrides_validate():
    cfg = get_preset("seed")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.lr = 0.1  # type: ignore[misc]
    assert override(cfg, lr=0.01, epochs=None).lr == 0.01
    with pytest.raises(ValueError, match="optimizer"):
        override(cfg, optimizer="lbfgs")
    with pytest.raises(ValueError, match="unknown training config fields"):
        override(cfg, learning_rate=0.1)
    with pytest.raises(ValueError, match="eval_precision must be one of fp32, bf16"):
        override(cfg, eval_precision="fp16")
    with pytest.raises(ValueError, match="unknown preset"):
        get_preset("turbo")


def test_choosing_on_validation_needs_a_validation_split():
    with pytest.raises(ValueError, match="never used to choose"):
        TrainConfig(val_split=0.0, select="best")
    with pytest.raises(ValueError, match="never used to choose"):
        TrainConfig(val_split=0.0, patience=2)
    TrainConfig(val_split=0.0)  # training on all 60,000 without selection is fine


def test_from_dict_rebuilds_nested_values():
    cfg = TrainConfig(augment=AugmentConfig(rotate=10.0), betas=(0.7, 0.9))
    back = TrainConfig.from_dict(dataclasses.asdict(cfg))
    assert back.augment == AugmentConfig(rotate=10.0) and back.betas == (0.7, 0.9)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("threads", -1),
        ("lr", float("inf")),
        ("lr", float("nan")),
        ("momentum", 1.5),
        ("betas", (0.9, 1.0)),
        ("betas", (0.9,)),
        ("betas", (2.0, 3.0)),
        ("eps", 0.0),
        ("weight_decay", -0.1),
        ("weight_decay", float("nan")),
        ("gamma", 0.0),
        ("step_every", 0),
        ("eval_batch_size", 0),
    ],
)
def test_every_numeric_field_is_checked_up_front_with_its_name(field, value):
    with pytest.raises(ValueError, match=f"{field} must"):
        override(get_preset("seed"), **{field: value})


def test_threads_zero_or_more_is_accepted():
    assert override(get_preset("seed"), threads=0).threads == 0
    assert override(get_preset("seed"), threads=2).threads == 2


def test_train_cli_refuses_negative_threads_before_training(capsys):
    from digits.cli import main

    assert main(["train", "--threads", "-2", "--epochs", "1"]) == 1
    assert "threads must be >= 0" in capsys.readouterr().err


def test_every_train_flag_says_what_it_does_its_default_and_choices():
    import argparse

    from digits.cli import build_parser
    from digits.train.config import CHOICES

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    train = sub.choices["train"]
    flags = {a.dest: a for a in train._actions if a.option_strings and a.dest != "help"}
    for dest, action in flags.items():
        assert action.help, f"--{dest} has no help text"
    for f in dataclasses.fields(TrainConfig):
        if f.name == "model_options":
            continue
        action = flags[f.name]
        assert "default: " in action.help, f"--{f.name} does not say its default"
        if f.name in CHOICES:
            assert tuple(action.choices) == CHOICES[f.name]
    assert "seed 0.001" in flags["lr"].help and "reader 0.005" in flags["lr"].help


# --- config files (digits train --config; digits tune writes best.json) -------------------------------------
def test_a_config_file_sets_fields_over_the_preset_and_reads_back_a_whole_config(tmp_path):
    from digits.train.config import config_from_file

    path = tmp_path / "cfg.toml"
    path.write_text('lr = 0.01\naugment = "rotate=10"\nbetas = [0.8, 0.99]\n')
    cfg = config_from_file(path, get_preset("fast"))
    assert (cfg.lr, cfg.augment.rotate, cfg.betas) == (0.01, 10.0, (0.8, 0.99))
    assert cfg.model_options == get_preset("fast").model_options  # the rest: the preset's
    whole = tmp_path / "best.json"
    whole.write_text(json.dumps(cfg.to_dict()))
    assert config_from_file(whole, get_preset("seed")) == cfg
    other = tmp_path / "other.json"
    other.write_text('{"model": "lenet5"}')  # another model starts from its own options, not the preset's
    assert config_from_file(other, get_preset("fast")).model_options == {}


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("a.toml", "lr = 'fast'\n", "training config file"),
        ("a.toml", "speed = 3\n", "unknown training config fields: speed"),
        ("a.json", "[1, 2]", "must hold a table"),
        ("a.json", "{lr: 1}", "not valid JSON"),
        ("a.toml", "augment = { spin = 3 }\n", "training config file"),
        ("a.yaml", "lr: 1\n", "must be a .toml or .json file"),
        ("missing.toml", None, "cannot read"),
    ],
)
def test_a_bad_config_file_is_a_clear_error(tmp_path, name, text, message):
    from digits.train.config import config_from_file

    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        config_from_file(path, get_preset("seed"))


def test_a_teacher_and_its_share_come_together():
    with pytest.raises(ConfigError, match="distill needs a teacher"):
        TrainConfig(distill=0.5)
    with pytest.raises(ConfigError, match="a teacher needs distill"):
        TrainConfig(teacher="runs/best")  # it would be loaded and never listened to
    assert TrainConfig(teacher="runs/best", distill=0.5).distill == 0.5


def test_clean_counts_only_beside_marks():
    assert not AugmentConfig(rotate=10, stroke=0.5, clean=0.5).marked
    assert AugmentConfig(rotate=10, lines=0.3, clean=0.5).marked
    assert AugmentConfig(noise=0.1).marked and not AugmentConfig(clean=1.0).enabled
