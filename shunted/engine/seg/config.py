"""The ``shunted seg-train`` configuration: one schema, its defaults, YAML files over them, ``-o`` and flags on top.

Defaults are the paper's Semantic FPN setting (PVT's, which the Shunted paper follows): AdamW, learning rate
1e-4, weight decay 1e-4, a poly schedule stepped every iteration, power 1.0, no warm-up. Weight decay is not
applied to 1-D parameters (biases, LayerNorm / GroupNorm / BatchNorm weights), as the classification recipe
(shunted/engine/train/optim.py ``build_optimizer``) does.

The schema (``SEG_SCHEMA``) uses the classification schema's ``Key`` and value checks (shunted/config_schema.py);
a ``-c`` file or ``-o`` override with an unknown key, a wrong type, an out-of-range value or an unimplemented
choice is a ConfigError naming the key (and the nearest known one). ``configs/shunted_t_fpn_camvid.yaml`` is
written from ``camvid_defaults`` by tools/gen_configs.py. Pure Python: importing this module does not import
Paddle.
"""

from __future__ import annotations

import argparse
import copy
import difflib
from typing import Any

from ...config import ConfigError, apply_flags, get, merge, parse_override, read_yaml_mapping, set_value
from ...config_schema import Key, SchemaError, check_value
from ...models.registry import list_seg_models
from .palette import CAMVID_CLASSES

SEG_MODELS = tuple(list_seg_models())
SCHEDULES = ("Poly",)
MAX_CROP = 2048


def _prob(default: float, doc: str = "") -> Key:
    return Key(default, "float", doc, low=0.0, high=1.0)


SEG_SCHEMA: dict[str, Any] = {
    "Global": {
        "epochs": Key(40, "int", "passes over the training list (--epochs)", low=1),
        "seed": Key(0, "int", "data order, augmentation, stochastic depth, head initialisation"),
        "output_dir": Key(None, "path", "run folder (--output)"),
        "pretrained_model": Key(
            None,
            "path",
            "backbone weights: an official classification .pth/.pdparams/.safetensors (--pretrained); "
            "null: from scratch",
        ),
        "resume": Key(False, "bool", "continue from output_dir/last.pdckpt (--resume)"),
        "max_steps_per_epoch": Key(None, "int", "smoke tests only", low=1),
        "eval_interval": Key(1, "int", "validate every N epochs (the last epoch always)", low=1),
    },
    "Arch": {
        "name": Key(None, "str", " | ".join(SEG_MODELS), choices=SEG_MODELS, nullable=True),
        "num_classes": Key(None, "int", "classes (--num-classes); label values 0..K-1", low=2, high=255),
        "ignore_index": Key(
            255, "int", "label value left out of loss and metrics (--ignore-index)", low=0, high=255
        ),
        "class_names": Key(None, "names", "K names, for summary.json and the metrics"),
        "drop_path_rate": Key(
            0.1, "float", "stochastic depth of the backbone (PVT's FPN setting)", low=0.0, high=1.0
        ),
    },
    "Optimizer": {
        "name": Key("AdamW", "str", "", choices=("AdamW",)),
        "learning_rate": Key(1.0e-4, "float", "peak rate, whatever the batch (--lr)", low=0.0),
        "weight_decay": Key(1.0e-4, "float", "not applied to norms and biases", low=0.0),
        "beta1": Key(0.9, "float", "", low=0.0, high=0.999999),
        "beta2": Key(0.999, "float", "", low=0.0, high=0.999999),
        "epsilon": Key(1.0e-8, "float", "", low=0.0),
        "grad_clip": Key(None, "float", "global norm; null: none", low=0.0),
        "lr": {
            "name": Key(
                "Poly", "str", "per iteration: (lr - end_lr)(1 - it/total)^power + end_lr", choices=SCHEDULES
            ),
            "power": Key(1.0, "float", "", low=0.0),
            "end_lr": Key(0.0, "float", "", low=0.0),
            "warmup_iters": Key(0, "int", "linear warm-up (mmcv's), iterations; 0: none", low=0),
            "warmup_ratio": Key(
                1.0e-6, "float", "warm-up starts at this fraction of the poly rate", low=0.0, high=1.0
            ),
        },
    },
    "DataLoader": {
        "Train": {
            "dataset": {
                "data_root": Key(None, "path", "folder the list's paths are relative to (--data)"),
                "list": Key(
                    None, "path", "'image label' lines (PaddleSeg); as given, else under data_root (--list)"
                ),
                "reduce_zero_label": Key(
                    False,
                    "bool",
                    "labels 0 -> 255, k -> k-1 for training and validation (ADE20K; --reduce-zero-label)",
                ),
            },
            "sampler": {"batch_size": Key(8, "int", "per process (--batch-size)", low=1)},
            "loader": {"num_workers": Key(2, "int", "(--workers)", low=0)},
            "transform": {
                "crop_size": Key(
                    [512, 512], "size2", "[height, width] of the training crop (--crop-size S: S x S)"
                ),
                "base_size": Key(
                    None,
                    "size2",
                    "[width, height] the random scale is relative to (mmseg's img_scale); null: own size",
                ),
                "scale_range": Key([0.5, 2.0], "pair", "random rescale ratio range"),
                "cat_max_ratio": Key(
                    0.75, "float", "crop rejected if one class covers this much; >= 1: off", low=0.0
                ),
                "flip_prob": _prob(0.5),
                "photometric": Key(True, "bool", "mmseg's PhotoMetricDistortion"),
            },
        },
        "Eval": {
            "dataset": {
                "list": Key(None, "path", "validation 'image label' lines under data_root (--val-list)")
            },
            "sampler": {"batch_size": Key(1, "int", "images per forward (same-size images only)", low=1)},
            "loader": {"num_workers": Key(None, "int", "default: the training workers", low=0)},
            "transform": {
                "scale": Key(
                    None,
                    "float",
                    "resize factor of val images; metrics at the label's size",
                    low=0.01,
                    high=4.0,
                )
            },
        },
    },
}


