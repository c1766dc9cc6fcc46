"""YAML configs: loading, ``-o`` overrides, and the bundled PaddleClas-style configs agreeing with the registry."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from shunted import config_schema
from shunted.cli import main
from shunted.config import ConfigError, eval_settings, get, load_config, parse_override, transform_ops
from shunted.models import get_pretrained_cfg, list_models

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_override_values_are_parsed_as_yaml():
    assert parse_override("a.b=10") == ("a.b", 10)
    assert parse_override("a=1e-3") == ("a", 1e-3)
    assert parse_override("a=[1, 5]") == ("a", [1, 5])
    assert parse_override("a=null") == ("a", None)
    assert parse_override("a=True") == ("a", True)
    assert parse_override("a=./x/y.pth") == ("a", "./x/y.pth")
    assert parse_override("a=k=v") == ("a", "k=v")
    assert parse_override("a=") == ("a", "")
    for bad in ("novalue", "=3", "a..b=1", ".a=1"):
        with pytest.raises(ConfigError, match="expected key.path=value"):
            parse_override(bad)


def test_overrides_set_nested_keys_and_list_items():
    overrides = [
        "Arch.class_num=2",
        "Optimizer.lr.eta_min=0",
        "DataLoader.Eval.dataset.transform_ops.2.CropImage.size=64",
    ]
    cfg = load_config(CONFIGS / "shunted_s.yaml", overrides)
    assert get(cfg, "Arch.class_num") == 2 and get(cfg, "Optimizer.lr.eta_min") == 0
    assert get(cfg, "DataLoader.Eval.dataset.transform_ops.2.CropImage.size") == 64
    assert get(cfg, "Global.epochs", None) is None
    with pytest.raises(ConfigError, match="no 'Global.epochs'"):
        get(cfg, "Global.epochs")
    with pytest.raises(ConfigError, match="is a list"):
        load_config(CONFIGS / "shunted_s.yaml", ["DataLoader.Eval.dataset.transform_ops.9.CropImage.size=1"])
    with pytest.raises(ConfigError, match="Arch.class_num is a value, not a section"):
        load_config(CONFIGS / "shunted_s.yaml", ["Arch.class_num.c=1"])
    assert load_config(None, ["Global.epochs=1"]) == {"Global": {"epochs": 1}}


def test_bad_files_are_named(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_config(bad)
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a YAML mapping"):
        load_config(bad)
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / "missing.yaml")


@pytest.mark.parametrize("name", list_models())
def test_bundled_configs_agree_with_the_registry(name):
    cfg = load_config(CONFIGS / f"{name}.yaml")
    pre = get_pretrained_cfg(name)
    s = eval_settings(cfg)
    assert s["model"] == name and get(cfg, "Arch.class_num") == pre.num_classes
    assert s["img_size"] == pre.input_size[-1] and "weights" not in s  # Global.pretrained_model: null
    assert s["resize_short"] == int(pre.input_size[-1] / pre.crop_pct)
    assert s["interpolation"] == pre.interpolation
    assert s["mean"] == tuple(pre.mean) and s["std"] == tuple(pre.std)
    ops = transform_ops(cfg)
    assert list(ops) == ["DecodeImage", "ResizeImage", "CropImage", "NormalizeImage", "ToCHWImage"]
    assert ops["DecodeImage"]["backend"] == ops["ResizeImage"]["backend"] == "pil"
    assert (s["batch_size"], s["workers"]) == (64, 2)


def test_eval_settings_refuse_what_the_official_pipeline_does_not_do():
    base = CONFIGS / "shunted_s.yaml"
    for override, message in (
        ("DataLoader.Eval.dataset.transform_ops.1.ResizeImage.backend=cv2", "ResizeImage.backend"),
        ("DataLoader.Eval.dataset.transform_ops.0.DecodeImage.backend=cv2", "DecodeImage.backend"),
        ("DataLoader.Eval.dataset.transform_ops.1.ResizeImage.size=[224,224]", "only resize_short"),
        ("DataLoader.Eval.dataset.transform_ops.3.NormalizeImage.scale=1.0", "scales by 1/255"),
        ("DataLoader.Eval.dataset.transform_ops.4={RandFlipImage: {}}", "RandFlipImage not supported"),
        ("DataLoader.Eval.dataset.transform_ops.4={ToCHWImg: null}", r"did you mean ToCHWImage\?"),
        (
            "DataLoader.Eval.dataset.transform_ops.1.ResizeImage.resize_shrt=9",
            r"transform_ops.1.ResizeImage.resize_shrt: unknown parameter \(did you mean ResizeImage.resize_short\?\)",
        ),
        ("DataLoader.Eval.dataset.transform_ops.1.ResizeImage.interpolation=nearest", "choose 'bicubic'"),
        ("DataLoader.Eval.dataset.transform_ops.0.DecodeImage.to_rgb=false", "DecodeImage.to_rgb"),
        ("DataLoader.Eval.dataset.transform_ops.2.CropImage.size=0", "CropImage.size: expected a positive"),
    ):
        with pytest.raises(ConfigError, match=message):
            eval_settings(load_config(base, [override]))
    s = eval_settings(
        load_config(base, ["DataLoader.Eval.dataset.transform_ops.1.ResizeImage.resize_short=73"])
    )
    assert s["resize_short"] == 73


def test_shipped_configs_are_generated_from_the_schema():
    """configs/*.yaml are exactly tools/gen_configs.py's output, so the files cannot drift from the schema."""
    # the segmentation config (*_fpn_camvid.yaml, the same schema's segmentation keys): tests/engine/test_seg_train.py
    names = sorted(path.name for path in CONFIGS.glob("*.yaml") if "_fpn_" not in path.name)
    assert names == sorted([f"{n}.yaml" for n in list_models()] + [f"{n}_train.yaml" for n in list_models()])
    for name in list_models():
        assert (CONFIGS / f"{name}.yaml").read_text() == config_schema.render_eval_yaml(name)
        assert (CONFIGS / f"{name}_train.yaml").read_text() == config_schema.render_train_yaml(name)
        assert load_config(CONFIGS / f"{name}.yaml") == config_schema.eval_defaults(name)
        assert load_config(CONFIGS / f"{name}_train.yaml") == config_schema.train_defaults(name)


def test_schema_choices_match_the_code():
    from shunted.data.transforms import INTERPOLATIONS

    assert set(config_schema.INTERPOLATIONS) == set(INTERPOLATIONS)
    from shunted.models.registry import list_seg_models

    assert config_schema.SEG_MODELS == tuple(list_seg_models())


def test_unknown_keys_in_a_file_are_errors_naming_the_key(tmp_path):
    path = tmp_path / "c.yaml"
    for text, message in (
        (
            "Optimizer:\n  lr:\n    warmup_epochs: 3\n",
            r"unknown key Optimizer.lr.warmup_epochs \(did you mean Optimizer.lr.warmup_epoch\?\)",
        ),
        ("Global:\n  epoch: 3\n", r"unknown key Global.epoch \(did you mean Global.epochs\?\)"),
        ("Globl:\n  epochs: 3\n", r"unknown key Globl \(did you mean Global\?\)"),
        ("Metric:\n  Eval: []\n", r"unknown key Metric$"),
        (
            "DataLoader:\n  Eval:\n    image_root: val\n",
            "DataLoader.Eval.image_root: this key moved to DataLoader.Eval.dataset.image_root",
        ),
        (
            "Arch:\n  pretrained_model: w.pth\n",
            "Arch.pretrained_model: this key moved to Global.pretrained_model",
        ),
        ("Optimizer:\n  name: SGD\n", r"Optimizer.name: 'SGD' is not implemented; choose AdamW"),
        (
            "Optimizer:\n  lr:\n    name: Cosine\n",
            r"Optimizer.lr.name: 'Cosine' is not implemented; choose WarmupCosine",
        ),
        ("Global:\n  epochs: ten\n", "Global.epochs: expected an integer, got 'ten'"),
        ("Global: 3\n", "Global: expected a section"),
        ('"Global.epochs": 3\n', "key 'Global.epochs' in the top level: nest sections instead of dots"),
    ):
        path.write_text(text)
        with pytest.raises(ConfigError, match=f"^{tmp_path / 'c.yaml'}: {message}"):
            load_config(path)


@pytest.mark.parametrize(
    "override, message",
    [
        ("Global.epoch=3", r"unknown key Global.epoch \(did you mean Global.epochs\?\)"),
        ("DataLoader.Eval.dataset.image_rot=v", r"did you mean DataLoader.Eval.dataset.image_root\?"),
        ("DataLoader.Eval.image_root=v", "moved to DataLoader.Eval.dataset.image_root"),
        ("Optimizer.name=SGD", "Optimizer.name: 'SGD' is not implemented; choose AdamW"),
        ("Optimizer.lr.name=Cosine", "Optimizer.lr.name: 'Cosine' is not implemented; choose WarmupCosine"),
        ("Optimizer.lr={name: Step}", "Optimizer.lr.name: 'Step' is not implemented"),
        ("Global.amp=fp8", "Global.amp: 'fp8' is not implemented; choose null, bf16, fp16"),
        ("DataLoader.Train.transform.interpolation=nearest", "choose bicubic, bilinear"),
        ("Global.use_visualdl=maybe", "expected true or false"),
        ("DataLoader.Train.mixup.prob=1.5", "out of range 0.0..1.0"),
        ("DataLoader.Train.transform.scale=[0.5]", "expected a list of two numbers"),
        ("DataLoader.Train.transform.scale.2=1", "is a list|expected a list"),
        ("Optimizer.weight_decay=.nan", "expected a finite number"),
    ],
)
def test_bad_overrides_are_errors_naming_the_override(override, message):
    with pytest.raises(ConfigError, match=f"^-o {re.escape(repr(override))}: .*{message}"):
        load_config(None, [override])
    with pytest.raises(ConfigError, match=message):  # also on top of a file
        load_config(CONFIGS / "shunted_t_train.yaml", [override])


@pytest.mark.parametrize("command", ["eval", "train"])
def test_cli_rejects_a_typo_in_one_line(command, capsys):
    argv = [command, "--model", "shunted_t", "--data", "d", "-o", "Optimizer.lr.eta_mn=0"]
    argv += ["--weights", "w.pth"] if command == "eval" else ["--output", "o"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"shunted {command}: error: -o 'Optimizer.lr.eta_mn=0': unknown key Optimizer.lr.eta_mn "
        "(did you mean Optimizer.lr.eta_min?)"
    )


def test_one_schema_for_both_tasks():
    """seg-train's keys are the same convention as train's; seg-eval's keys (-c/-o) load through the same
    function; a key of the other task is refused in a training config."""
    from shunted.config_schema import CLS, SEG, task_keys
    from shunted.engine.seg.config import seg_eval_config

    cls, seg = task_keys(CLS), task_keys(SEG)
    for key in ("Arch.class_num", "Optimizer.lr.learning_rate", "DataLoader.Train.dataset.image_root"):
        assert key in cls and key in seg
    assert "Arch.ignore_index" in seg and "Arch.ignore_index" not in cls
    cfg = seg_eval_config(overrides=["Infer.mode=slide", "Infer.crop_size=[64,96]", "Arch.ignore_index=11"])
    assert cfg["Infer"] == {"mode": "slide", "crop_size": [64, 96], "stride": None}
    assert cfg["DataLoader"]["Eval"]["transform"]["scale"] is None
    with pytest.raises(
        ConfigError, match=r"Infer.mode: 'tiles' is not implemented; choose auto, whole, slide"
    ):
        seg_eval_config(overrides=["Infer.mode=tiles"])
    with pytest.raises(ConfigError, match=r"Arch.num_classes: this key moved to Arch.class_num"):
        seg_eval_config(overrides=["Arch.num_classes=11"])
    with pytest.raises(ConfigError, match=r"--ignore-index 3: is one of the 11 classes"):
        seg_eval_config(overrides=["Arch.class_num=11", "Arch.ignore_index=3"])
