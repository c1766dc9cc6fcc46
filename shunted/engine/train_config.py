"""The training configuration: the official recipe as defaults, a YAML file over it, ``-o`` and flags on top.

``configs/shunted_{t,s,b}_train.yaml`` hold exactly ``default_train_config(name)`` (a test checks), in
PaddleClas's section layout (Global, Arch, Loss, Optimizer, EMA, DataLoader.Train / Eval). The per-variant values
(drop path, gradient clipping) come from the registry.
"""

from __future__ import annotations

import argparse
import copy
from typing import Any

from ..config import ConfigError, get, load_config, set_value
from ..models.registry import get_variant

RECIPE = {
    "Global": {
        "epochs": 300,
        "seed": 0,
        "output_dir": None,
        "amp": None,  # bf16 | fp16 (GPU)
        "max_steps_per_epoch": None,  # smoke tests only
        "use_visualdl": False,
        "resume": False,
    },
    "Arch": {
        "name": None,
        "class_num": None,  # default: the number of classes in the training data
        "pretrained_model": None,
        "drop_path_rate": None,  # from the registry
        "drop_rate": 0.0,
        "freeze_stages": 0,
        # official (DeiT's train_one_epoch): with pretrained weights the model trains in eval mode,
        # i.e. without drop path and with frozen BatchNorm statistics
        "finetune_eval_mode": True,
    },
    "Loss": {"label_smoothing": 0.1},
    "Optimizer": {
        "name": "AdamW",
        "beta1": 0.9,
        "beta2": 0.999,
        "epsilon": 1.0e-8,
        "weight_decay": 0.05,
        "grad_clip": None,  # from the registry (global norm)
        "lr": {
            "name": "WarmupCosine",
            "base_lr": 5.0e-4,  # at a total batch of base_batch; scaled linearly
            "base_batch": 512,
            "learning_rate": None,  # an absolute peak rate overrides the scaled base_lr
            "warmup_epoch": 5,
            "warmup_start_lr": 1.0e-6,
            "eta_min": 1.0e-5,
            "by_epoch": True,  # timm/DeiT: the rate changes once per epoch
        },
    },
    "EMA": {"enabled": False, "decay": 0.99996},
    "DataLoader": {
        "Train": {
            "image_root": None,
            "cls_label_path": None,
            "batch_size": 128,  # per process; official: 128 x 8 GPUs = 1024
            "num_workers": 8,
            "repeated_aug": 3,  # DeiT's RASampler (official default); 1 = a plain shuffled epoch
            "transform": {
                "img_size": 224,
                "scale": [0.08, 1.0],
                "ratio": [0.75, 1.3333333333333333],
                "interpolation": "bicubic",
                "hflip": 0.5,
                "auto_augment": "rand-m9-mstd0.5-inc1",
                "color_jitter": 0.4,  # no effect while auto_augment is set (as in timm)
                "re_prob": 0.25,
                "re_mode": "pixel",
                "re_count": 1,
            },
            "mixup": {"mixup_alpha": 0.8, "cutmix_alpha": 1.0, "prob": 1.0, "switch_prob": 0.5},
        },
        "Eval": {
            "image_root": None,
            "cls_label_path": None,
            "batch_size": 128,
            "num_workers": 8,
            "img_size": None,  # default: the training size; resize_short = int(size / crop_pct)
        },
    },
}

# flag → config key
FLAGS = {
    "model": "Arch.name",
    "data": "DataLoader.Train.image_root",
    "labels": "DataLoader.Train.cls_label_path",
    "val_data": "DataLoader.Eval.image_root",
    "val_labels": "DataLoader.Eval.cls_label_path",
    "output": "Global.output_dir",
    "pretrained": "Arch.pretrained_model",
    "num_classes": "Arch.class_num",
    "epochs": "Global.epochs",
    "batch_size": "DataLoader.Train.batch_size",
    "lr": "Optimizer.lr.learning_rate",
    "img_size": "DataLoader.Train.transform.img_size",
    "freeze": "Arch.freeze_stages",
    "seed": "Global.seed",
    "amp": "Global.amp",
    "max_steps": "Global.max_steps_per_epoch",
    "resume": "Global.resume",
}


def default_train_config(name: str) -> dict:
    """The official recipe for variant ``name``."""
    variant = get_variant(name)
    cfg = copy.deepcopy(RECIPE)
    cfg["Arch"]["name"] = name
    cfg["Arch"]["drop_path_rate"] = variant.drop_path_rate
    cfg["Optimizer"]["grad_clip"] = variant.grad_clip
    return cfg


def merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def resolve_config(args: argparse.Namespace) -> dict:
    """Defaults of the variant ← ``-c`` file ← ``-o`` overrides ← command-line flags."""
    file_cfg = load_config(args.config) if args.config else {}
    override_cfg = load_config(None, args.override)
    name = args.model or get(override_cfg, "Arch.name", None) or get(file_cfg, "Arch.name", None)
    if not name:
        raise ConfigError("--model: which variant to train? (shunted_t, shunted_s or shunted_b)")
    try:
        cfg = default_train_config(name)
    except ValueError as exc:
        raise ConfigError(f"--model: {exc}") from None
    cfg = merge(merge(cfg, file_cfg), override_cfg)
    for flag, key in FLAGS.items():
        value = getattr(args, flag, None)
        if value is not None and value is not False:
            set_value(cfg, key, value)
    if args.workers is not None:
        set_value(cfg, "DataLoader.Train.num_workers", args.workers)
        set_value(cfg, "DataLoader.Eval.num_workers", args.workers)
    check_config(cfg)
    return cfg


def check_config(cfg: dict) -> None:
    for key in ("DataLoader.Train.image_root", "Global.output_dir"):
        if not get(cfg, key, None):
            raise ConfigError(f"{key}: required (--data / --output)")
    for key, low in (("Global.epochs", 1), ("DataLoader.Train.batch_size", 1)):
        value = get(cfg, key)
        if not isinstance(value, int) or value < low:
            raise ConfigError(f"{key}: expected an integer >= {low}, got {value!r}")
    freeze = get(cfg, "Arch.freeze_stages")
    if not isinstance(freeze, int) or not 0 <= freeze <= 4:
        raise ConfigError(f"Arch.freeze_stages (--freeze): expected 0..4, got {freeze!r}")
    mix = get(cfg, "DataLoader.Train.mixup", {}) or {}
    mixing = (mix.get("prob") or 0) > 0 and (
        (mix.get("mixup_alpha") or 0) > 0 or (mix.get("cutmix_alpha") or 0) > 0
    )
    if mixing and get(cfg, "DataLoader.Train.batch_size") % 2:
        raise ConfigError(
            "DataLoader.Train.batch_size (--batch-size): Mixup/CutMix pairs images, so it must be even "
            "(or set -o DataLoader.Train.mixup.prob=0)"
        )
    amp = get(cfg, "Global.amp")
    if amp not in (None, "bf16", "fp16"):
        raise ConfigError(f"Global.amp (--amp): expected bf16, fp16 or null, got {amp!r}")


def section(cfg: dict, key: str) -> dict[str, Any]:
    return dict(get(cfg, key, {}) or {})
