"""Semantic FPN on the Shunted Transformer (issue 15): ``ShuntedFPN`` = features_only backbone + ``SemanticFPNHead``.

The head is Kirillov et al., "Panoptic Feature Pyramid Networks" (CVPR 2019), semantic branch, as mmseg's ``FPN``
neck followed by its ``FPNHead`` (the setting of the Shunted/PVT papers' ADE20K "Semantic FPN" rows):

- FPN neck on the four stage maps (strides 4/8/16/32, channels 64/128/256/512, ``shunted.py``): lateral 1×1 convs
  to ``fpn_channels`` (256), top-down pathway (nearest ×2 upsampling + add, coarse to fine), then a 3×3 conv
  (256) per level. Both convs have a bias and no norm/activation, as in mmseg's ``FPN``.
- Per level i (stride s): ``max(1, log2(s/4))`` blocks of [3×3 conv without bias + GroupNorm(32) + ReLU, then a
  bilinear ×2 upsampling (align_corners=False) while the level is coarser than stride 4]; ``channels`` (128,
  mmseg's semantic FPN default) wide. The four stride-4 maps are summed.
- Dropout2D(0.1), 1×1 classifier ``conv_seg``, bilinear ×4 (align_corners=False) back to the input size.

Any input size: the image is padded with zeros at the bottom/right to a multiple of 32 (the backbone's total
stride) and the logits are cropped back, so every ×2 step is exact.

Initialisation (mmseg's): neck convs Xavier-uniform with zero bias (mmseg ``FPN.init_weights``); head convs He
normal, fan_out, ReLU gain (mmcv ``ConvModule``; the same rule as the backbone's ``init_weights`` in
``shunted.py``); GroupNorm weight 1, bias 0; ``conv_seg`` normal(0, 0.01), bias 0 (mmseg ``BaseDecodeHead``).

State dict: ``backbone.*`` (the classification names of ``shunted.py``, head excluded) and ``decode_head.*``:
``decode_head.lateral_convs.{i}``, ``decode_head.fpn_convs.{i}`` (the neck, kept inside the decode head so that
``model.decode_head`` is everything that is not the backbone), ``decode_head.scale_heads.{i}.{k}.conv`` /
``.gn`` and ``decode_head.conv_seg``. ``tests/reference/torch_seg_reference.py`` is the PyTorch transcription.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import paddle
import paddle.nn.functional as F
from paddle import nn

from .registry import (
    EMBED_DIMS,
    FPN_CHANNELS,
    FPN_HEAD_CHANNELS,
    STRIDES,
    get_seg_pretrained_cfg,
    get_variant,
    seg_backbone_name,
)
from .shunted import TOTAL_STRIDE, ShuntedTransformer

__all__ = ["ConvGNReLU", "SemanticFPNHead", "ShuntedFPN", "Upsample2x"]

GN_GROUPS = 32
GN_EPS = 1e-5  # PyTorch's and Paddle's default
DROPOUT = 0.1


def scaled_size(x: paddle.Tensor, factor: int) -> list:
    """``factor`` × the height and width of ``x`` as the ``size`` of ``F.interpolate`` (a tensor size when the
    traced shape is unknown).

    The resizes give ``size``, not ``scale_factor``: the same result (ratio in/out = 1/factor either way), but a
    ``scale_factor`` becomes a float64 array attribute that paddle2onnx 2.1 cannot convert (it exits) —
    ``shunted export`` of the segmentation models (``shunted/engine/export.py``).
    """
    height, width = x.shape[2], x.shape[3]
    if isinstance(height, int) and isinstance(width, int) and height > 0 and width > 0:
        return [height * factor, width * factor]
    shape = paddle.shape(x)
    return [shape[2] * factor, shape[3] * factor]


class ConvGNReLU(nn.Layer):
    """3×3 conv (no bias) + GroupNorm + ReLU (mmcv ``ConvModule`` names: ``conv``, ``gn``)."""

    def __init__(self, in_channels: int, out_channels: int, num_groups: int = GN_GROUPS):
        super().__init__()
        self.conv = nn.Conv2D(in_channels, out_channels, 3, padding=1, bias_attr=False)
        self.gn = nn.GroupNorm(num_groups, out_channels, epsilon=GN_EPS)
        self.act = nn.ReLU()

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.act(self.gn(self.conv(x)))


class Upsample2x(nn.Layer):
    """Bilinear ×2 upsampling, align_corners=False (half-pixel centres, Paddle's ``align_mode=0``)."""

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return F.interpolate(x, size=scaled_size(x, 2), mode="bilinear", align_corners=False, align_mode=0)


class SemanticFPNHead(nn.Layer):
    """FPN neck + semantic FPN head: the four stage maps → logits at stride 4 (before the final ×4).

    in_channels/strides: of the backbone's maps, finest first. fpn_channels: neck width (256). channels: head
    width (128; must be divisible by num_groups). dropout_ratio: Dropout2D before the classifier (0.1).
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: Sequence[int] = EMBED_DIMS,
        strides: Sequence[int] = STRIDES,
        fpn_channels: int = FPN_CHANNELS,
        channels: int = FPN_HEAD_CHANNELS,
        dropout_ratio: float = DROPOUT,
        num_groups: int = GN_GROUPS,
    ):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1; got {num_classes}")
        if len(in_channels) != len(strides):
            raise ValueError(f"{len(in_channels)} in_channels for {len(strides)} strides")
        if channels % num_groups:
            raise ValueError(
                f"head channels {channels} are not divisible by the {num_groups} GroupNorm groups"
            )
        self.num_classes = num_classes
        self.in_channels = tuple(in_channels)
        self.strides = tuple(strides)
        self.fpn_channels = fpn_channels
        self.channels = channels
        self.lateral_convs = nn.LayerList([nn.Conv2D(c, fpn_channels, 1) for c in self.in_channels])
        self.fpn_convs = nn.LayerList(
            [nn.Conv2D(fpn_channels, fpn_channels, 3, padding=1) for _ in self.in_channels]
        )
        self.scale_heads = nn.LayerList()
        for stride in self.strides:
            length = max(1, int(math.log2(stride) - math.log2(self.strides[0])))
            blocks: list[nn.Layer] = []
            for k in range(length):
                blocks.append(ConvGNReLU(fpn_channels if k == 0 else channels, channels, num_groups))
                if stride != self.strides[0]:
                    blocks.append(Upsample2x())
            self.scale_heads.append(nn.Sequential(*blocks))
        self.dropout = nn.Dropout2D(dropout_ratio) if dropout_ratio > 0 else nn.Identity()
        self.conv_seg = nn.Conv2D(channels, num_classes, 1)
        self.init_weights()

    def init_weights(self) -> None:
        for conv in [*self.lateral_convs, *self.fpn_convs]:
            nn.initializer.XavierUniform()(conv.weight)
            nn.initializer.Constant(0.0)(conv.bias)
        for layer in self.scale_heads.sublayers():
            if isinstance(layer, ConvGNReLU):
                out_channels, _, kh, kw = layer.conv.weight.shape
                nn.initializer.Normal(0.0, math.sqrt(2.0 / (out_channels * kh * kw)))(layer.conv.weight)
                nn.initializer.Constant(1.0)(layer.gn.weight)
                nn.initializer.Constant(0.0)(layer.gn.bias)
        nn.initializer.Normal(0.0, 0.01)(self.conv_seg.weight)
        nn.initializer.Constant(0.0)(self.conv_seg.bias)

    def forward_neck(self, maps: Sequence[paddle.Tensor]) -> list[paddle.Tensor]:
        """The FPN outputs (``fpn_channels`` wide) at the maps' strides."""
        # Indexing, not zip(..., strict=True): paddle.jit.to_static (shunted export) cannot convert the latter.
        laterals = [conv(maps[i]) for i, conv in enumerate(self.lateral_convs)]
        for i in range(len(laterals) - 1, 0, -1):
            up = F.interpolate(laterals[i], size=scaled_size(laterals[i], 2), mode="nearest")
            laterals[i - 1] = laterals[i - 1] + up
        return [conv(laterals[i]) for i, conv in enumerate(self.fpn_convs)]

    def forward(self, maps: Sequence[paddle.Tensor]) -> paddle.Tensor:
        """Stage maps (finest first; sizes exact ×2 apart) → logits (B, K, H/4, W/4)."""
        feats = self.forward_neck(maps)
        out = self.scale_heads[0](feats[0])
        for i in range(1, len(feats)):  # no zip(strict=True) here either (to_static)
            out = out + self.scale_heads[i](feats[i])
        return self.conv_seg(self.dropout(out))


class ShuntedFPN(nn.Layer):
    """A Shunted Transformer backbone with the semantic FPN head: ``forward(x)`` → logits (B, K, H, W).

    name: ``shunted_t_fpn`` / ``shunted_s_fpn`` / ``shunted_b_fpn`` (``registry.SEG_VARIANTS``).
    channels: head width (128, mmseg's semantic FPN default); fpn_channels: neck width (256).
    drop_path_rate, drop_rate, attn_drop_rate: the backbone's regularisation (0 by default).
    Attributes: ``backbone`` (``ShuntedTransformer(features_only=True)``), ``decode_head`` (``SemanticFPNHead``),
    ``num_classes``, ``variant_name``, ``pretrained_cfg`` (the backbone's mean/std, this model's classes).
    """

    def __init__(
        self,
        name: str,
        num_classes: int,
        channels: int = FPN_HEAD_CHANNELS,
        fpn_channels: int = FPN_CHANNELS,
        dropout_ratio: float = DROPOUT,
        drop_path_rate: float = 0.0,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
    ):
        super().__init__()
        variant = get_variant(seg_backbone_name(name))
        if channels % GN_GROUPS or num_classes < 1:  # checked before the backbone is built
            raise ValueError(
                f"{name}: head channels must be a multiple of {GN_GROUPS} (got {channels}) and num_classes at "
                f"least 1 (got {num_classes})"
            )
        self.variant_name = name
        self.backbone_variant = variant
        self.num_classes = num_classes
        self.backbone = ShuntedTransformer(
            variant.depths,
            variant.num_conv,
            drop_rate=drop_rate,
            attn_drop_rate=attn_drop_rate,
            drop_path_rate=drop_path_rate,
            features_only=True,
        )
        self.decode_head = SemanticFPNHead(
            num_classes,
            in_channels=[f["num_chs"] for f in self.backbone.feature_info],
            strides=[f["reduction"] for f in self.backbone.feature_info],
            fpn_channels=fpn_channels,
            channels=channels,
            dropout_ratio=dropout_ratio,
        )
        self.pretrained_cfg = get_seg_pretrained_cfg(name, num_classes)

    def no_weight_decay(self) -> set[str]:
        """Every 1-D parameter (biases, LayerNorm/BatchNorm/GroupNorm scales), as the backbone's recipe."""
        return {name for name, p in self.named_parameters() if p.ndim <= 1}

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        if x.ndim != 4:
            raise ValueError(f"ShuntedFPN needs a (B, C, H, W) input; got shape {list(x.shape)}")
        height, width = x.shape[2], x.shape[3]
        known = isinstance(height, int) and isinstance(width, int) and height > 0 and width > 0
        if known:
            pad_h, pad_w = -height % TOTAL_STRIDE, -width % TOTAL_STRIDE
            if pad_h or pad_w:  # zeros at the bottom/right: [left, right, top, bottom] of the last two axes
                x = F.pad(x, [0, pad_w, 0, pad_h], mode="constant", value=0.0, data_format="NCHW")
        logits = self.decode_head(self.backbone(x))
        logits = F.interpolate(
            logits, size=scaled_size(logits, 4), mode="bilinear", align_corners=False, align_mode=0
        )
        if known and (pad_h or pad_w):
            logits = logits[:, :, :height, :width]
        return logits
