"""The ``shunted det-train`` configuration: the one schema's detection keys, a YAML file over them, ``-o`` and flags
on top.

Every key is defined in shunted/config_schema.py with the keys of ``shunted train`` and ``seg-train`` (PaddleClas's
convention: ``DataLoader.Train.dataset.image_root``, ``Optimizer.lr.learning_rate``, ``Arch.freeze_stages``);
the detection defaults (``det_train_defaults``) are mmdet's ``retinanet_r50_fpn_1x`` as PVT v2 (and so the
Shunted paper) trains it: AdamW, learning rate 1e-4, weight decay 1e-4 (none on norms and biases), gradient
clipping 35, a linear warm-up over 500 iterations from 0.001 × the rate, ×0.1 after epochs 8 and 11 of 12
(``Optimizer.lr.step_epochs`` of ``base_epochs``, scaled to ``Global.epochs``), batch 2 per process, images
resized to fit 1333 × 800 and flipped with probability 0.5. The classes come from the data (``label_list.txt``
or the COCO file); ``Arch.class_num``, when given, must equal their number. Pure Python: no Paddle import.
"""

from __future__ import annotations

import os
from typing import Any

from ...config import ConfigError, get, layered_config
from ...config_schema import DET, DET_MODELS, det_train_defaults

# command-line flag (argparse attribute) → config key
FLAGS = {
    "model": "Arch.name",
    "data": "DataLoader.Train.dataset.image_root",
    "list_file": "DataLoader.Train.dataset.list",
    "label_list": "DataLoader.Train.dataset.label_list",
    "val_list": "DataLoader.Eval.dataset.list",
    "output": "Global.output_dir",
    "backbone_pretrained": "Global.pretrained_model",
    "epochs": "Global.epochs",
    "batch_size": "DataLoader.Train.sampler.batch_size",
    "img_scale": "DataLoader.Train.transform.img_scale",
    "workers": "DataLoader.Train.loader.num_workers",
    "lr": "Optimizer.lr.learning_rate",
    "seed": "Global.seed",
    "max_steps": "Global.max_steps_per_epoch",
    "resume": "Global.resume",
    "freeze": "Arch.freeze_stages",
    "recompute": "Arch.recompute",
}
FLAG_OF = {key: "--" + flag.replace("_", "-") for flag, key in FLAGS.items()}
FLAG_OF["DataLoader.Train.dataset.list"] = "--list"


def det_train_config(
    path: str | os.PathLike | None = None,
    overrides: list[str] | None = None,
    flags: dict[str, Any] | None = None,
) -> dict:
    """Defaults ← ``-c`` file ← ``-o`` overrides ← ``flags`` (config key → value), checked; then what a run
    needs (model, data, list, output) and a schedule whose steps are in order."""
    flags = dict(flags or {})
    scale = flags.get("DataLoader.Train.transform.img_scale")
    if scale is not None:
        flags["DataLoader.Train.transform.img_scale"] = [int(v) for v in scale]
    cfg = layered_config(DET, det_train_defaults, path, overrides, flags, FLAG_OF)
    required = (
        ("Arch.name", f"--model: which model? ({', '.join(DET_MODELS)})"),
        ("DataLoader.Train.dataset.image_root", "--data: required (the dataset folder)"),
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
