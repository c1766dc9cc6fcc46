"""Make ``Arch: {name: shunted_s}`` resolvable by PaddleClas's ``build_model``.

    from shunted.integrations.paddleclas import register
    register()                                   # sets shunted_t/s/b on paddleclas.ppcls.arch (or ppcls.arch)
    from paddleclas.ppcls.arch import build_model
    model = build_model({"Arch": {"name": "shunted_s", "class_num": 1000, "pretrained": "ckpt_S.pth"}})

PaddleClas's ``build_model`` looks the ``Arch.name`` up on its ``arch`` module and calls it with the remaining
``Arch`` keys, so a factory set on that module is all it takes. The factories follow PaddleClas's backbone
signature (``pretrained``, ``class_num``, ``use_ssld``): ``pretrained`` is a path to an official ``.pth``, a
``.pdparams`` or a ``.safetensors`` (PaddleClas's own download of ``pretrained=True`` does not apply).
The ``paddleclas`` package pins numpy 1.24.4 and opencv ≤ 4.6, so it is not a dependency of this project:
install it in its own environment.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from types import ModuleType

from ..errors import ShuntedError

ARCH_MODULES = ("paddleclas.ppcls.arch", "ppcls.arch")


def make_factory(name: str) -> Callable:
    """A PaddleClas-style backbone factory for one variant."""

    def factory(
        pretrained: bool | str | os.PathLike = False, class_num: int = 1000, use_ssld: bool = False, **kwargs
    ):
        from ..factory import create_model

        if pretrained is True or use_ssld:
            raise ShuntedError(
                f"Arch {name}: pretrained=True/use_ssld download nothing here; set Arch.pretrained to the path of "
                "an official .pth, a .pdparams or a .safetensors"
            )
        path = None if pretrained in (False, None, "") else pretrained
        return create_model(name, pretrained=path, num_classes=class_num, **kwargs)

    factory.__name__ = factory.__qualname__ = name
    factory.__doc__ = f"PaddleClas factory for {name}: (pretrained=False|path, class_num=1000, **kwargs)."
    return factory


def find_arch_module() -> ModuleType:
    """PaddleClas's arch module: the pip package's ``paddleclas.ppcls.arch`` or a source checkout's ``ppcls.arch``."""
    errors = []
    for module_name in ARCH_MODULES:
        try:
            return importlib.import_module(module_name)
        except ImportError as exc:
            errors.append(f"{module_name}: {exc}")
    raise ShuntedError(
        "PaddleClas is not importable (" + "; ".join(errors) + "); install it in its own environment: "
        "pip install paddleclas (it pins numpy 1.24.4)"
    )


def register(module: ModuleType | None = None) -> list[str]:
    """Set the ``shunted_*`` factories on PaddleClas's arch module (found when not given); returns the names."""
    from ..models import list_models

    module = module or find_arch_module()
    names = list_models()
    for name in names:
        setattr(module, name, make_factory(name))
        exported = getattr(module, "__all__", None)
        if isinstance(exported, list) and name not in exported:
            exported.append(name)
    return names
