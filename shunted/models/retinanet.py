"""RetinaNet on the Shunted Transformer (issue 23): ``ShuntedRetinaNet`` = backbone + FPN (P3–P7) + RetinaHead.

The mmdet ``retinanet_r50_fpn_1x`` setting that PVT v2's detection code (and so the Shunted paper) uses, with
mmdet's module names (``neck.lateral_convs.{i}.conv``, ``neck.fpn_convs.{i}.conv``,
``bbox_head.{cls,reg}_convs.{i}.conv``, ``bbox_head.retina_cls``, ``bbox_head.retina_reg``):

- backbone stages 2–4 (strides 8/16/32, channels 128/256/512);
- FPN (``start_level=1, add_extra_convs='on_input', num_outs=5``): lateral 1×1 convs to 256, top-down nearest
  upsampling + add, a 3×3 conv per level; P6 = 3×3 stride-2 conv of C5 (the backbone's last map), P7 = 3×3
  stride-2 conv of P6 with no ReLU between (mmdet's ``relu_before_extra_convs=False``); Xavier-uniform init;
- head: per branch 4 × (3×3 conv 256 + ReLU), then 3×3 convs to A·K logits and A·4 deltas (A = 9 anchors);
  normal(0, 0.01) weights, zero biases but the classifier's −log((1 − 0.01)/0.01) (prior probability 0.01).

``forward(x)`` → (cls (B, N, K), reg (B, N, 4)) over all levels' anchors (level, then place row-major, then
anchor): the raw outputs an export returns. ``loss`` (focal α 0.25 γ 2 + L1 on deltas, both divided by the
batch's positives, as mmdet's ``AnchorHead``) and ``detect`` use ``det_boxes.py`` for the box logic.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import paddle
import paddle.nn.functional as F
from paddle import nn

from . import det_boxes
from .fpn import scaled_size
from .registry import det_backbone_name, get_det_pretrained_cfg, get_variant
from .shunted import TOTAL_STRIDE, ShuntedTransformer

__all__ = ["RetinaFPN", "RetinaHead", "ShuntedRetinaNet", "focal_loss", "postprocess_outputs", "retina_loss"]

FPN_OUT = 256
PRIOR_PROB = 0.01
FOCAL_ALPHA = 0.25
FOCAL_GAMMA = 2.0
STACKED_CONVS = 4


class ConvModule(nn.Layer):
    """A conv with an optional ReLU (mmcv ``ConvModule`` without a norm: the weight is ``conv.weight``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int = 1, relu: bool = False):
        super().__init__()
        self.conv = nn.Conv2D(in_channels, out_channels, kernel, stride=stride, padding=kernel // 2)
        self.act = nn.ReLU() if relu else None

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.conv(x)
        return self.act(x) if self.act is not None else x


class RetinaFPN(nn.Layer):
    """mmdet ``FPN(in_channels, 256, start_level=…, add_extra_convs='on_input', num_outs=5)`` on the given maps."""

    def __init__(self, in_channels: Sequence[int], out_channels: int = FPN_OUT, num_extra: int = 2):
        super().__init__()
        self.lateral_convs = nn.LayerList([ConvModule(c, out_channels, 1) for c in in_channels])
        convs = [ConvModule(out_channels, out_channels, 3) for _ in in_channels]
        convs.append(ConvModule(in_channels[-1], out_channels, 3, stride=2))  # P6 on the input (C5)
        convs += [ConvModule(out_channels, out_channels, 3, stride=2) for _ in range(num_extra - 1)]
        self.fpn_convs = nn.LayerList(convs)
        for layer in self.sublayers():
            if isinstance(layer, nn.Conv2D):
                nn.initializer.XavierUniform()(layer.weight)
                nn.initializer.Constant(0.0)(layer.bias)

    def forward(self, maps: Sequence[paddle.Tensor]) -> list[paddle.Tensor]:
        laterals = [conv(maps[i]) for i, conv in enumerate(self.lateral_convs)]
        for i in range(
            len(laterals) - 1, 0, -1
        ):  # the maps are exactly ×2 apart (inputs are multiples of 32)
            up = F.interpolate(laterals[i], size=scaled_size(laterals[i], 2), mode="nearest")
            laterals[i - 1] = laterals[i - 1] + up
        outs = [self.fpn_convs[i](laterals[i]) for i in range(len(laterals))]
        outs.append(self.fpn_convs[len(laterals)](maps[-1]))
        for i in range(len(laterals) + 1, len(self.fpn_convs)):
            outs.append(self.fpn_convs[i](outs[-1]))
        return outs


class RetinaHead(nn.Layer):
    """mmdet ``RetinaHead(num_classes, 256, stacked_convs=4, feat_channels=256)``; shared over the levels."""

    def __init__(self, num_classes: int, num_anchors: int, channels: int = FPN_OUT):
        super().__init__()
        self.num_classes = num_classes
        self.num_anchors = num_anchors
        self.cls_convs = nn.LayerList(
            [ConvModule(channels, channels, 3, relu=True) for _ in range(STACKED_CONVS)]
        )
        self.reg_convs = nn.LayerList(
            [ConvModule(channels, channels, 3, relu=True) for _ in range(STACKED_CONVS)]
        )
        self.retina_cls = nn.Conv2D(channels, num_anchors * num_classes, 3, padding=1)
        self.retina_reg = nn.Conv2D(channels, num_anchors * 4, 3, padding=1)
        for layer in self.sublayers():
            if isinstance(layer, nn.Conv2D):
                nn.initializer.Normal(0.0, 0.01)(layer.weight)
                nn.initializer.Constant(0.0)(layer.bias)
        nn.initializer.Constant(-math.log((1 - PRIOR_PROB) / PRIOR_PROB))(self.retina_cls.bias)

    @staticmethod
    def _flatten(x: paddle.Tensor, width: int) -> paddle.Tensor:
        """(B, A·width, H, W) → (B, H·W·A, width)."""
        return x.transpose([0, 2, 3, 1]).reshape([0, -1, width])

    def forward(self, feats: Sequence[paddle.Tensor]) -> tuple[paddle.Tensor, paddle.Tensor]:
        cls_out, reg_out = [], []
        for feat in feats:
            c, r = feat, feat
            for conv in self.cls_convs:
                c = conv(c)
            for conv in self.reg_convs:
                r = conv(r)
            cls_out.append(self._flatten(self.retina_cls(c), self.num_classes))
            reg_out.append(self._flatten(self.retina_reg(r), 4))
        return paddle.concat(cls_out, axis=1), paddle.concat(reg_out, axis=1)


def focal_loss(logits: paddle.Tensor, targets: paddle.Tensor) -> paddle.Tensor:
    """Summed sigmoid focal loss, α 0.25, γ 2 (mmdet ``py_sigmoid_focal_loss``, Lin et al. 2017)."""
    prob = F.sigmoid(logits)
    pt = (1 - prob) * targets + prob * (1 - targets)
    weight = (FOCAL_ALPHA * targets + (1 - FOCAL_ALPHA) * (1 - targets)) * pt.pow(FOCAL_GAMMA)
    return (F.binary_cross_entropy_with_logits(logits, targets, reduction="none") * weight).sum()


class ShuntedRetinaNet(nn.Layer):
    """A Shunted Transformer backbone with RetinaNet's FPN and head.

    name: ``shunted_t_retinanet`` / ``shunted_s_retinanet`` / ``shunted_b_retinanet`` (``registry.DET_VARIANTS``).
    num_classes: object classes (no background). drop_path_rate: the backbone's (PVT v2's detection config uses
    0.1 for b1/b2). Attributes: ``backbone``, ``neck``, ``bbox_head``, ``anchor_cfg``, ``pretrained_cfg``.
    """

    def __init__(self, name: str, num_classes: int, drop_path_rate: float = 0.0):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"{name}: num_classes must be at least 1; got {num_classes}")
        variant = get_variant(det_backbone_name(name))
        self.variant_name = name
        self.num_classes = num_classes
        self.anchor_cfg = det_boxes.AnchorConfig()
        self.backbone = ShuntedTransformer(
            variant.depths,
            variant.num_conv,
            drop_path_rate=drop_path_rate,
            features_only=True,
            out_indices=(1, 2, 3),
        )
        in_channels = [f["num_chs"] for f in self.backbone.feature_info]
        self.neck = RetinaFPN(in_channels, FPN_OUT, num_extra=len(self.anchor_cfg.strides) - len(in_channels))
        self.bbox_head = RetinaHead(num_classes, self.anchor_cfg.num_anchors, FPN_OUT)
        self.pretrained_cfg = get_det_pretrained_cfg(name, num_classes)

    def no_weight_decay(self) -> set[str]:
        """Every 1-D parameter (biases, norm scales), as the backbone's recipe."""
        return {name for name, p in self.named_parameters() if p.ndim <= 1}

    def forward(self, x: paddle.Tensor) -> tuple[paddle.Tensor, paddle.Tensor]:
        """(B, 3, H, W), H and W multiples of 32 → (cls logits (B, N, K), box deltas (B, N, 4))."""
        return self.bbox_head(self.neck(self.backbone(x)))

    # -- training -----------------------------------------------------------------------------------------------
    def loss(
        self,
        outputs: tuple[paddle.Tensor, paddle.Tensor],
        input_size: tuple[int, int],
        gt_boxes: Sequence[np.ndarray],
        gt_labels: Sequence[np.ndarray],
        pad_shapes: Sequence[tuple[int, int]],
    ) -> dict[str, paddle.Tensor]:
        """:func:`retina_loss` with this model's anchors."""
        return retina_loss(outputs, input_size, gt_boxes, gt_labels, pad_shapes, self.anchor_cfg)

    # -- inference ----------------------------------------------------------------------------------------------
    def detect(
        self,
        x: paddle.Tensor,
        image_shapes: Sequence[tuple[int, int]],
        cfg: det_boxes.PostprocessConfig = det_boxes.POSTPROCESS,
    ) -> list[dict[str, np.ndarray]]:
        """Detections per image in the input's pixels (boxes clipped to image_shapes[i], its (H, W) unpadded)."""
        with paddle.no_grad():
            cls, reg = self(x)
        return postprocess_outputs(cls.numpy(), reg.numpy(), tuple(x.shape[2:]), image_shapes, cfg)


