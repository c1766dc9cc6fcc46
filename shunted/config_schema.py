"""The one config schema: every key ``shunted train``, ``seg-train``, ``eval`` and ``seg-eval`` read, its
default, type and doc.

Sections follow PaddleClas's layout (Global, Arch, Loss, Optimizer, EMA, DataLoader.Train / Eval, with the data
keys of both loaders under ``dataset`` / ``sampler`` / ``loader``) for every task: ``Arch.class_num``,
``Optimizer.lr.learning_rate``, ``DataLoader.*.dataset.image_root`` mean the same thing for classification and
segmentation. A key used by one task only says so (``Key.task``); a key whose default, range or choices differ
between tasks says how (``Key.per_task``); ``task_keys(task)`` / ``task_defaults(task, name)`` give one task's
view, and a resolved training config holds exactly its task's keys. ``shunted.config`` checks every ``-c`` file
and ``-o`` override against it: an unknown key is an error naming the key (and the nearest known one), values are
checked for type, range and the implemented choices. ``train_defaults(name)`` is the official recipe (the default
of ``shunted train``); ``configs/shunted_{t,s,b}_train.yaml`` and ``configs/shunted_{t,s,b}.yaml`` are written by
``render_train_yaml`` / ``render_eval_yaml`` (``python tools/gen_configs.py``; a test checks the
shipped files are exactly that output).
"""

from __future__ import annotations

import copy
import difflib
import math
from dataclasses import dataclass, replace
from typing import Any

# pure data: kept in step with shunted/data/transforms.py INTERPOLATIONS (a test checks)
INTERPOLATIONS = ("bicubic", "bilinear")
# the same bounds as the command line's (shunted/commands/common.py, where they are explained; a test checks)
STRIDE = 32
MAX_IMAGE_SIZE = 1024
MAX_RESIZE_SHORT = 4 * MAX_IMAGE_SIZE
LR_SCHEDULES = ("WarmupCosine", "Poly")  # detection adds "Step" in its own view (per_task)
OPTIMIZERS = ("AdamW",)
CLS, SEG, DET = "classification", "segmentation", "detection"
# pure data: kept in step with shunted/models/registry.py list_seg_models / list_det_models (a test checks)
SEG_MODELS = ("shunted_t_fpn", "shunted_s_fpn", "shunted_b_fpn")
DET_MODELS = ("shunted_t_retinanet", "shunted_s_retinanet", "shunted_b_retinanet")
MAX_CROP = 2048


@dataclass(frozen=True)
class Key:
    """One leaf: its default, kind (int, float, bool, str, path, pair, ops, names, size2) and what it means.

    ``task``: the task that reads it, or a tuple of the tasks that do (None: every task). ``per_task``: task →
    the fields that differ for that task (default, doc, choices, bounds)."""

    default: Any
    kind: str
    doc: str = ""
    choices: tuple | None = None
    low: float | None = None
    high: float | None = None
    nullable: bool | None = None  # default: the default is None
    multiple: int | None = None  # an int key: must be a multiple of this
    task: str | tuple[str, ...] | None = None
    per_task: Any = None  # {task: {field: value}}

    def read_by(self, task: str) -> bool:
        return self.task is None or task == self.task or (isinstance(self.task, tuple) and task in self.task)

    @property
    def accepts_none(self) -> bool:
        return self.default is None if self.nullable is None else self.nullable

    def of(self, task: str | None) -> Key:
        """This key as ``task`` sees it."""
        changes = (self.per_task or {}).get(task) if task else None
        return replace(self, **changes) if changes else self


def _prob(default: float, doc: str = "", **kw) -> Key:
    return Key(default, "float", doc, low=0.0, high=1.0, **kw)


def _cls(*args, **kw) -> Key:
    return Key(*args, task=CLS, **kw)


def _seg(*args, **kw) -> Key:
    return Key(*args, task=SEG, **kw)


def _det(*args, **kw) -> Key:
    return Key(*args, task=DET, **kw)


