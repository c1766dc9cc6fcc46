"""Training config: the shipped YAML files hold the recipe; -c, -o and flags layer in that order, checked."""

from __future__ import annotations

import pytest

from shunted.cli import build_parser
from shunted.commands.train import resolve_config
from shunted.config import ConfigError, eval_settings, load_config
from shunted.engine.train.config import default_train_config
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
    assert (train["sampler"]["batch_size"], train["sampler"]["repeated_aug"]) == (128, 3)
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
    loaders = cfg["DataLoader"]
    assert loaders["Train"]["loader"]["num_workers"] == loaders["Eval"]["loader"]["num_workers"] == 0


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


def test_train_and_eval_read_the_same_eval_keys(repo_root):
    """--val-data lands where shunted eval reads it; an eval config (PaddleClas layout) is a valid training -c."""
    cfg = resolve_config(
        _args("--model", "shunted_t", "--val-data", "v", "--val-labels", "v.txt", "--pretrained", "w")
    )
    assert cfg["DataLoader"]["Eval"]["dataset"]["image_root"] == "v"
    assert cfg["Global"]["pretrained_model"] == "w"
    s = eval_settings(cfg)
    assert (s["data"], s["labels"], s["weights"], s["model"]) == ("v", "v.txt", "w", "shunted_t")
    assert "img_size" not in s and "batch_size" not in s  # train: the training crop and batch
    cfg = resolve_config(_args("-c", str(repo_root / "configs" / "shunted_t.yaml"), "--batch-size", "8"))
    s = eval_settings(cfg)
    assert (s["data"], s["img_size"], s["resize_short"], s["batch_size"]) == (
        "./dataset/ILSVRC2012/val/",
        224,
        256,
        64,
    )
    # the training flags and recipe still fill the rest
    assert cfg["DataLoader"]["Train"]["sampler"]["batch_size"] == 8 and cfg["Global"]["epochs"] == 300


def test_overrides_apply_on_top_of_the_file(tmp_path):
    """-o list indices reach the lists of the file (not a dict beside them)."""
    path = tmp_path / "c.yaml"
    path.write_text(
        "DataLoader:\n  Eval:\n    dataset:\n      transform_ops:\n        - CropImage: {size: 224}\n"
    )
    cfg = resolve_config(
        _args(
            "--model",
            "shunted_t",
            "-c",
            str(path),
            "-o",
            "DataLoader.Eval.dataset.transform_ops.0.CropImage.size=64",
        )
    )
    assert cfg["DataLoader"]["Eval"]["dataset"]["transform_ops"] == [{"CropImage": {"size": 64}}]
    assert eval_settings(cfg)["img_size"] == 64


@pytest.mark.parametrize(
    "argv, message",
    [
        (["-o", "Optimizer.name=SGD"], "Optimizer.name: 'SGD' is not implemented; choose AdamW"),
        (
            ["-o", "Optimizer.lr.name=Cosine"],
            "Optimizer.lr.name: 'Cosine' is not implemented; choose WarmupCosine",
        ),
        (["-o", "Global.epoch=3"], r"unknown key Global.epoch \(did you mean Global.epochs\?\)"),
        (["-o", "DataLoader.Train.batch_size=8"], "moved to DataLoader.Train.sampler.batch_size"),
        (["-o", "DataLoader.Eval.img_size=64"], "moved to DataLoader.Eval.dataset.transform_ops"),
        (["-o", "Optimizer.lr={name: WarmupCosine}"], "Optimizer.lr.base_lr: missing"),
        (["--freeze", "5"], r"^Arch.freeze_stages: 5 out of range 0..4 \(--freeze\)$"),
        (["-o", "DataLoader.Eval.dataset.transform_ops=[{CropImag: {size: 64}}]"], "did you mean CropImage"),
    ],
)
def test_unknown_keys_and_choices_are_errors(tmp_path, argv, message):
    with pytest.raises(ConfigError, match=message):
        resolve_config(_args("--model", "shunted_t", *argv))
    if argv[0] == "-o" and "missing" not in message:  # the same key in a -c file (a partial section merges)
        key, _, value = argv[1].partition("=")
        path = tmp_path / "c.yaml"
        *sections, leaf = key.split(".")
        path.write_text(
            "".join(f"{'  ' * i}{s}:\n" for i, s in enumerate(sections))
            + f"{'  ' * len(sections)}{leaf}: {value}\n"
        )
        with pytest.raises(ConfigError, match=message):
            resolve_config(_args("--model", "shunted_t", "-c", str(path)))


def test_schema_sections_are_the_parameters_the_trainer_passes_them_to():
    """DataLoader.Train.transform / mixup are splatted into TrainTransform / Mixup: same names, no more, no less."""
    import dataclasses

    from shunted.config_schema import CLS, defaults
    from shunted.data.mixup import Mixup
    from shunted.data.train_transforms import TrainTransform

    train = defaults(CLS)["DataLoader"]["Train"]  # the keys classification reads
    fields = {f.name for f in dataclasses.fields(TrainTransform)} - {"mean", "std"}  # mean/std: the model's
    assert set(train["transform"]) == fields
    assert set(train["mixup"]) == {f.name for f in dataclasses.fields(Mixup)} - {
        "num_classes",
        "label_smoothing",
    }