def retina_loss(
    outputs: tuple[paddle.Tensor, paddle.Tensor],
    input_size: tuple[int, int],
    gt_boxes: Sequence[np.ndarray],
    gt_labels: Sequence[np.ndarray],
    pad_shapes: Sequence[tuple[int, int]],
    anchor_cfg: det_boxes.AnchorConfig = det_boxes.ANCHORS,
) -> dict[str, paddle.Tensor]:
    """Focal classification and L1 regression losses of a batch, each summed and divided by the batch's
    positive anchors (at least 1), as mmdet's ``AnchorHead.loss``.

    outputs: (cls (B, N, K), reg (B, N, 4)); input_size: the batch tensor's (H, W); gt_boxes[i] (G, 4) x1y1x2y2 in
    its pixels, gt_labels[i] (G,) 0-based; pad_shapes[i]: image i's own size padded to 32 (anchors beyond it are
    left out, mmdet's ``valid_flags``)."""
    cls, reg = outputs
    num_anchors, num_classes = cls.shape[1], cls.shape[2]
    sizes = det_boxes.level_sizes(*input_size, anchor_cfg.strides)
    anchors = np.concatenate(det_boxes.multilevel_anchors(sizes, anchor_cfg))
    counted, cls_targets, pos_index, reg_targets = [], [], [], []
    for i, (boxes, labels, pad) in enumerate(zip(gt_boxes, gt_labels, pad_shapes, strict=True)):
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        inside = np.flatnonzero(det_boxes.valid_flags(sizes, pad, anchor_cfg))
        assigned = det_boxes.assign(anchors[inside], boxes)
        keep = assigned >= 0
        matched = assigned[keep]
        target = np.zeros((len(matched), num_classes), dtype=np.float32)
        rows = np.flatnonzero(matched > 0)
        target[rows, np.asarray(labels, dtype=np.int64)[matched[rows] - 1]] = 1.0
        counted.append(i * num_anchors + inside[keep])
        cls_targets.append(target)
        positive = assigned > 0
        pos_index.append(i * num_anchors + inside[positive])
        reg_targets.append(det_boxes.encode(anchors[inside[positive]], boxes[assigned[positive] - 1]))
    num_pos = max(sum(len(p) for p in pos_index), 1)
    flat_cls = cls.reshape([-1, num_classes])
    flat_reg = reg.reshape([-1, 4])
    logits = paddle.gather(flat_cls, paddle.to_tensor(np.concatenate(counted)))
    loss_cls = focal_loss(logits, paddle.to_tensor(np.concatenate(cls_targets))) / num_pos
    pos = np.concatenate(pos_index)
    if len(pos):
        deltas = paddle.gather(flat_reg, paddle.to_tensor(pos))
        target = paddle.to_tensor(np.concatenate(reg_targets).astype(np.float32))
        loss_box = (deltas - target).abs().sum() / num_pos
    else:
        loss_box = flat_reg.sum() * 0.0
    return {"loss_cls": loss_cls, "loss_box": loss_box}


