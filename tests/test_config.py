"""YAML configs: loading, ``-o`` overrides, and the bundled PaddleClas-style configs agreeing with the registry."""

from __future__ import annotations

from pathlib import Path

import pytest

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


def test_overrides_set_nested_keys_and_list_items(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("A:\n  b: 1\n  ops:\n    - X: {k: 1}\n    - Y:\n")
    cfg = load_config(path, ["A.b=2", "A.new.deep=x", "A.ops.0.X.k=5", "A.ops.1.Y=7", "B=[1,2]"])
    assert cfg == {"A": {"b": 2, "new": {"deep": "x"}, "ops": [{"X": {"k": 5}}, {"Y": 7}]}, "B": [1, 2]}
    assert get(cfg, "A.ops.0.X.k") == 5 and get(cfg, "A.nope", None) is None
    with pytest.raises(ConfigError, match="no 'A.nope'"):
        get(cfg, "A.nope")
    with pytest.raises(ConfigError, match="is a list"):
        load_config(path, ["A.ops.9.X=1"])
    with pytest.raises(ConfigError, match="A.b is a int, not a section"):
        load_config(path, ["A.b.c=1"])
    assert load_config(None, ["x=1"]) == {"x": 1}


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
    assert s["img_size"] == pre.input_size[-1] and get(cfg, "Global.image_shape") == list(pre.input_size)
    assert s["resize_short"] == int(pre.input_size[-1] / pre.crop_pct)
    assert s["interpolation"] == pre.interpolation
    assert s["mean"] == tuple(pre.mean) and s["std"] == tuple(pre.std)
    ops = transform_ops(cfg)
    assert list(ops) == ["DecodeImage", "ResizeImage", "CropImage", "NormalizeImage", "ToCHWImage"]
    assert ops["DecodeImage"]["backend"] == ops["ResizeImage"]["backend"] == "pil"
    assert get(cfg, "DataLoader.Eval.dataset.name") == "ImageNetDataset"
    assert get(cfg, "Metric.Eval") == [{"TopkAcc": {"topk": [1, 5]}}]


def test_eval_settings_refuse_what_the_official_pipeline_does_not_do():
    base = CONFIGS / "shunted_s.yaml"
    for override, message in (
        ("DataLoader.Eval.dataset.transform_ops.1.ResizeImage.backend=cv2", "ResizeImage.backend"),
        ("DataLoader.Eval.dataset.transform_ops.0.DecodeImage.backend=cv2", "DecodeImage.backend"),
        ("DataLoader.Eval.dataset.transform_ops.1.ResizeImage.size=[224,224]", "only resize_short"),
        ("DataLoader.Eval.dataset.transform_ops.3.NormalizeImage.scale=1.0", "scales by 1/255"),
        ("DataLoader.Eval.dataset.transform_ops.4={RandFlipImage: {}}", "RandFlipImage not supported"),
    ):
        with pytest.raises(ConfigError, match=message):
            eval_settings(load_config(base, [override]))
    s = eval_settings(
        load_config(base, ["DataLoader.Eval.dataset.transform_ops.1.ResizeImage.resize_short=73"])
    )
    assert s["resize_short"] == 73