def _walk(node: dict, prefix: str = ""):
    for name, value in node.items():
        key = f"{prefix}{name}"
        yield key, value
        if isinstance(value, dict):
            yield from _walk(value, key + ".")


SEG_KEYS = dict(_walk(SEG_SCHEMA))


def _check_leaf(key: str, spec: Key, value: Any) -> None:
    if spec.kind == "names":
        if value is None:
            return
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise SchemaError(f"{key}: expected a list of class names, got {value!r}")
        return
    if spec.kind == "size2":
        if value is None and spec.accepts_none:
            return
        ok = isinstance(value, list) and len(value) == 2
        if not ok or not all(
            isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_CROP for v in value
        ):
            raise SchemaError(f"{key}: expected two integers in 1..{MAX_CROP}, got {value!r}")
        return
    check_value(key, spec, value)
    if spec.kind == "pair" and not 0 < value[0] <= value[1]:
        raise SchemaError(f"{key}: expected 0 < low <= high, got {value!r}")


def _unknown(key: str) -> str:
    close = difflib.get_close_matches(key, list(SEG_KEYS), n=1, cutoff=0.75)
    return f"unknown key {key}" + (f" (did you mean {close[0]}?)" if close else "")


def check_tree(value: Any, key: str = "") -> None:
    """SchemaError unless ``value`` (the whole config, or the value at dotted ``key``) fits ``SEG_SCHEMA``."""
    spec: Any = SEG_KEYS.get(key) if key else SEG_SCHEMA
    if spec is None:
        raise SchemaError(_unknown(key))
    if isinstance(spec, Key):
        _check_leaf(key, spec, value)
        return
    if value is None:
        return
    if not isinstance(value, dict):
        raise SchemaError(f"{key or 'config'}: expected a section (mapping), got {value!r}")
    for name, sub in value.items():
        if "." in str(name):
            raise SchemaError(f"key {name!r} in {key or 'the top level'}: nest sections instead of dots")
        check_tree(sub, f"{key}.{name}" if key else str(name))