SCHEMA: dict[str, Any] = {
    "Global": {
        "epochs": Key(
            300,
            "int",
            "",
            low=1,
            per_task={
                SEG: {"default": 40, "doc": "passes over the training list"},
                DET: {"default": 12, "doc": "passes over the training list (the 1x schedule: 12)"},
            },
        ),
        "seed": Key(0, "int"),
        "output_dir": Key(None, "path", "run folder (--output)"),
        "pretrained_model": Key(
            None,
            "path",
            "weights: official .pth, .pdparams or .safetensors (train: the initial weights)",
            per_task={
                SEG: {"doc": "backbone weights: a classification .pth/.pdparams/.safetensors; null: scratch"},
                DET: {"doc": "backbone weights: a classification .pth/.pdparams/.safetensors; null: scratch"},
            },
        ),
        "amp": Key(None, "str", "bf16 | fp16 (mixed precision, GPU)", choices=(None, "bf16", "fp16")),
        "max_steps_per_epoch": Key(None, "int", "smoke tests only", low=1),
        "eval_interval": Key(1, "int", "validate every N epochs (the last epoch always)", low=1),
        "use_visualdl": Key(False, "bool"),
        "resume": Key(False, "bool", "continue from output_dir/last.pdckpt (--resume)"),
    },
    "Arch": {
        "name": Key(
            None,
            "str",
            "shunted_t | shunted_s | shunted_b",
            per_task={
                SEG: {"doc": " | ".join(SEG_MODELS), "choices": SEG_MODELS, "nullable": True},
                DET: {"doc": " | ".join(DET_MODELS), "choices": DET_MODELS, "nullable": True},
            },
        ),
        "class_num": Key(
            None,
            "int",
            "default: the checkpoint's (eval), the data's (train)",
            low=1,
            per_task={SEG: {"doc": "classes (--num-classes); label values 0..K-1", "low": 2, "high": 255}},
        ),
        "ignore_index": _seg(
            255, "int", "label value left out of loss and metrics (--ignore-index)", low=0, high=255
        ),
        "class_names": _seg(None, "names", "K names, for summary.json and the metrics"),
        "drop_path_rate": Key(
            None,
            "float",
            "from shunted/models/registry.py",
            low=0.0,
            high=1.0,
            per_task={
                SEG: {"default": 0.1, "doc": "stochastic depth of the backbone (PVT's FPN setting)"},
                DET: {"default": 0.1, "doc": "stochastic depth of the backbone (PVT v2's detection setting)"},
            },
        ),
        "drop_rate": _cls(0.0, "float", "", low=0.0, high=1.0),
        "freeze_stages": Key(
            0, "int", "freeze the first N stages (--freeze)", low=0, high=4, task=(CLS, DET)
        ),
        "recompute": _det(False, "bool", "gradient checkpointing of the backbone blocks (--recompute)"),
        "finetune_eval_mode": _cls(
            True, "bool", "official: with pretrained weights the model trains in eval mode (no drop path)"
        ),
    },
    "Loss": {"label_smoothing": _cls(0.1, "float", "", low=0.0, high=0.999)},
    "Optimizer": {
        "name": Key("AdamW", "str", "", choices=OPTIMIZERS),
        "beta1": Key(0.9, "float", "", low=0.0, high=0.999999),
        "beta2": Key(0.999, "float", "", low=0.0, high=0.999999),
        "epsilon": Key(1.0e-8, "float", "", low=0.0),
        "weight_decay": Key(
            0.05,
            "float",
            "not applied to norms and biases",
            low=0.0,
            per_task={SEG: {"default": 1.0e-4}, DET: {"default": 1.0e-4}},
        ),
        "grad_clip": Key(
            None,
            "float",
            "global norm; from shunted/models/registry.py",
            low=0.0,
            per_task={
                SEG: {"doc": "global norm; null: none"},
                DET: {"default": 35.0, "doc": "global norm; null: none"},
            },
        ),
        "lr": {
            "name": Key(
                "WarmupCosine",
                "str",
                "",
                choices=LR_SCHEDULES,
                per_task={
                    CLS: {"choices": ("WarmupCosine",)},
                    SEG: {
                        "default": "Poly",
                        "choices": ("Poly",),
                        "doc": "per iteration: (lr - end_lr)(1 - it/total)^power + end_lr",
                    },
                    DET: {
                        "default": "Step",
                        "choices": ("Step",),
                        "doc": "x gamma after step_epochs of base_epochs (scaled to Global.epochs)",
                    },
                },
            ),
            "base_lr": _cls(5.0e-4, "float", "at a total batch of base_batch; scaled linearly", low=0.0),
            "base_batch": _cls(512, "int", "", low=1),
            "learning_rate": Key(
                None,
                "float",
                "an absolute peak rate instead of the scaled base_lr",
                low=0.0,
                per_task={
                    SEG: {
                        "default": 1.0e-4,
                        "doc": "peak rate, whatever the batch (--lr)",
                        "nullable": False,
                    },
                    DET: {
                        "default": 1.0e-4,
                        "doc": "peak rate, whatever the batch (--lr)",
                        "nullable": False,
                    },
                },
            ),
            "warmup_epoch": _cls(5, "float", "", low=0.0),
            "warmup_start_lr": _cls(1.0e-6, "float", "", low=0.0),
            "eta_min": _cls(1.0e-5, "float", "", low=0.0),
            "by_epoch": _cls(True, "bool", "timm/DeiT: the rate changes once per epoch"),
            "power": _seg(1.0, "float", "", low=0.0),
            "end_lr": _seg(0.0, "float", "", low=0.0),
            "warmup_iters": Key(
                0,
                "int",
                "linear warm-up (mmcv's), iterations; 0: none",
                low=0,
                task=(SEG, DET),
                per_task={DET: {"default": 500}},
            ),
            "warmup_ratio": Key(
                1.0e-6,
                "float",
                "warm-up starts at this fraction of the poly rate",
                low=0.0,
                high=1.0,
                task=(SEG, DET),
                per_task={DET: {"default": 0.001, "doc": "warm-up starts at this fraction of the rate"}},
            ),
            "step_epochs": _det([8, 11], "pair", "x gamma after these epochs of base_epochs"),
            "base_epochs": _det(12, "int", "the schedule's length; the steps scale to Global.epochs", low=1),
            "gamma": _det(0.1, "float", "", low=0.0, high=1.0),
        },
    },
    "EMA": {"enabled": Key(False, "bool"), "decay": Key(0.99996, "float", "", low=0.0, high=1.0)},
    "DataLoader": {
        "Train": {
            "dataset": {
                "image_root": Key(
                    None,
                    "path",
                    "class folders, or a folder + cls_label_path (--data)",
                    per_task={SEG: {"doc": "folder the list's paths are relative to (--data)"}},
                ),
                "cls_label_path": _cls(None, "path", "'relative/path label' lines (--labels)"),
                "list": Key(
                    None,
                    "path",
                    "'image label' lines (PaddleSeg); as given, else under image_root (--list)",
                    task=(SEG, DET),
                    per_task={
                        DET: {"doc": "VOC image ids (or 'image xml' lines), or a COCO JSON file (--list)"}
                    },
                ),
                "label_list": _det(
                    None, "path", "VOC class names in order; null: label_list.txt (--label-list)"
                ),
                "reduce_zero_label": _seg(
                    False,
                    "bool",
                    "labels 0 -> 255, k -> k-1 for training and validation (ADE20K; --reduce-zero-label)",
                ),
            },
            "sampler": {
                "batch_size": Key(
                    128,
                    "int",
                    "per process; official: 128 x 8 GPUs",
                    low=1,
                    per_task={
                        SEG: {"default": 8, "doc": "per process (--batch-size)"},
                        DET: {"default": 2, "doc": "per process (--batch-size)"},
                    },
                ),
                "repeated_aug": _cls(3, "int", "DeiT's RASampler; 1 = a plain shuffled epoch", low=1),
            },
            "loader": {
                "num_workers": Key(
                    8,
                    "int",
                    "",
                    low=0,
                    per_task={
                        SEG: {"default": 2, "doc": "(--workers)"},
                        DET: {"default": 2, "doc": "(--workers)"},
                    },
                )
            },
            "transform": {
                "img_size": _cls(224, "int", "", low=STRIDE, high=MAX_IMAGE_SIZE, multiple=STRIDE),
                "scale": _cls([0.08, 1.0], "pair", "RandomResizedCrop area fraction"),
                "ratio": _cls([0.75, 1.3333333333333333], "pair", "RandomResizedCrop aspect ratio"),
                "interpolation": _cls("bicubic", "str", "", choices=INTERPOLATIONS),
                "crop_size": _seg(
                    [512, 512], "size2", "[height, width] of the training crop (--crop-size S: S x S)"
                ),
                "base_size": _seg(
                    None,
                    "size2",
                    "[width, height] the random scale is relative to (mmseg's img_scale); null: own size",
                ),
                "scale_range": _seg([0.5, 2.0], "range", "random rescale ratio range"),
                "cat_max_ratio": _seg(
                    0.75, "float", "crop rejected if one class covers this much; >= 1: off", low=0.0
                ),
                "hflip": _prob(0.5),
                "img_scale": _det(
                    [1333, 800], "size2", "[width, height] bound of the keep-ratio resize (--img-scale)"
                ),
                "photometric": _seg(True, "bool", "mmseg's PhotoMetricDistortion"),
                "auto_augment": _cls("rand-m9-mstd0.5-inc1", "str", "RandAugment; null = off", nullable=True),
                "color_jitter": _cls(
                    0.4, "float", "no effect while auto_augment is set (as in timm)", low=0.0, nullable=True
                ),
                "re_prob": _prob(0.25, "random erasing", task=CLS),
                "re_mode": _cls("pixel", "str", "", choices=("pixel", "rand", "const")),
                "re_count": _cls(1, "int", "", low=1),
            },
            "mixup": {
                "mixup_alpha": _cls(0.8, "float", "", low=0.0),
                "cutmix_alpha": _cls(1.0, "float", "", low=0.0),
                "prob": _prob(1.0, "0 = no Mixup/CutMix", task=CLS),
                "switch_prob": _prob(0.5, task=CLS),
            },
        },
        "Eval": {
            "dataset": {
                "image_root": Key(
                    None,
                    "path",
                    "class folders or a folder + cls_label_path (eval --data)",
                    per_task={
                        SEG: {
                            "doc": "folder the list's paths are relative to (seg-eval --data); "
                            "seg-train: null = the Train image_root"
                        }
                    },
                ),
                "cls_label_path": _cls(None, "path", "'relative/path label' lines (eval --labels)"),
                "transform_ops": _cls(
                    None,
                    "ops",
                    "PaddleClas ops (shunted/config.py); train default: the training img_size",
                ),
                "list": Key(
                    None,
                    "path",
                    "validation 'image label' lines under image_root (--val-list)",
                    task=(SEG, DET),
                    per_task={DET: {"doc": "validation list or COCO JSON (--val-list): COCO AP per epoch"}},
                ),
                "reduce_zero_label": _seg(
                    None, "bool", "as DataLoader.Train.dataset.reduce_zero_label; null: the same"
                ),
            },
            "sampler": {
                "batch_size": Key(
                    None,
                    "int",
                    "eval default 64; train: the training batch",
                    low=1,
                    per_task={
                        SEG: {"default": 1, "doc": "images per forward (same-size images only)"},
                        DET: {"default": 1, "doc": "images per forward"},
                    },
                )
            },
            "loader": {
                "num_workers": Key(
                    None,
                    "int",
                    "eval: decoding threads, default 2; train: the training workers",
                    low=0,
                    per_task={SEG: {"doc": "default: the training workers"}},
                )
            },
            "transform": {
                "scale": _seg(
                    None,
                    "float",
                    "resize factor of the images; metrics at the label's size",
                    low=0.01,
                    high=4.0,
                )
            },
        },
    },
    # how seg-eval / seg-predict (and det-predict) run the model on an image (PaddleSeg's test_config)
    "Infer": {
        "mode": _seg(
            "auto",
            "str",
            "auto: the whole image when its estimated memory fits the budget, else a sliding window; whole; slide",
            choices=("auto", "whole", "slide"),
        ),
        "crop_size": _seg(None, "size2", "[height, width] of the sliding window (mode slide)"),
        "stride": _seg(None, "size2", "[height, width] of its step; null: 2/3 of the window"),
        "score_threshold": _det(
            0.3, "float", "det-predict draws and lists detections scoring at least this", low=0.0, high=1.0
        ),
    },
}

