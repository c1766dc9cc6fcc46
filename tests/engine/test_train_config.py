"""Training config: the shipped YAML files hold the recipe; -c, -o and flags layer in that order."""

from __future__ import annotations

import pytest

from shunted.cli import build_parser
from shunted.config import ConfigError, load_config
from shunted.engine.train_config import default_train_config, resolve_config
from shunted.models.registry import VARIANTS


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_shipped_config_is_the_recipe(repo_root, name):
    cfg = load_config(repo_root / "configs" / f"{name}_train.yaml")
    assert cfg == default_train_config(name)
    assert cfg["Arch"]["drop_path_rate"] == VARIANTS[name].drop_path_rate
    assert cfg["Optimizer"]["grad_clip"] == VARIANTS[name].grad_clip


def test_recipe_values():
    cfg = default_train_config("shunted_b")
    opt = cfg["Optimizer"]
    assert (opt["epsilon"], opt["weight_decay"], opt["grad_clip"]) == (1e-8, 0.05, 1.0)
    assert opt["lr"]["base_lr"] * 128 * 8 / opt["lr"]["base_batch"] == pytest.approx(1e-3)
    assert (opt["lr"]["warmup_epoch"], opt["lr"]["warmup_start_lr"], opt["lr"]["eta_min"]) == (5, 1e-6, 1e-5)
    train = cfg["DataLoader"]["Train"]
    assert train["transform"]["auto_augment"] == "rand-m9-mstd0.5-inc1"
    assert (train["transform"]["re_prob"], train["transform"]["re_mode"]) == (0.25, "pixel")
    assert train["mixup"] == {"mixup_alpha": 0.8, "cutmix_alpha": 1.0, "prob": 1.0, "switch_prob": 0.5}
    assert cfg["Loss"]["label_smoothing"] == 0.1 and cfg["Global"]["epochs"] == 300


def _args(*argv):
    return build_parser().parse_args(["train", "--data", "d", "--output", "o", *argv])


def test_file_then_overrides_then_flags(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("Arch:\n  name: shunted_s\nGlobal:\n  epochs: 50\nOptimizer:\n  weight_decay: 0.1\n")
    cfg = resolve_config(_args("-c", str(path), "-o", "Global.epochs=20", "-o", "Optimizer.lr.eta_min=0"))
    assert cfg["Arch"]["name"] == "shunted_s" and cfg["Arch"]["drop_path_rate"] == 0.2
    assert (cfg["Global"]["epochs"], cfg["Optimizer"]["weight_decay"], cfg["Optimizer"]["lr"]["eta_min"]) == (
        20,
        0.1,
        0,
    )
    cfg = resolve_config(_args("-c", str(path), "-o", "Global.epochs=20", "--epochs", "3", "--workers", "0"))
    assert cfg["Global"]["epochs"] == 3
    assert cfg["DataLoader"]["Train"]["num_workers"] == cfg["DataLoader"]["Eval"]["num_workers"] == 0


def test_errors_name_the_flag():
    with pytest.raises(ConfigError, match="--model"):
        resolve_config(_args())
    with pytest.raises(ConfigError, match="freeze"):
        resolve_config(_args("--model", "shunted_t", "--freeze", "5"))
    with pytest.raises(ConfigError, match="must be even"):
        resolve_config(_args("--model", "shunted_t", "--batch-size", "7"))
    assert resolve_config(
        _args("--model", "shunted_t", "--batch-size", "7", "-o", "DataLoader.Train.mixup.prob=0")
    )
    with pytest.raises(ConfigError, match="unknown model"):
        resolve_config(_args("--model", "shunted_x"))