def check(cfg: Any, source: str | None = None, key: str = "") -> None:
    try:
        check_tree(cfg, key)
    except SchemaError as exc:
        raise ConfigError(f"{source}: {exc}" if source else str(exc)) from None
    except RecursionError:
        raise ConfigError(f"{source or 'config'}: nested too deeply") from None


def defaults(node: dict | None = None) -> dict:
    node = SEG_SCHEMA if node is None else node
    return {k: defaults(v) if isinstance(v, dict) else copy.deepcopy(v.default) for k, v in node.items()}


def seg_train_defaults(name: str | None = None) -> dict:
    """The Semantic FPN setting (module docstring) for model ``name``."""
    cfg = defaults()
    cfg["Arch"]["name"] = name
    return cfg


def camvid_defaults(name: str = "shunted_t_fpn") -> dict:
    """CamVid (11 classes, 480×360, ignore 11) at full resolution: crop 360×480, batch 8, 80 epochs."""
    cfg = seg_train_defaults(name)
    cfg["Global"]["epochs"] = 80
    cfg["Arch"].update(num_classes=11, ignore_index=11, class_names=list(CAMVID_CLASSES))
    train = cfg["DataLoader"]["Train"]
    train["dataset"].update(data_root="./data/camvid", list="train.txt")
    train["transform"].update(crop_size=[360, 480], base_size=[480, 360])
    cfg["DataLoader"]["Eval"]["dataset"]["list"] = "val.txt"
    return cfg


# -- YAML files ------------------------------------------------------------------------------------------------


def _scalar(value: Any) -> str:
    import yaml

    text = yaml.safe_dump(value, default_flow_style=True, width=1000).strip()
    return text[: -len("...")].strip() if text.endswith("...") else text


def render_yaml(cfg: dict, header: str) -> str:
    lines = [f"# {line}" if line else "#" for line in header.strip("\n").splitlines()]

    def walk(value: dict, node: Any, indent: int) -> None:
        for name, sub in value.items():
            spec = node.get(name) if isinstance(node, dict) else None
            doc = f"  # {spec.doc}" if isinstance(spec, Key) and spec.doc else ""
            if isinstance(sub, dict):
                lines.append(f"{' ' * indent}{name}:")
                walk(sub, spec, indent + 2)
            else:
                lines.append(f"{' ' * indent}{name}: {_scalar(sub)}{doc}")

    walk(cfg, SEG_SCHEMA, 0)
    return "\n".join(lines) + "\n"


def render_camvid_yaml(name: str = "shunted_t_fpn") -> str:
    return render_yaml(
        camvid_defaults(name),
        f"""{name} on CamVid (11 classes, 480x360): the Semantic FPN setting (AdamW 1e-4, poly, power 1.0).
  shunted seg-train -c configs/{name}_camvid.yaml --data data/camvid --output RUN --pretrained CLS_CKPT
Generated by tools/gen_configs.py from shunted/engine/seg/config.py, the schema of shunted seg-train.
--data replaces data_root; the lists are found under it. Flags and -o Section.key=value override; unknown keys
are errors.""",
    )


# -- resolution: defaults <- -c file <- -o overrides <- flags -------------------------------------------------

FLAGS = {
    "model": "Arch.name",
    "data": "DataLoader.Train.dataset.data_root",
    "list": "DataLoader.Train.dataset.list",
    "val_list": "DataLoader.Eval.dataset.list",
    "num_classes": "Arch.num_classes",
    "ignore_index": "Arch.ignore_index",
    "reduce_zero_label": "DataLoader.Train.dataset.reduce_zero_label",
    "output": "Global.output_dir",
    "pretrained": "Global.pretrained_model",
    "epochs": "Global.epochs",
    "batch_size": "DataLoader.Train.sampler.batch_size",
    "lr": "Optimizer.learning_rate",
    "seed": "Global.seed",
    "max_steps": "Global.max_steps_per_epoch",
    "resume": "Global.resume",
}
_FLAG_OF = {key: "--" + flag.replace("_", "-") for flag, key in FLAGS.items()}
_FLAG_OF["DataLoader.Train.transform.crop_size"] = "--crop-size"
_FLAG_OF["DataLoader.Train.loader.num_workers"] = "--workers"