# old spellings → where the key lives now (an error with this hint, never read silently)
MOVED = {
    "Arch.pretrained_model": "Global.pretrained_model",
    "DataLoader.Train.image_root": "DataLoader.Train.dataset.image_root",
    "DataLoader.Train.cls_label_path": "DataLoader.Train.dataset.cls_label_path",
    "DataLoader.Train.batch_size": "DataLoader.Train.sampler.batch_size",
    "DataLoader.Train.repeated_aug": "DataLoader.Train.sampler.repeated_aug",
    "DataLoader.Train.num_workers": "DataLoader.Train.loader.num_workers",
    "DataLoader.Eval.image_root": "DataLoader.Eval.dataset.image_root",
    "DataLoader.Eval.cls_label_path": "DataLoader.Eval.dataset.cls_label_path",
    "DataLoader.Eval.batch_size": "DataLoader.Eval.sampler.batch_size",
    "DataLoader.Eval.num_workers": "DataLoader.Eval.loader.num_workers",
    "DataLoader.Eval.img_size": "DataLoader.Eval.dataset.transform_ops, e.g. "
    "-o 'DataLoader.Eval.dataset.transform_ops=[{CropImage: {size: 224}}]'",
    # seg-train's keys before the one schema (issue 19)
    "Arch.num_classes": "Arch.class_num",
    "Optimizer.learning_rate": "Optimizer.lr.learning_rate",
    "DataLoader.Train.dataset.data_root": "DataLoader.Train.dataset.image_root",
    "DataLoader.Train.transform.flip_prob": "DataLoader.Train.transform.hflip",
}


