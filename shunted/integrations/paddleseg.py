"""Make ``backbone: {type: shunted_s}`` resolvable in a PaddleSeg config (``paddleseg.cvlibs.manager.BACKBONES``).

    from shunted.integrations.paddleseg import register
    register()                      # adds shunted_t / shunted_s / shunted_b to paddleseg.cvlibs.manager.BACKBONES
    # then, in a PaddleSeg config:
    #   model:
    #     type: UPerNet
    #     backbone: {type: shunted_s, pretrained: ckpt_S.pth}
    #     backbone_indices: [0, 1, 2, 3]

PaddleSeg's builder looks ``type`` up in its component managers and calls the component with the other keys.
The components follow PaddleSeg's backbone conventions (as ``paddleseg/models/backbones/mix_transformer.py``):
``pretrained`` is a path (an official classification ``.pth``, a ``.pdparams`` or a ``.safetensors``; loaded
strictly, the classifier left out, by ``shunted/factory.py``; PaddleSeg's URL download does not apply),
``in_channels`` is accepted (PaddleSeg's builder sets it from a named dataset's ``IMG_CHANNELS``), ``forward``
returns a list of the four stage maps (strides 4/8/16/32) and ``feat_channels`` lists their channels
(64/128/256/512). Inputs of any size are padded with zeros at the bottom/right to a multiple of 32 (the network's
total stride) and every map is cropped back to ``ceil(size / stride)``, the size a strided CNN backbone gives.

Importing ``shunted`` never imports ``paddleseg``. The ``paddleseg`` 2.8.0 package pins opencv ≤ 4.6 and visualdl,
so it is not a dependency of this project: install it in its own environment, without its pins
(``INSTALL_HINT``). PaddleSeg 2.8.0's own ``CrossEntropyLoss`` fails under Paddle 3.3 (it multiplies a float32
mask by an int64 tensor), whatever the backbone; its ``OhemCrossEntropyLoss`` runs.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Sequence
from types import ModuleType

import paddle
import paddle.nn.functional as F

from ..errors import ShuntedError
from ..models.registry import STRIDES, get_variant, list_models
from ..models.shunted import TOTAL_STRIDE, ShuntedTransformer

__all__ = ["BACKBONE_NAMES", "ShuntedBackbone", "find_manager", "register"]

MANAGER_MODULE = "paddleseg.cvlibs.manager"
INSTALL_HINT = (
    "pip install --no-deps paddleseg==2.8.0, then pip install six requests scipy scikit-learn filelock "
    "prettytable opencv-python-headless (its metadata pins opencv-python<=4.6 and visualdl)"
)
BACKBONE_NAMES = tuple(list_models())  # shunted_t, shunted_s, shunted_b


class ShuntedBackbone(ShuntedTransformer):
    """A ``features_only`` Shunted Transformer with PaddleSeg's backbone interface.

    name: ``shunted_t`` / ``shunted_s`` / ``shunted_b``. pretrained: path of a classification checkpoint, or None.
    in_channels: input channels (3 for the pretrained weights). out_indices: the stages returned (default all 4).
    drop_path_rate, drop_rate, attn_drop_rate: the backbone's regularisation (0 by default; the official ImageNet
    recipe uses 0.1 / 0.2 / 0.3 stochastic depth for T / S / B).
    Attributes: ``feat_channels`` (channels of the returned maps), ``pretrained``, ``variant_name``.
    """

    def __init__(
        self,
        name: str,
        pretrained: str | os.PathLike | None = None,
        in_channels: int = 3,
        out_indices: Sequence[int] = (0, 1, 2, 3),
        drop_path_rate: float = 0.0,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
    ):
        variant = get_variant(name)
        if pretrained is not None and "://" in str(pretrained):
            raise ShuntedError(
                f"backbone {name}: pretrained={pretrained}: give the path of a downloaded checkpoint "
                "(.pth / .pdparams / .safetensors); URLs are not fetched"
            )
        build_kwargs = {
            "in_chans": int(in_channels),
            "out_indices": tuple(out_indices),
            "drop_path_rate": drop_path_rate,
            "drop_rate": drop_rate,
            "attn_drop_rate": attn_drop_rate,
        }
        super().__init__(variant.depths, variant.num_conv, features_only=True, **build_kwargs)
        self._build_kwargs = build_kwargs
        self.variant = variant
        self.variant_name = name
        self.pretrained_cfg = variant.pretrained_cfg
        self.feat_channels = [self.embed_dims[i] for i in self.out_indices]
        self.pretrained = pretrained
        self.pretrained_sha256 = None
        self.init_weight()

    def init_weight(self) -> None:
        """Load ``self.pretrained`` (if any) strictly through ``shunted.create_model`` (the classifier excluded)."""
        if self.pretrained in (None, "", False):
            return
        path = str(self.pretrained)
        from ..factory import create_model

        loaded = create_model(self.variant_name, pretrained=path, features_only=True, **self._build_kwargs)
        state = loaded.state_dict()
        own = self.state_dict()
        if set(state) != set(own):  # the same constructor: cannot happen unless the network code changes
            raise ShuntedError(
                f"backbone {self.variant_name}: {path}: parameter names differ from the backbone's"
            )
        self.set_state_dict(state)
        self.pretrained_sha256 = loaded.pretrained_sha256

    def forward(self, x: paddle.Tensor) -> list[paddle.Tensor]:
        """``x`` (B, C, H, W), any H and W → the chosen stage maps, map i of size ceil(H/s_i) × ceil(W/s_i)."""
        height, width = x.shape[-2], x.shape[-1]
        known = (
            x.ndim == 4 and isinstance(height, int) and isinstance(width, int) and height > 0 and width > 0
        )
        pad_h = -height % TOTAL_STRIDE if known else 0
        pad_w = -width % TOTAL_STRIDE if known else 0
        if pad_h or pad_w:  # zeros at the bottom/right: [left, right, top, bottom] of the last two axes
            x = F.pad(x, [0, pad_w, 0, pad_h], mode="constant", value=0.0, data_format="NCHW")
        maps = super().forward(x)
        if not (pad_h or pad_w):
            return maps
        out = []
        for i, m in zip(self.out_indices, maps, strict=True):
            s = STRIDES[i]
            out.append(m[:, :, : -(-height // s), : -(-width // s)])
        return out


def make_backbone(name: str) -> Callable[..., ShuntedBackbone]:
    """The PaddleSeg component for one variant: ``name(pretrained=None, in_channels=3, **kwargs)``."""
    get_variant(name)

    def component(
        pretrained: str | os.PathLike | None = None, in_channels: int = 3, **kwargs
    ) -> ShuntedBackbone:
        return ShuntedBackbone(name, pretrained=pretrained, in_channels=in_channels, **kwargs)

    component.__name__ = component.__qualname__ = name  # PaddleSeg registers a component by its __name__
    component.__module__ = __name__
    component.__doc__ = (
        f"PaddleSeg backbone {name}: (pretrained=None|path, in_channels=3, out_indices=(0, 1, 2, 3), "
        "drop_path_rate=0.0, drop_rate=0.0, attn_drop_rate=0.0) → list of stage maps; feat_channels."
    )
    return component


# One function per variant for the whole process, so that register() twice leaves the manager unchanged.
BACKBONES: dict[str, Callable[..., ShuntedBackbone]] = {name: make_backbone(name) for name in BACKBONE_NAMES}


def find_manager() -> ModuleType:
    """PaddleSeg's ``paddleseg.cvlibs.manager`` module, or ShuntedError saying how to get it."""
    try:
        return importlib.import_module(MANAGER_MODULE)
    except ImportError as exc:
        raise ShuntedError(
            f"PaddleSeg is not importable ({exc}); install it in its own environment: {INSTALL_HINT}"
        ) from None


def register(manager: ModuleType | None = None) -> list[str]:
    """Add the ``shunted_*`` backbones to ``manager.BACKBONES`` (PaddleSeg's, found when not given); the names."""
    manager = manager or find_manager()
    backbones = manager.BACKBONES
    for name, component in BACKBONES.items():
        if backbones.components_dict.get(name) is not component:
            backbones.add_component(component)
    return list(BACKBONES)