def postprocess_outputs(
    cls: np.ndarray,
    reg: np.ndarray,
    input_size: tuple[int, int],
    image_shapes: Sequence[tuple[int, int]],
    cfg: det_boxes.PostprocessConfig = det_boxes.POSTPROCESS,
    anchor_cfg: det_boxes.AnchorConfig = det_boxes.ANCHORS,
) -> list[dict[str, np.ndarray]]:
    """Raw outputs of a batch (dygraph or an export) → detections per image (``det_boxes.postprocess``)."""
    if input_size[0] % TOTAL_STRIDE or input_size[1] % TOTAL_STRIDE:
        raise ValueError(f"the input size {list(input_size)} is not a multiple of {TOTAL_STRIDE}")
    sizes = det_boxes.level_sizes(*input_size, anchor_cfg.strides)
    anchor_levels = det_boxes.multilevel_anchors(sizes, anchor_cfg)
    bounds = np.cumsum([0] + [len(a) for a in anchor_levels])
    results = []
    for i, shape in enumerate(image_shapes):
        cls_levels = [cls[i, bounds[k] : bounds[k + 1]] for k in range(len(anchor_levels))]
        reg_levels = [reg[i, bounds[k] : bounds[k + 1]] for k in range(len(anchor_levels))]
        results.append(det_boxes.postprocess(cls_levels, reg_levels, anchor_levels, tuple(shape), cfg))
    return results