class SchemaError(ValueError):
    """A key or value the schema does not accept (``shunted.config`` adds where it came from)."""


def _walk(node: dict, prefix: str = ""):
    for name, value in node.items():
        key = f"{prefix}{name}"
        yield key, value
        if isinstance(value, dict):
            yield from _walk(value, key + ".")


ALL_KEYS = dict(_walk(SCHEMA))  # dotted key → Key or section dict


def lookup(key: str) -> tuple[str, Any, list[str]]:
    """(the known prefix of ``key`` that is a leaf or the whole key, its Key/section, the parts past a leaf).

    SchemaError for an unknown key: the old spelling's new place, or the nearest known key."""
    parts = key.split(".")
    node: Any = SCHEMA
    for i, part in enumerate(parts):
        if isinstance(node, Key):
            if node.kind in (
                "ops",
                "pair",
                "range",
                "size2",
                "names",
            ):  # list items and op parameters: checked by the value check
                return ".".join(parts[:i]), node, parts[i:]
            raise SchemaError(f"{'.'.join(parts[:i])} is a value, not a section (unknown key {key})")
        if part not in node:
            raise SchemaError(unknown_key_message(".".join(parts[: i + 1])))
        node = node[part]
    return key, node, []


def unknown_key_message(key: str) -> str:
    for old, new in MOVED.items():
        if key == old or key.startswith(old + "."):
            return f"{key}: this key moved to {new}"
    close = difflib.get_close_matches(key, list(ALL_KEYS), n=1, cutoff=0.75)
    return f"unknown key {key}" + (f" (did you mean {close[0]}?)" if close else "")


