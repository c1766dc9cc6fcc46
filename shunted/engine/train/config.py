"""The training configuration: the official recipe as defaults, a YAML file over it, ``-o`` and flags on top.

The recipe and every key are defined once, in shunted/config_schema.py (``train_defaults``); the shipped
``configs/shunted_{t,s,b}_train.yaml`` are generated from it (tools/gen_configs.py; a test checks), so a wheel
without configs/ trains with the same defaults. The per-variant values (drop path, gradient clipping) come from
the registry. Unknown keys and unimplemented choices in ``-c`` files and ``-o`` overrides are errors.
"""

from __future__ import annotations

import argparse
from typing import Any

from ...config import (
    ConfigError,
    apply_flags,
    apply_overrides,
    check,
    eval_settings,
    get,
    load_config,
    merge,
    parse_override,
    set_value,
)
from ...config_schema import ALL_KEYS, Key, train_defaults

# flag → config key
FLAGS = {
    "model": "Arch.name",
    "data": "DataLoader.Train.dataset.image_root",
    "labels": "DataLoader.Train.dataset.cls_label_path",
    "val_data": "DataLoader.Eval.dataset.image_root",
    "val_labels": "DataLoader.Eval.dataset.cls_label_path",
    "output": "Global.output_dir",
    "pretrained": "Global.pretrained_model",
    "num_classes": "Arch.class_num",
    "epochs": "Global.epochs",
    "batch_size": "DataLoader.Train.sampler.batch_size",
    "lr": "Optimizer.lr.learning_rate",
    "img_size": "DataLoader.Train.transform.img_size",
    "freeze": "Arch.freeze_stages",
    "seed": "Global.seed",
    "amp": "Global.amp",
    "max_steps": "Global.max_steps_per_epoch",
    "resume": "Global.resume",
}


def default_train_config(name: str) -> dict:
    """The official recipe for variant ``name`` (shunted/config_schema.py)."""
    return train_defaults(name)


def resolve_config(args: argparse.Namespace) -> dict:
    """Defaults of the variant ← ``-c`` file ← ``-o`` overrides ← command-line flags, checked against the schema."""
    file_cfg = load_config(args.config) if args.config else {}
    named = [parse_override(item) for item in args.override or []]
    name = args.model or dict(named).get("Arch.name") or get(file_cfg, "Arch.name", None)
    if not name:
        raise ConfigError("--model: which variant to train? (shunted_t, shunted_s or shunted_b)")
    try:
        cfg = default_train_config(name)
    except ValueError as exc:
        raise ConfigError(f"--model: {exc}") from None
    cfg = merge(cfg, file_cfg)
    apply_overrides(cfg, args.override)
    apply_flags(cfg, args, FLAGS)
    if args.workers is not None:
        set_value(cfg, "DataLoader.Train.loader.num_workers", args.workers)
        set_value(cfg, "DataLoader.Eval.loader.num_workers", args.workers)
    check_config(cfg)
    return cfg


_NONE = object()
_FLAG_OF = {key: "--" + flag.replace("_", "-") for flag, key in FLAGS.items()}


def check_config(cfg: dict) -> None:
    try:
        check(cfg)
    except ConfigError as exc:
        key = str(exc).partition(":")[0]
        raise ConfigError(f"{exc} ({_FLAG_OF[key]})" if key in _FLAG_OF else str(exc)) from None
    missing = [
        key for key, spec in ALL_KEYS.items() if isinstance(spec, Key) and get(cfg, key, _NONE) is _NONE
    ]
    if missing:
        raise ConfigError(f"{missing[0]}: missing (a section was replaced by a partial one)")
    for key in ("DataLoader.Train.dataset.image_root", "Global.output_dir"):
        if not get(cfg, key, None):
            raise ConfigError(f"{key}: required (--data / --output)")
    mix = get(cfg, "DataLoader.Train.mixup")
    mixing = mix["prob"] > 0 and (mix["mixup_alpha"] > 0 or mix["cutmix_alpha"] > 0)
    if mixing and get(cfg, "DataLoader.Train.sampler.batch_size") % 2:
        raise ConfigError(
            "DataLoader.Train.sampler.batch_size (--batch-size): Mixup/CutMix pairs images, so it must be even "
            "(or set -o DataLoader.Train.mixup.prob=0)"
        )
    eval_settings(cfg)  # the evaluation ops, checked before any work


def section(cfg: dict, key: str) -> dict[str, Any]:
    return dict(get(cfg, key, {}) or {})
