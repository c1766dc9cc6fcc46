"""The ``shunted det-train`` configuration: its keys (PaddleClas's sections), defaults = the paper's 1x schedule.

mmdet ``retinanet_r50_fpn_1x`` as PVT v2 (and so the Shunted paper) trains it: AdamW, learning rate 1e-4, weight
decay 1e-4 (not on norms and biases, as every task here), gradient clipping at global norm 35, a linear warm-up
over 500 iterations from 0.001 × the rate, then ×0.1 after epochs 8 and 11 of 12 (``Optimizer.lr.step_epochs``
of ``base_epochs``, scaled to ``Global.epochs``), batch 2 per process, images resized to fit 1333 × 800 and
flipped with probability 0.5. ``DET_KEYS`` maps every dotted key to its ``config_schema.Key``; a ``-c`` file or
``-o`` override with an unknown key or a bad value is a ConfigError naming it (and the nearest known key); the
flags go on top. The number and names of the classes come from the data (``label_list.txt`` or the COCO file).
Pure Python: importing this module does not import Paddle.
"""

from __future__ import annotations

import argparse
import difflib
from typing import Any

from ...config import ConfigError, apply_flags, get, parse_override, read_yaml_mapping, set_value
from ...config_schema import Key, SchemaError, check_value
from ...models.registry import DET_IMG_SCALE, list_det_models

DET_MODELS = tuple(list_det_models())

DET_KEYS: dict[str, Key] = {
    "Global.epochs": Key(12, "int", "passes over the training list (--epochs); the 1x schedule is 12", low=1),
    "Global.seed": Key(0, "int", "data order, augmentation, stochastic depth, head initialisation"),
    "Global.output_dir": Key(None, "path", "run folder (--output)"),
    "Global.pretrained_model": Key(
        None, "path", "backbone: an official classification checkpoint (--backbone-pretrained)"
    ),
    "Global.resume": Key(False, "bool", "continue from output_dir/last.pdckpt (--resume)"),
    "Global.max_steps_per_epoch": Key(None, "int", "smoke tests only", low=1),
    "Global.eval_interval": Key(1, "int", "validate every N epochs (the last epoch always)", low=1),
    "Arch.name": Key(None, "str", " | ".join(DET_MODELS), choices=(None, *DET_MODELS)),
    "Arch.drop_path_rate": Key(
        0.1, "float", "stochastic depth of the backbone (PVT v2's detection setting)", low=0.0, high=1.0
    ),
    "Arch.freeze_stages": Key(
        0, "int", "backbone stages 1..N frozen (weights and mode) (--freeze)", low=0, high=4
    ),
    "Arch.recompute": Key(False, "bool", "gradient checkpointing of the backbone blocks (--recompute)"),
    "Optimizer.name": Key("AdamW", "str", "", choices=("AdamW",)),
    "Optimizer.learning_rate": Key(1.0e-4, "float", "peak rate (--lr)", low=0.0),
    "Optimizer.weight_decay": Key(1.0e-4, "float", "not applied to norms and biases", low=0.0),
    "Optimizer.beta1": Key(0.9, "float", "", low=0.0, high=0.999999),
    "Optimizer.beta2": Key(0.999, "float", "", low=0.0, high=0.999999),
    "Optimizer.epsilon": Key(1.0e-8, "float", "", low=0.0),
    "Optimizer.grad_clip": Key(35.0, "float", "global norm; null: none", low=0.0),
    "Optimizer.lr.warmup_iters": Key(500, "int", "linear warm-up (mmcv's), iterations", low=0),
    "Optimizer.lr.warmup_ratio": Key(
        0.001, "float", "warm-up starts at this fraction of the rate", low=0.0, high=1.0
    ),
    "Optimizer.lr.step_epochs": Key([8, 11], "pair", "x gamma after these epochs of base_epochs"),
    "Optimizer.lr.base_epochs": Key(12, "int", "the schedule's length; steps scale to Global.epochs", low=1),
    "Optimizer.lr.gamma": Key(0.1, "float", "", low=0.0, high=1.0),
    "DataLoader.Train.dataset.data_root": Key(None, "path", "dataset folder (--data)"),
    "DataLoader.Train.dataset.list": Key(None, "path", "VOC id list or COCO JSON (--list)"),
    "DataLoader.Train.dataset.label_list": Key(
        None, "path", "VOC class order (--label-list); default label_list.txt"
    ),
    "DataLoader.Train.sampler.batch_size": Key(2, "int", "images per process and step (--batch-size)", low=1),
    "DataLoader.Train.loader.num_workers": Key(2, "int", "(--workers)", low=0),
    "DataLoader.Train.transform.img_scale": Key(
        list(DET_IMG_SCALE), "pair", "[W, H] keep-ratio resize bound (--img-scale)"
    ),
    "DataLoader.Train.transform.flip_prob": Key(0.5, "float", "", low=0.0, high=1.0),
    "DataLoader.Eval.dataset.list": Key(
        None, "path", "validation list or JSON (--val-list): COCO AP per epoch"
    ),
    "DataLoader.Eval.sampler.batch_size": Key(1, "int", "images per forward", low=1),
}