def _type_ok(spec: Key, value: Any) -> bool:
    if spec.kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if spec.kind == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if spec.kind == "bool":
        return isinstance(value, bool)
    if spec.kind in ("str", "path"):
        return isinstance(value, str)
    if spec.kind in ("pair", "range"):
        return (
            isinstance(value, list)
            and len(value) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
            and (spec.kind == "pair" or 0 < value[0] <= value[1])
        )
    if spec.kind == "size2":
        return (
            isinstance(value, list)
            and len(value) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_CROP for v in value)
        )
    if spec.kind == "names":
        return isinstance(value, list) and all(isinstance(v, str) and v for v in value)
    if spec.kind == "ops":
        return isinstance(value, list)
    raise AssertionError(spec.kind)


_KIND_NAMES = {
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "str": "a string",
    "path": "a path",
    "pair": "a list of two numbers",
    "range": "two numbers 0 < low <= high",
    "size2": f"two integers in 1..{MAX_CROP}",
    "names": "a list of class names",
    "ops": "a list of {Op: {params}}",
}


def check_value(key: str, spec: Key, value: Any) -> None:
    """SchemaError unless ``value`` has the kind, range and one of the choices of ``spec``."""
    if value is None:
        if spec.accepts_none or (spec.choices and None in spec.choices):
            return
        raise SchemaError(f"{key}: required, got null")
    if spec.choices is not None:
        if value not in spec.choices:
            shown = ", ".join("null" if c is None else str(c) for c in spec.choices)
            raise SchemaError(f"{key}: {value!r} is not implemented; choose {shown}")
        return
    if not _type_ok(spec, value):
        raise SchemaError(f"{key}: expected {_KIND_NAMES[spec.kind]}, got {value!r}")
    if spec.kind in ("int", "float"):
        if not math.isfinite(value):
            raise SchemaError(f"{key}: expected a finite number, got {value!r}")
        if (spec.low is not None and value < spec.low) or (spec.high is not None and value > spec.high):
            bounds = f"{spec.low if spec.low is not None else '-inf'}..{spec.high if spec.high is not None else 'inf'}"
            raise SchemaError(f"{key}: {value!r} out of range {bounds}")
        if spec.multiple and value % spec.multiple:
            raise SchemaError(f"{key}: {value!r} is not a multiple of {spec.multiple} (the network's stride)")


