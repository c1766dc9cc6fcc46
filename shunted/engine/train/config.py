"""The training configuration: the official recipe as defaults, a YAML file over it, ``-o`` and flags on top.

The recipe and every key are defined once, in shunted/config_schema.py (``train_defaults``); the shipped
``configs/shunted_{t,s,b}_train.yaml`` are generated from it (tools/gen_configs.py; a test checks), so a wheel
without configs/ trains with the same defaults. The per-variant values (drop path, gradient clipping) come from
the registry. Unknown keys, segmentation keys and unimplemented choices in ``-c`` files and ``-o`` overrides are
errors. Layering and checks: ``shunted.config.layered_config``, shared with ``shunted seg-train``.
"""

from __future__ import annotations

import os
from typing import Any

from ...config import ConfigError, eval_settings, get, layered_config
from ...config_schema import CLS, train_defaults

# command-line flag (argparse attribute) → config key
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
    "workers": "DataLoader.Train.loader.num_workers",
}
FLAG_OF = {key: "--" + flag.replace("_", "-") for flag, key in FLAGS.items()}


def default_train_config(name: str) -> dict:
    """The official recipe for variant ``name`` (shunted/config_schema.py)."""
    return train_defaults(name)


def _defaults(name: str | None) -> dict:
    if not name:
        raise ConfigError("--model: which variant to train? (shunted_t, shunted_s or shunted_b)")
    try:
        return default_train_config(name)
    except ValueError as exc:
        raise ConfigError(f"--model: {exc}") from None


def train_config(
    path: str | os.PathLike | None = None,
    overrides: list[str] | None = None,
    flags: dict[str, Any] | None = None,
) -> dict:
    """Defaults of the variant ← ``-c`` file ← ``-o`` overrides ← ``flags`` (config key → value), checked."""
    flags = dict(flags or {})
    if flags.get("DataLoader.Train.loader.num_workers") is not None:  # --workers: both loaders
        flags["DataLoader.Eval.loader.num_workers"] = flags["DataLoader.Train.loader.num_workers"]
    cfg = layered_config(CLS, _defaults, path, overrides, flags, FLAG_OF)
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
    return cfg


def section(cfg: dict, key: str) -> dict[str, Any]:
    return dict(get(cfg, key, {}) or {})