FLAGS = {
    "model": "Arch.name",
    "data": "DataLoader.Train.dataset.data_root",
    "list_file": "DataLoader.Train.dataset.list",
    "label_list": "DataLoader.Train.dataset.label_list",
    "val_list": "DataLoader.Eval.dataset.list",
    "output": "Global.output_dir",
    "backbone_pretrained": "Global.pretrained_model",
    "epochs": "Global.epochs",
    "batch_size": "DataLoader.Train.sampler.batch_size",
    "workers": "DataLoader.Train.loader.num_workers",
    "lr": "Optimizer.learning_rate",
    "seed": "Global.seed",
    "max_steps": "Global.max_steps_per_epoch",
    "resume": "Global.resume",
    "freeze": "Arch.freeze_stages",
    "recompute": "Arch.recompute",
}


def det_train_defaults() -> dict:
    cfg: dict = {}
    for key, spec in DET_KEYS.items():
        set_value(cfg, key, list(spec.default) if isinstance(spec.default, list) else spec.default)
    return cfg


def _leaves(node: Any, prefix: str = ""):
    for name, value in node.items():
        key = f"{prefix}{name}"
        if isinstance(value, dict) and key not in DET_KEYS:
            yield from _leaves(value, key + ".")
        else:
            yield key, value


def _check(key: str, value: Any, what: str) -> None:
    spec = DET_KEYS.get(key)
    if spec is None:
        close = difflib.get_close_matches(key, list(DET_KEYS), n=1, cutoff=0.75)
        raise ConfigError(f"{what}: unknown key {key}" + (f" (did you mean {close[0]}?)" if close else ""))
    try:
        check_value(key, spec, value)
    except SchemaError as exc:
        raise ConfigError(f"{what}: {exc}") from None


def resolve_det_config(args: argparse.Namespace) -> dict:
    """Defaults ← ``-c`` file ← ``-o`` overrides ← flags, every key and value checked."""
    cfg = det_train_defaults()
    if getattr(args, "config", None):
        for key, value in _leaves(read_yaml_mapping(args.config)):
            _check(key, value, str(args.config))
            set_value(cfg, key, value)
    for item in getattr(args, "override", None) or []:
        key, value = parse_override(item)
        _check(key, value, f"-o {item!r}")
        set_value(cfg, key, value)
    apply_flags(cfg, args, FLAGS)
    if getattr(args, "img_scale", None) is not None:
        set_value(cfg, "DataLoader.Train.transform.img_scale", list(args.img_scale))
    for key, value in _leaves(cfg):
        _check(key, value, "det-train")
    required = (
        ("Arch.name", f"--model: which model? ({', '.join(DET_MODELS)})"),
        ("DataLoader.Train.dataset.data_root", "--data: required (the dataset folder)"),
        ("DataLoader.Train.dataset.list", "--list: required (a VOC id list or a COCO JSON file)"),
        ("Global.output_dir", "--output: required (the run folder)"),
    )
    for key, message in required:
        if get(cfg, key, None) in (None, ""):
            raise ConfigError(message)
    steps = get(cfg, "Optimizer.lr.step_epochs")
    if not 0 < steps[0] <= steps[1]:
        raise ConfigError(f"Optimizer.lr.step_epochs: expected 0 < first <= second, got {steps}")
    return cfg