def load_seg_config(path: str) -> dict:
    """The YAML mapping in ``path``, checked against ``SEG_SCHEMA`` (ConfigError naming the file)."""
    loaded = read_yaml_mapping(path)
    check(loaded, source=str(path))
    return loaded


def apply_overrides(cfg: dict, overrides: list[str] | None) -> None:
    for item in overrides or []:
        key, value = parse_override(item)
        what = f"-o {item!r}"
        if key not in SEG_KEYS:
            raise ConfigError(f"{what}: {_unknown(key)}")
        if isinstance(SEG_KEYS[key], dict):
            raise ConfigError(f"{what}: {key} is a section; set one of its keys")
        set_value(cfg, key, value, what=what)
        check(value, source=what, key=key)


def resolve_seg_config(args: argparse.Namespace) -> dict:
    """Defaults ← ``-c`` file ← ``-o`` overrides ← command-line flags, checked against ``SEG_SCHEMA``."""
    file_cfg = load_seg_config(args.config) if getattr(args, "config", None) else {}
    cfg = merge(seg_train_defaults(), file_cfg)
    apply_overrides(cfg, getattr(args, "override", None))
    apply_flags(cfg, args, FLAGS)
    if getattr(args, "crop_size", None) is not None:
        set_value(cfg, "DataLoader.Train.transform.crop_size", [args.crop_size, args.crop_size])
    if getattr(args, "workers", None) is not None:
        set_value(cfg, "DataLoader.Train.loader.num_workers", args.workers)
    check_config(cfg)
    return cfg


_NONE = object()


def check_config(cfg: dict) -> None:
    """The resolved config: valid, complete, and with what a run needs (model, classes, data, output)."""
    try:
        check_tree(cfg)
    except SchemaError as exc:
        key = str(exc).partition(":")[0]
        raise ConfigError(f"{exc} ({_FLAG_OF[key]})" if key in _FLAG_OF else str(exc)) from None
    missing = [k for k, spec in SEG_KEYS.items() if isinstance(spec, Key) and get(cfg, k, _NONE) is _NONE]
    if missing:
        raise ConfigError(f"{missing[0]}: missing (a section was replaced by a partial one)")
    required = (
        ("Arch.name", "--model: which model? (shunted_t_fpn, shunted_s_fpn or shunted_b_fpn)"),
        ("Arch.num_classes", "--num-classes: required (label values 0..K-1, e.g. 11 for CamVid)"),
        ("DataLoader.Train.dataset.data_root", "--data: required (the folder the list's paths start from)"),
        ("Global.output_dir", "--output: required (the run folder)"),
    )
    for key, message in required:
        if get(cfg, key, None) in (None, ""):
            raise ConfigError(message)
    k = get(cfg, "Arch.num_classes")
    check_ignore_index(get(cfg, "Arch.ignore_index"), k)
    names = get(cfg, "Arch.class_names")
    if names is not None and len(names) != k:
        raise ConfigError(f"Arch.class_names: {len(names)} names for {k} classes (--num-classes)")


def check_ignore_index(ignore: int, num_classes: int) -> None:
    """An ignored label value must not be one of the classes (that class's pixels would vanish from the loss and
    the scores): the one rule of seg-train and seg-eval."""
    if ignore < 0:
        raise ConfigError(f"--ignore-index {ignore}: must be 0 or more")
    if ignore < num_classes:
        raise ConfigError(
            f"--ignore-index {ignore}: is one of the {num_classes} classes (0..{num_classes - 1}); "
            f"use a value >= {num_classes}, e.g. 255"
        )