def check_tree(value: Any, key: str = "", task: str | None = None) -> None:
    """Check a (partial) config or the value at dotted ``key``: every key known, every leaf a valid value; with
    ``task``, as that task sees the schema (its choices and ranges; another task's key is an error)."""
    if key:
        leaf_key, spec, rest = lookup(key)
        if rest:  # inside a list value: the caller re-checks the whole value at leaf_key
            return
    else:
        leaf_key, spec = "", SCHEMA
    if isinstance(spec, Key):
        if task and not spec.read_by(task):
            owner = " / ".join(spec.task) if isinstance(spec.task, tuple) else spec.task
            raise SchemaError(f"{leaf_key}: a {owner} key; {task} training does not read it")
        check_value(leaf_key, spec.of(task), value)
        return
    if value is None:
        return  # an empty section
    if not isinstance(value, dict):
        raise SchemaError(f"{leaf_key or 'config'}: expected a section (mapping), got {value!r}")
    for name, sub in value.items():
        if "." in str(name):
            raise SchemaError(f"key {name!r} in {leaf_key or 'the top level'}: nest sections instead of dots")
        check_tree(sub, f"{leaf_key}.{name}" if leaf_key else str(name), task)


def task_keys(task: str) -> dict[str, Key]:
    """Dotted key → Key (as ``task`` sees it) of every leaf ``task`` reads."""
    return {k: v.of(task) for k, v in ALL_KEYS.items() if isinstance(v, Key) and v.read_by(task)}


def defaults(task: str, node: dict | None = None) -> dict:
    """The defaults of every key ``task`` reads, as nested sections (sections it reads nothing of are left out)."""
    out = {}
    for name, value in (SCHEMA if node is None else node).items():
        if isinstance(value, dict):
            sub = defaults(task, value)
            if sub:
                out[name] = sub
        elif value.read_by(task):
            out[name] = copy.deepcopy(value.of(task).default)
    return out


def train_defaults(name: str) -> dict:
    """The official recipe for variant ``name`` (values from shunted/models/registry.py where per-variant)."""
    from .models.registry import get_variant

    variant = get_variant(name)
    cfg = defaults(CLS)
    cfg["Arch"]["name"] = name
    cfg["Arch"]["drop_path_rate"] = variant.drop_path_rate
    cfg["Optimizer"]["grad_clip"] = variant.grad_clip
    return cfg


def seg_train_defaults(name: str | None = None) -> dict:
    """The Semantic FPN setting (PVT's, which the Shunted paper follows) for model ``name``: AdamW, lr 1e-4,
    weight decay 1e-4, poly by iteration with power 1.0, no warm-up."""
    cfg = defaults(SEG)
    cfg["Arch"]["name"] = name
    return cfg


