"""The one config schema: every key ``shunted train`` and ``shunted eval`` read, its default, type and doc.

Sections follow PaddleClas's layout (Global, Arch, Loss, Optimizer, EMA, DataLoader.Train / Eval, with the data
keys of both loaders under ``dataset`` / ``sampler`` / ``loader``). ``shunted.config`` checks every ``-c`` file
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
from dataclasses import dataclass
from typing import Any

# pure data: kept in step with shunted/data/transforms.py INTERPOLATIONS (a test checks)
INTERPOLATIONS = ("bicubic", "bilinear")
# the same bounds as the command line's (shunted/commands/common.py, where they are explained; a test checks)
STRIDE = 32
MAX_IMAGE_SIZE = 1024
MAX_RESIZE_SHORT = 4 * MAX_IMAGE_SIZE
LR_SCHEDULES = ("WarmupCosine",)
OPTIMIZERS = ("AdamW",)


@dataclass(frozen=True)
class Key:
    """One leaf: its default, kind (int, float, bool, str, path, pair, ops) and what it means."""

    default: Any
    kind: str
    doc: str = ""
    choices: tuple | None = None
    low: float | None = None
    high: float | None = None
    nullable: bool | None = None  # default: the default is None
    multiple: int | None = None  # an int key: must be a multiple of this

    @property
    def accepts_none(self) -> bool:
        return self.default is None if self.nullable is None else self.nullable


def _prob(default: float, doc: str = "") -> Key:
    return Key(default, "float", doc, low=0.0, high=1.0)


SCHEMA: dict[str, Any] = {
    "Global": {
        "epochs": Key(300, "int", "", low=1),
        "seed": Key(0, "int"),
        "output_dir": Key(None, "path", "run folder (--output)"),
        "pretrained_model": Key(
            None, "path", "weights: official .pth, .pdparams or .safetensors (train: the initial weights)"
        ),
        "amp": Key(None, "str", "bf16 | fp16 (mixed precision, GPU)", choices=(None, "bf16", "fp16")),
        "max_steps_per_epoch": Key(None, "int", "smoke tests only", low=1),
        "use_visualdl": Key(False, "bool"),
        "resume": Key(False, "bool", "continue from output_dir/last.pdckpt (--resume)"),
    },
    "Arch": {
        "name": Key(None, "str", "shunted_t | shunted_s | shunted_b"),
        "class_num": Key(None, "int", "default: the checkpoint's (eval), the data's (train)", low=1),
        "drop_path_rate": Key(None, "float", "from shunted/models/registry.py", low=0.0, high=1.0),
        "drop_rate": Key(0.0, "float", "", low=0.0, high=1.0),
        "freeze_stages": Key(0, "int", "freeze the first N stages (--freeze)", low=0, high=4),
        "finetune_eval_mode": Key(
            True, "bool", "official: with pretrained weights the model trains in eval mode (no drop path)"
        ),
    },
    "Loss": {"label_smoothing": Key(0.1, "float", "", low=0.0, high=0.999)},
    "Optimizer": {
        "name": Key("AdamW", "str", "", choices=OPTIMIZERS),
        "beta1": Key(0.9, "float", "", low=0.0, high=0.999999),
        "beta2": Key(0.999, "float", "", low=0.0, high=0.999999),
        "epsilon": Key(1.0e-8, "float", "", low=0.0),
        "weight_decay": Key(0.05, "float", "not applied to norms and biases", low=0.0),
        "grad_clip": Key(None, "float", "global norm; from shunted/models/registry.py", low=0.0),
        "lr": {
            "name": Key("WarmupCosine", "str", "", choices=LR_SCHEDULES),
            "base_lr": Key(5.0e-4, "float", "at a total batch of base_batch; scaled linearly", low=0.0),
            "base_batch": Key(512, "int", "", low=1),
            "learning_rate": Key(
                None, "float", "an absolute peak rate instead of the scaled base_lr", low=0.0
            ),
            "warmup_epoch": Key(5, "float", "", low=0.0),
            "warmup_start_lr": Key(1.0e-6, "float", "", low=0.0),
            "eta_min": Key(1.0e-5, "float", "", low=0.0),
            "by_epoch": Key(True, "bool", "timm/DeiT: the rate changes once per epoch"),
        },
    },
    "EMA": {"enabled": Key(False, "bool"), "decay": Key(0.99996, "float", "", low=0.0, high=1.0)},
    "DataLoader": {
        "Train": {
            "dataset": {
                "image_root": Key(None, "path", "class folders, or a folder + cls_label_path (--data)"),
                "cls_label_path": Key(None, "path", "'relative/path label' lines (--labels)"),
            },
            "sampler": {
                "batch_size": Key(128, "int", "per process; official: 128 x 8 GPUs", low=1),
                "repeated_aug": Key(3, "int", "DeiT's RASampler; 1 = a plain shuffled epoch", low=1),
            },
            "loader": {"num_workers": Key(8, "int", "", low=0)},
            "transform": {
                "img_size": Key(224, "int", "", low=STRIDE, high=MAX_IMAGE_SIZE, multiple=STRIDE),
                "scale": Key([0.08, 1.0], "pair", "RandomResizedCrop area fraction"),
                "ratio": Key([0.75, 1.3333333333333333], "pair", "RandomResizedCrop aspect ratio"),
                "interpolation": Key("bicubic", "str", "", choices=INTERPOLATIONS),
                "hflip": _prob(0.5),
                "auto_augment": Key("rand-m9-mstd0.5-inc1", "str", "RandAugment; null = off", nullable=True),
                "color_jitter": Key(
                    0.4, "float", "no effect while auto_augment is set (as in timm)", low=0.0, nullable=True
                ),
                "re_prob": _prob(0.25, "random erasing"),
                "re_mode": Key("pixel", "str", "", choices=("pixel", "rand", "const")),
                "re_count": Key(1, "int", "", low=1),
            },
            "mixup": {
                "mixup_alpha": Key(0.8, "float", "", low=0.0),
                "cutmix_alpha": Key(1.0, "float", "", low=0.0),
                "prob": _prob(1.0, "0 = no Mixup/CutMix"),
                "switch_prob": _prob(0.5),
            },
        },
        "Eval": {
            "dataset": {
                "image_root": Key(None, "path", "class folders or a folder + cls_label_path (eval --data)"),
                "cls_label_path": Key(None, "path", "'relative/path label' lines (eval --labels)"),
                "transform_ops": Key(
                    None,
                    "ops",
                    "PaddleClas ops (shunted/config.py); train default: the training img_size",
                ),
            },
            "sampler": {"batch_size": Key(None, "int", "eval default 64; train: the training batch", low=1)},
            "loader": {"num_workers": Key(None, "int", "eval default 2; train: the training workers", low=0)},
        },
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
            if node.kind in ("ops", "pair"):  # list items and op parameters: checked by the value check
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
    if spec.kind == "pair":
        return (
            isinstance(value, list)
            and len(value) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        )
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


def check_tree(value: Any, key: str = "") -> None:
    """Check a (partial) config or the value at dotted ``key``: every key known, every leaf a valid value."""
    if key:
        leaf_key, spec, rest = lookup(key)
        if rest:  # inside a list value: the caller re-checks the whole value at leaf_key
            return
    else:
        leaf_key, spec = "", SCHEMA
    if isinstance(spec, Key):
        check_value(leaf_key, spec, value)
        return
    if value is None:
        return  # an empty section
    if not isinstance(value, dict):
        raise SchemaError(f"{leaf_key or 'config'}: expected a section (mapping), got {value!r}")
    for name, sub in value.items():
        if "." in str(name):
            raise SchemaError(f"key {name!r} in {leaf_key or 'the top level'}: nest sections instead of dots")
        check_tree(sub, f"{leaf_key}.{name}" if leaf_key else str(name))


def defaults(node: dict | None = None) -> dict:
    node = SCHEMA if node is None else node
    return {k: defaults(v) if isinstance(v, dict) else copy.deepcopy(v.default) for k, v in node.items()}


def train_defaults(name: str) -> dict:
    """The official recipe for variant ``name`` (values from shunted/models/registry.py where per-variant)."""
    from .models.registry import get_variant

    variant = get_variant(name)
    cfg = defaults()
    cfg["Arch"]["name"] = name
    cfg["Arch"]["drop_path_rate"] = variant.drop_path_rate
    cfg["Optimizer"]["grad_clip"] = variant.grad_clip
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


def _render(value: dict, node: Any, indent: int, lines: list[str]) -> None:
    pad = " " * indent
    for name, sub in value.items():
        spec = node.get(name) if isinstance(node, dict) else None
        doc = f"  # {spec.doc}" if isinstance(spec, Key) and spec.doc else ""
        if isinstance(sub, dict):
            lines.append(f"{pad}{name}:")
            _render(sub, spec, indent + 2, lines)
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


def render_yaml(cfg: dict, header: str) -> str:
    lines = [f"# {line}" if line else "#" for line in header.strip("\n").splitlines()]
    _render(cfg, SCHEMA, 0, lines)
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
