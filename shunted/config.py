"""YAML configs in PaddleClas's layout, with ``-o key=value`` overrides.

    cfg = load_config("configs/shunted_s.yaml", ["Global.epochs=10", "Arch.class_num=100"])
    get(cfg, "Arch.name")                              # "shunted_s"
    get(cfg, "DataLoader.Eval.sampler.batch_size", 64)

An override's key is a dotted path (list items by index: ``Metric.Eval.0.TopkAcc.topk=[1,5]``); its value is
parsed as YAML (``10`` → int, ``1e-3`` → float (also in files), ``[1, 5]`` → list, ``null`` → None, anything else a string).
Missing intermediate mappings are created. Errors name the file or the override.

``eval_settings(cfg)`` reads the evaluation section (``Arch``, ``Global``, ``DataLoader.Eval``) into the
keyword arguments of ``shunted eval``; a transform op the evaluation cannot honour is an error, not ignored.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml

from .errors import ShuntedError

_MISSING = object()


class _Loader(yaml.SafeLoader):
    """YAML 1.1 safe loading, plus floats without a dot (``1e-3``), which PyYAML would leave as strings."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def parse_yaml(text: str):
    return yaml.load(text, Loader=_Loader)  # noqa: S506 — a SafeLoader subclass


class ConfigError(ShuntedError):
    """A config file or an override cannot be used."""


def load_config(path: str | os.PathLike | None, overrides: list[str] | None = None) -> dict:
    """The YAML mapping in ``path`` (an empty one for None) with ``overrides`` applied in order."""
    cfg: dict = {}
    if path is not None:
        path = Path(path)
        try:
            loaded = parse_yaml(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a YAML mapping at the top level")
        cfg = loaded or {}
    for item in overrides or []:
        apply_override(cfg, item)
    return cfg


def parse_override(item: str) -> tuple[str, Any]:
    """``"a.b=3"`` → ``("a.b", 3)`` with the value parsed as YAML."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"-o {item!r}: expected key.path=value")
    try:
        value = parse_yaml(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


def apply_override(cfg: dict, item: str) -> None:
    key, value = parse_override(item)
    set_value(cfg, key, value, what=f"-o {item!r}")


def set_value(cfg: dict, key: str, value: Any, what: str | None = None) -> None:
    parts = key.split(".")
    node: Any = cfg
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not part.lstrip("-").isdigit() or not -len(node) <= int(part) < len(node):
                raise ConfigError(
                    f"{what or key}: {'.'.join(parts[:i]) or key} is a list; {part!r} is no index"
                )
            if last:
                node[int(part)] = value
                return
            node = node[int(part)]
        elif isinstance(node, dict):
            if last:
                node[part] = value
                return
            if node.get(part) is None:
                node[part] = {}
            node = node[part]
        else:
            raise ConfigError(
                f"{what or key}: {'.'.join(parts[:i])} is a {type(node).__name__}, not a section"
            )


def get(cfg: dict, key: str, default: Any = _MISSING) -> Any:
    """The value at a dotted ``key``; ``default`` if absent (a ConfigError naming the key without one)."""
    node: Any = cfg
    for part in key.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.lstrip("-").isdigit() and -len(node) <= int(part) < len(node):
            node = node[int(part)]
        else:
            if default is _MISSING:
                raise ConfigError(f"config has no {key!r}")
            return default
    return node


def transform_ops(cfg: dict, section: str = "DataLoader.Eval.dataset.transform_ops") -> dict[str, dict]:
    """PaddleClas's list of ``{OpName: {params}}`` as one mapping ``{OpName: params}``."""
    ops: dict[str, dict] = {}
    for op in get(cfg, section, []) or []:
        if not isinstance(op, dict) or len(op) != 1:
            raise ConfigError(f"{section}: each transform op must be a one-key mapping, got {op!r}")
        ((name, params),) = op.items()
        ops[name] = params or {}
    return ops


def parse_number(value: Any) -> float:
    """A float from a number or a ``"1.0/255.0"`` string (PaddleClas writes scales that way)."""
    if isinstance(value, str) and "/" in value:
        num, _, den = value.partition("/")
        return float(num) / float(den)
    return float(value)


_EVAL_OPS = {"DecodeImage", "ResizeImage", "CropImage", "NormalizeImage", "ToCHWImage"}


def eval_settings(cfg: dict) -> dict[str, Any]:
    """``shunted eval`` keyword arguments from a PaddleClas config (only keys the config sets)."""
    out: dict[str, Any] = {}
    for key, name in (
        ("Arch.name", "model"),
        ("Arch.class_num", "num_classes"),
        ("Global.pretrained_model", "weights"),
        ("DataLoader.Eval.dataset.image_root", "data"),
        ("DataLoader.Eval.dataset.cls_label_path", "labels"),
        ("DataLoader.Eval.sampler.batch_size", "batch_size"),
        ("DataLoader.Eval.loader.num_workers", "workers"),
    ):
        value = get(cfg, key, None)
        if value is not None:
            out[name] = value
    ops = transform_ops(cfg)
    unknown = sorted(set(ops) - _EVAL_OPS)
    if unknown:
        raise ConfigError(
            f"DataLoader.Eval transform_ops: {', '.join(unknown)} not supported by shunted eval"
        )
    for op in ("DecodeImage", "ResizeImage"):
        backend = ops.get(op, {}).get("backend", "pil")
        if backend != "pil":
            raise ConfigError(
                f"{op}.backend: {backend!r}; the official pipeline decodes and resizes with 'pil'"
            )
    resize = ops.get("ResizeImage", {})
    if "resize_short" in resize:
        out["resize_short"] = int(resize["resize_short"])
    if "size" in resize:
        raise ConfigError("ResizeImage.size: only resize_short (shorter side) matches the official protocol")
    if "interpolation" in resize:
        out["interpolation"] = resize["interpolation"]
    crop = ops.get("CropImage", {})
    if "size" in crop:
        out["img_size"] = int(crop["size"])
    norm = ops.get("NormalizeImage", {})
    if norm:
        if "scale" in norm and abs(parse_number(norm["scale"]) - 1 / 255) > 1e-12:
            raise ConfigError(
                f"NormalizeImage.scale: {norm['scale']!r}; the official pipeline scales by 1/255"
            )
        out["mean"] = tuple(float(v) for v in norm.get("mean", ()))
        out["std"] = tuple(float(v) for v in norm.get("std", ()))
    return out