def det_train_defaults(name: str | None = None) -> dict:
    """mmdet's ``retinanet_r50_fpn_1x`` as PVT v2 trains it (the Shunted paper's detection setting) for model
    ``name``: AdamW lr 1e-4, weight decay 1e-4, clip 35, warm-up 500 iterations from 0.001, x0.1 after epochs 8
    and 11 of 12, batch 2, resize to fit 1333 x 800, flip 0.5."""
    cfg = defaults(DET)
    cfg["Arch"]["name"] = name
    return cfg


def eval_defaults(name: str) -> dict:
    """The PaddleClas-style evaluation config of variant ``name``: the official protocol of its registry entry."""
    from .models.registry import get_pretrained_cfg

    pre = get_pretrained_cfg(name)
    size = pre.input_size[-1]
    ops = [
        {"DecodeImage": {"to_rgb": True, "channel_first": False, "backend": "pil"}},
        {
            "ResizeImage": {
                "resize_short": int(size / pre.crop_pct),
                "interpolation": pre.interpolation,
                "backend": "pil",
            }
        },
        {"CropImage": {"size": size}},
        {"NormalizeImage": {"scale": "1.0/255.0", "mean": list(pre.mean), "std": list(pre.std), "order": ""}},
        {"ToCHWImage": None},
    ]
    return {
        "Global": {"pretrained_model": None},
        "Arch": {"name": name, "class_num": pre.num_classes},
        "DataLoader": {
            "Eval": {
                "dataset": {
                    "image_root": "./dataset/ILSVRC2012/val/",
                    "cls_label_path": "./dataset/ILSVRC2012/val_list.txt",
                    "transform_ops": ops,
                },
                "sampler": {"batch_size": 64},
                "loader": {"num_workers": 2},
            }
        },
    }


# -- YAML rendering (comments from the docs above) ------------------------------------------------------------


def _scalar(value: Any) -> str:
    import yaml

    text = yaml.safe_dump(value, default_flow_style=True, width=1000).strip()
    return text[: -len("...")].strip() if text.endswith("...") else text


def _render(value: dict, node: Any, indent: int, lines: list[str], task: str | None) -> None:
    pad = " " * indent
    for name, sub in value.items():
        spec = node.get(name) if isinstance(node, dict) else None
        spec = spec.of(task) if isinstance(spec, Key) else spec
        doc = f"  # {spec.doc}" if isinstance(spec, Key) and spec.doc else ""
        if isinstance(sub, dict):
            lines.append(f"{pad}{name}:")
            _render(sub, spec, indent + 2, lines, task)
        elif isinstance(sub, list) and sub and all(isinstance(v, dict) for v in sub):
            lines.append(f"{pad}{name}:{doc}")
            for op in sub:
                ((op_name, params),) = op.items()
                if params:
                    lines.append(f"{pad}  - {op_name}:")
                    lines.extend(f"{pad}      {k}: {_scalar(v)}" for k, v in params.items())
                else:
                    lines.append(f"{pad}  - {op_name}:")
        else:
            lines.append(f"{pad}{name}: {_scalar(sub)}{doc}")


def render_yaml(cfg: dict, header: str, task: str | None = CLS) -> str:
    lines = [f"# {line}" if line else "#" for line in header.strip("\n").splitlines()]
    _render(cfg, SCHEMA, 0, lines, task)
    return "\n".join(lines) + "\n"


def render_train_yaml(name: str) -> str:
    return render_yaml(
        train_defaults(name),
        f"""{name}: the official training recipe (DeiT-style, as the official code trains).
  shunted train -c configs/{name}_train.yaml --data TRAIN --output RUN   (then flags, -o Section.key=value)
Generated by tools/gen_configs.py from shunted/config_schema.py, the defaults of shunted train.
Peak lr = base_lr x (batch_size x processes) / base_batch. Unknown keys are errors.""",
    )


def render_eval_yaml(name: str) -> str:
    return render_yaml(
        eval_defaults(name),
        f"""{name}: evaluation in PaddleClas's layout, the official protocol (shunted/models/registry.py).
  shunted eval -c configs/{name}.yaml -o Global.pretrained_model=W -o DataLoader.Eval.dataset.image_root=V
Generated by tools/gen_configs.py from shunted/config_schema.py. Flags win; unknown keys are errors.""",
    )
