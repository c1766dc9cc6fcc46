"""YAML configs in PaddleClas's layout, with ``-o key=value`` overrides, checked against one schema.

    cfg = load_config("configs/shunted_s.yaml", ["Arch.class_num=100"])
    get(cfg, "Arch.name")                              # "shunted_s"
    get(cfg, "DataLoader.Eval.sampler.batch_size", 64)

An override's key is a dotted path (list items by index: ``DataLoader.Eval.dataset.transform_ops.2.CropImage.size=64``);
its value is parsed as YAML (``10`` → int, ``1e-3`` → float (also in files), ``[1, 5]`` → list, ``null`` → None,
anything else a string). Every key of a file or an override must be one of shunted/config_schema.py (the keys
``shunted train`` and ``shunted eval`` read); an unknown key, a value of the wrong type or out of range, or a
choice that is not implemented is a ConfigError naming the file or the override, the full dotted key and, for a
typo, the nearest known key.

``eval_settings(cfg)`` reads the evaluation section (``Arch``, ``Global.pretrained_model``, ``DataLoader.Eval``)
into the keyword arguments of ``shunted eval`` (``shunted train`` validates with it too); a transform op or
parameter the evaluation cannot honour is an error, not ignored.
"""

from __future__ import annotations

import copy
import difflib
import math
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from . import config_schema as schema
from .errors import ShuntedError
from .fileio import read_input_text

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


MAX_DEPTH = (
    50  # nesting levels a config may have (the schema needs 6); deeper is refused, never recursed into
)


def _yaml_depth(text: str) -> int:
    """The deepest nesting of collections in ``text``, from PyYAML's event stream (no recursion)."""
    depth = deepest = 0
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            deepest = max(deepest, depth)
            if deepest > MAX_DEPTH:
                break
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1
    return deepest


def parse_yaml(text: str):
    """The YAML value of ``text``; ConfigError if nested deeper than MAX_DEPTH (yaml.YAMLError if malformed)."""
    if _yaml_depth(text) > MAX_DEPTH:
        raise ConfigError(f"nested more than {MAX_DEPTH} levels deep")
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 — a SafeLoader subclass
    except RecursionError:
        raise ConfigError(f"nested too deeply (at most {MAX_DEPTH} levels)") from None


class ConfigError(ShuntedError):
    """A config file or an override cannot be used."""


def load_config(path: str | os.PathLike | None, overrides: list[str] | None = None) -> dict:
    """The YAML mapping in ``path`` (an empty one for None) with ``overrides`` applied in order, all checked
    against the schema (ConfigError naming the file or the override)."""
    cfg: dict = {}
    if path is not None:
        path = Path(path)
        cfg = read_yaml_mapping(path)
        check(cfg, source=str(path))
    apply_overrides(cfg, overrides)
    return cfg


def read_yaml_mapping(path: str | os.PathLike) -> dict:
    """The YAML mapping in file ``path`` (an empty one for an empty file), unchecked; ConfigError naming the
    file (as given) if it is not valid YAML, nested too deeply or not a mapping at the top level.
    ``load_config`` and ``layered_config`` check it against the schema."""
    try:
        loaded = parse_yaml(read_input_text(path, "config"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from None
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    if loaded is not None and not isinstance(loaded, dict):
        raise ConfigError(f"{path}: expected a YAML mapping at the top level")
    return loaded or {}


def merge(base: dict, over: dict) -> dict:
    """``over`` on top of ``base``, section by section (an empty section in ``over`` keeps ``base``'s); a new
    dict, neither argument is changed."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if value is None and isinstance(out.get(key), dict):
            continue
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def check(cfg: Any, key: str = "", source: str | None = None, task: str | None = None) -> None:
    """ConfigError unless ``cfg`` (or the value at dotted ``key``) fits the schema (as ``task`` sees it);
    ``source`` names its origin."""
    try:
        schema.check_tree(cfg, key, task)
    except schema.SchemaError as exc:
        raise ConfigError(f"{source}: {exc}" if source else str(exc)) from None
    except RecursionError:  # parse_yaml bounds the depth; this guards values built in Python
        raise ConfigError(f"{source or 'config'}: nested too deeply") from None


def apply_overrides(cfg: dict, overrides: list[str] | None, task: str | None = None) -> dict:
    """Apply ``-o`` items to ``cfg`` in place: each key must be known (to ``task``), each value valid."""
    for item in overrides or []:
        key, value = parse_override(item)
        what = f"-o {item!r}"
        try:
            leaf, _, _ = schema.lookup(key)
        except schema.SchemaError as exc:
            raise ConfigError(f"{what}: {exc}") from None
        set_value(cfg, key, value, what=what)
        check(get(cfg, leaf), leaf, source=what, task=task)
    return cfg


_NONE = object()


def layered_config(
    task: str,
    defaults_of: Callable[[str | None], dict],
    path: str | os.PathLike | None = None,
    overrides: list[str] | None = None,
    flags: dict[str, Any] | None = None,
    flag_of: dict[str, str] | None = None,
) -> dict:
    """The one way a training config is made: ``defaults_of(model name)`` ← the ``-c`` file ← ``-o`` overrides ←
    ``flags`` (dotted key → value; None and False are flags left out), checked against the schema as ``task``
    sees it, complete. A ConfigError names the file or override, the key and (``flag_of``: key → flag) its flag."""
    file_cfg = read_yaml_mapping(path) if path else {}
    check(file_cfg, source=str(path), task=task)
    given = {k: v for k, v in (flags or {}).items() if v is not None and v is not False}
    named = dict(parse_override(item) for item in overrides or [])
    name = given.get("Arch.name") or named.get("Arch.name") or get(file_cfg, "Arch.name", None)
    cfg = merge(defaults_of(name), file_cfg)
    apply_overrides(cfg, overrides, task)
    for key, value in given.items():
        set_value(cfg, key, value)
    flag_of = flag_of or {}
    try:
        check(cfg, task=task)
    except ConfigError as exc:
        key = str(exc).partition(":")[0]
        raise ConfigError(f"{exc} ({flag_of[key]})" if key in flag_of else str(exc)) from None
    missing = [key for key in schema.task_keys(task) if get(cfg, key, _NONE) is _NONE]
    if missing:
        raise ConfigError(f"{missing[0]}: missing (a section was replaced by a partial one)")
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
    except ConfigError as exc:
        raise ConfigError(f"-o {item[:60]!r}: {exc}") from None
    return key, value


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


OPS_KEY = "DataLoader.Eval.dataset.transform_ops"

# the ops and parameters shunted eval honours: parameter → allowed values (None: any, checked below)
_EVAL_OPS: dict[str, dict[str, tuple | None]] = {
    "DecodeImage": {"to_rgb": (True,), "channel_first": (False,), "backend": ("pil",)},
    "ResizeImage": {
        "resize_short": None,
        "interpolation": schema.INTERPOLATIONS,
        "backend": ("pil",),
        "size": None,
    },
    "CropImage": {"size": None},
    "NormalizeImage": {"scale": None, "mean": None, "std": None, "order": ("", "hwc")},
    "ToCHWImage": {},
}


def transform_ops(cfg: dict, section: str = OPS_KEY) -> dict[str, dict]:
    """PaddleClas's list of ``{OpName: {params}}`` as one mapping ``{OpName: params}``; ops and parameters that
    shunted eval does not honour are errors naming the key."""
    ops: dict[str, dict] = {}
    for i, op in enumerate(get(cfg, section, []) or []):
        if not isinstance(op, dict) or len(op) != 1:
            raise ConfigError(f"{section}: each transform op must be a one-key mapping, got {op!r}")
        ((name, params),) = op.items()
        if name not in _EVAL_OPS:
            close = difflib.get_close_matches(str(name), list(_EVAL_OPS), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(f"{section}: {name} not supported by shunted eval{hint}")
        if params is not None and not isinstance(params, dict):
            raise ConfigError(f"{section}.{i}.{name}: expected a mapping of parameters, got {params!r}")
        allowed = _EVAL_OPS[name]
        for param, value in (params or {}).items():
            key = f"{section}.{i}.{name}.{param}"
            if param not in allowed:
                close = difflib.get_close_matches(str(param), list(allowed), n=1)
                hint = f" (did you mean {name}.{close[0]}?)" if close else ""
                raise ConfigError(f"{key}: unknown parameter{hint}")
            choices = allowed[param]
            if choices is not None and value not in choices:
                what = "the official pipeline decodes and resizes with 'pil'" if param == "backend" else ""
                raise ConfigError(
                    f"{name}.{param}: {value!r}; {what or 'choose ' + ', '.join(map(repr, choices))} ({key})"
                )
        ops[name] = params or {}
    return ops


def parse_number(value: Any) -> float:
    """A float from a number or a ``"1.0/255.0"`` string (PaddleClas writes scales that way)."""
    if isinstance(value, str) and "/" in value:
        num, _, den = value.partition("/")
        return float(num) / float(den)
    return float(value)


def _positive_int(value: Any, key: str, high: int | None = None, multiple: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{key}: expected a positive integer, got {value!r}")
    if multiple and value % multiple:
        raise ConfigError(f"{key}: {value} is not a multiple of {multiple} (the network's total stride)")
    if high is not None and value > high:
        raise ConfigError(f"{key}: {value} is too large (at most {high})")
    return value


def _floats(value: Any, key: str) -> tuple[float, ...]:
    if not isinstance(value, list) or len(value) != 3:
        raise ConfigError(f"{key}: expected three numbers, got {value!r}")
    try:
        return tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key}: expected three numbers, got {value!r}") from None


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
    resize = ops.get("ResizeImage", {})
    if "size" in resize:
        raise ConfigError("ResizeImage.size: only resize_short (shorter side) matches the official protocol")
    if "resize_short" in resize:
        out["resize_short"] = _positive_int(
            resize["resize_short"], "ResizeImage.resize_short", high=schema.MAX_RESIZE_SHORT
        )
    if "interpolation" in resize:
        out["interpolation"] = resize["interpolation"]
    crop = ops.get("CropImage", {})
    if "size" in crop:
        out["img_size"] = _positive_int(
            crop["size"], "CropImage.size", high=schema.MAX_IMAGE_SIZE, multiple=schema.STRIDE
        )
    norm = ops.get("NormalizeImage", {})
    if norm:
        if "scale" in norm:
            try:
                scale = parse_number(norm["scale"])
            except (TypeError, ValueError, ZeroDivisionError):
                scale = math.nan
            if not abs(scale - 1 / 255) <= 1e-12:
                raise ConfigError(
                    f"NormalizeImage.scale: {norm['scale']!r}; the official pipeline scales by 1/255"
                )
        for key in ("mean", "std"):
            if key in norm:
                out[key] = _floats(norm[key], f"NormalizeImage.{key}")
    return out
