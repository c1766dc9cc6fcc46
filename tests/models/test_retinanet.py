"""RetinaNet (shunted/models/retinanet.py, det_boxes.py) against torchvision's RetinaNet (tests/reference/
torchvision_retinanet.py, a copy of torchvision 0.28.0's code): anchors, box coding, head, losses and
post-processed detections equal to float noise with the same weights and inputs. Where mmdet (followed here) and
torchvision differ, a test shows the difference (README "Detection": the list).
"""

from __future__ import annotations

import numpy as np
import paddle
import pytest
import torch

import shunted
from shunted.convert.writer import write_pdparams
from shunted.errors import WeightsError
from shunted.models import det_boxes, retinanet
from shunted.models.weights import state_dict_numpy
from tests.reference import torchvision_retinanet as tv

TOL = 1e-5
DEMO = shunted.__path__[0] + "/assets/demo/ckpt_T_cifar10_fp16.pth"
INPUT = (256, 384)  # multiples of 128: torchvision's strides (size // level size) are then exact
IMAGE = (250, 370)  # the image inside the padded input: boxes are clipped to it


def _rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-12))


def _tv_anchor_sizes(cfg=det_boxes.ANCHORS) -> list[list[float]]:
    return [[s * float(k) for k in cfg.scales()] for s in cfg.strides]


def _anchor_levels(size=INPUT) -> list[np.ndarray]:
    return det_boxes.multilevel_anchors(det_boxes.level_sizes(*size))


# -- anchors ---------------------------------------------------------------------------------------------------------
def test_anchors_equal_torchvision_up_to_its_rounding():
    sizes = det_boxes.level_sizes(*INPUT)
    assert sizes == [(32, 48), (16, 24), (8, 12), (4, 6), (2, 3)]
    cfg = det_boxes.AnchorConfig()
    cells = [tv.generate_anchors(s, cfg.ratios) for s in _tv_anchor_sizes()]
    expected = tv.grid_anchors(sizes, tv.anchor_strides(INPUT, sizes), cells)
    for stride, size, cell, ref in zip(cfg.strides, sizes, cells, expected, strict=True):
        base = det_boxes.base_anchors(stride)
        # torchvision rounds the base anchors to whole pixels, mmdet does not: equal after rounding ...
        np.testing.assert_array_equal(np.round(base), cell.numpy())
        np.testing.assert_array_equal(det_boxes.grid_anchors(np.round(base), size, stride), ref.numpy())
        # ... and unrounded they have the exact areas and ratios
        w, h = base[:, 2] - base[:, 0], base[:, 3] - base[:, 1]
        np.testing.assert_allclose(
            w * h,
            np.repeat([np.square(_tv_anchor_sizes()[cfg.strides.index(stride)])], 3, 0).ravel(),
            rtol=1e-6,
        )
        np.testing.assert_allclose(h / w, np.repeat(cfg.ratios, cfg.scales_per_octave), rtol=1e-6)
    # mutation: scale-major order (scales outer, ratios inner) is not torchvision's nor mmdet's
    base = det_boxes.base_anchors(8).reshape(3, 3, 4).transpose(1, 0, 2).reshape(9, 4)
    assert not np.array_equal(np.round(base), cells[0].numpy())


def test_torchvision_strides_drift_when_the_input_is_not_a_multiple_of_128():
    # 800 × 1216 (a 1333 × 800 resize padded to 32): P6 is 13 × 19, P7 7 × 10; torchvision takes 800 // 13 = 61
    sizes = det_boxes.level_sizes(800, 1216)
    assert sizes[3:] == [(13, 19), (7, 10)]
    assert tv.anchor_strides((800, 1216), sizes)[3:] == [[61, 64], [114, 121]]  # mmdet: 64 and 128


def test_valid_flags_leave_out_places_beyond_the_image_padding():
    sizes = det_boxes.level_sizes(64, 96)
    flags = det_boxes.valid_flags(sizes, (64, 64))
    first = flags[: 8 * 12 * 9].reshape(8, 12, 9)
    assert first[:, :8].all() and not first[:, 8:].any()
    assert flags[8 * 12 * 9 :].sum() < len(flags) - 8 * 12 * 9  # coarser levels are cut too


# -- box coding and matching -----------------------------------------------------------------------------------------
def _boxes(rng, n, size=200.0):
    xy = rng.uniform(0, size, (n, 2))
    wh = rng.uniform(4, size / 2, (n, 2))
    return np.concatenate([xy, xy + wh], 1).astype(np.float32)


def test_box_coding_equals_torchvision():
    rng = np.random.default_rng(0)
    anchors, gt = _boxes(rng, 500), _boxes(rng, 500)
    coder = tv.BoxCoder((1.0, 1.0, 1.0, 1.0))
    deltas = det_boxes.encode(anchors, gt)
    assert _rel(deltas, coder.encode_single(torch.from_numpy(gt), torch.from_numpy(anchors)).numpy()) < TOL
    codes = rng.normal(0, 1, (500, 4)).astype(np.float32)
    ref = coder.decode_single(torch.from_numpy(codes), torch.from_numpy(anchors)).numpy()
    assert _rel(det_boxes.decode(anchors, codes), ref) < TOL
    np.testing.assert_allclose(det_boxes.decode(anchors, deltas), gt, rtol=1e-5, atol=1e-3)
    # mmdet clamps dw, dh on both sides, torchvision only above: they part below −log(1000/16)
    codes[:, 2] = -6.0
    assert not np.allclose(
        det_boxes.decode(anchors, codes),
        coder.decode_single(torch.from_numpy(codes), torch.from_numpy(anchors)).numpy(),
    )


def test_matching_equals_torchvision_on_separate_objects():
    anchors = np.concatenate(_anchor_levels())
    gt = np.array(
        [[10, 12, 70, 90], [150, 20, 230, 60], [260, 140, 370, 245], [40, 160, 52, 175]], np.float32
    )
    mine = det_boxes.assign(anchors, gt)
    ref = tv.compute_matches([{"boxes": torch.from_numpy(gt)}], [torch.from_numpy(anchors)])[0].numpy()
    # torchvision: −2 ignored, −1 background, i gt i;  here: −1 ignored, 0 background, i + 1 gt i
    np.testing.assert_array_equal(mine, np.where(ref == -2, -1, ref + 1))
    assert (mine > 0).sum() >= len(gt) and (mine == -1).any()


def test_low_quality_match_goes_to_the_gt_it_serves_as_mmdet_not_to_its_argmax_as_torchvision():
    big, small = [0, 0, 100, 100], [0, 0, 100, 20]
    anchors = np.array(
        [[0, 0, 100, 100], [0, 0, 100, 45]], np.float32
    )  # anchor 1: IoU 0.45 with big, 0.44 small
    gt = np.array([big, small], np.float32)
    assert det_boxes.assign(anchors, gt).tolist() == [1, 2]  # anchor 1 → small (its only match)
    ref = tv.compute_matches([{"boxes": torch.from_numpy(gt)}], [torch.from_numpy(anchors)])[0]
    assert ref.tolist() == [0, 0]  # torchvision: anchor 1 → big, small has none


# -- head, loss, post-processing -------------------------------------------------------------------------------------
CHANNELS, CLASSES = 32, 3


def _heads(seed=0):
    paddle.seed(seed)
    head = retinanet.RetinaHead(CLASSES, 9, CHANNELS)
    rng = np.random.default_rng(seed)
    state = {k: rng.normal(0, 0.05, v.shape).astype(np.float32) for k, v in state_dict_numpy(head).items()}
    head.set_state_dict({k: paddle.to_tensor(v) for k, v in state.items()})
    cls_head, reg_head = (
        tv.RetinaNetClassificationHead(CHANNELS, 9, CLASSES),
        tv.RetinaNetRegressionHead(CHANNELS, 9),
    )
    mapped = {}
    for i in range(4):
        for p in ("weight", "bias"):
            mapped[f"cls.conv.{2 * i}.{p}"] = state[f"cls_convs.{i}.conv.{p}"]
            mapped[f"reg.conv.{2 * i}.{p}"] = state[f"reg_convs.{i}.conv.{p}"]
    for p in ("weight", "bias"):
        mapped[f"cls.cls_logits.{p}"] = state[f"retina_cls.{p}"]
        mapped[f"reg.bbox_reg.{p}"] = state[f"retina_reg.{p}"]
    cls_head.load_state_dict({k[4:]: torch.from_numpy(v) for k, v in mapped.items() if k.startswith("cls.")})
    reg_head.load_state_dict({k[4:]: torch.from_numpy(v) for k, v in mapped.items() if k.startswith("reg.")})
    return head, cls_head, reg_head


def test_head_equals_torchvision():
    head, cls_head, reg_head = _heads()
    rng = np.random.default_rng(1)
    feats = [
        rng.normal(0, 1, (2, CHANNELS, h, w)).astype(np.float32) for h, w in det_boxes.level_sizes(*INPUT)
    ]
    cls, reg = head([paddle.to_tensor(f) for f in feats])
    with torch.no_grad():
        tfeats = [torch.from_numpy(f) for f in feats]
        assert _rel(cls.numpy(), cls_head(tfeats).numpy()) < TOL
        assert _rel(reg.numpy(), reg_head(tfeats).numpy()) < TOL


def _outputs(batch, seed=2, shift=-3.0):
    n = sum(len(a) for a in _anchor_levels())
    rng = np.random.default_rng(seed)
    cls = (rng.normal(0, 1.5, (batch, n, CLASSES)) + shift).astype(np.float32)
    reg = rng.normal(0, 0.3, (batch, n, 4)).astype(np.float32)
    return cls, reg


GT = [
    (np.array([[10, 12, 70, 90], [150, 20, 230, 60], [260, 140, 370, 245]], np.float32), np.array([0, 2, 1])),
    (np.array([[30, 30, 200, 220], [300, 10, 340, 40]], np.float32), np.array([1, 1])),
]


def _tv_loss(cls, reg, gts):
    anchors = torch.from_numpy(np.concatenate(_anchor_levels()))
    targets = [{"boxes": torch.from_numpy(b), "labels": torch.from_numpy(lab)} for b, lab in gts]
    head_outputs = {"cls_logits": torch.from_numpy(cls), "bbox_regression": torch.from_numpy(reg)}
    cls_head, reg_head = tv.RetinaNetClassificationHead(8, 9, CLASSES), tv.RetinaNetRegressionHead(8, 9)
    return tv.compute_loss(cls_head, reg_head, targets, head_outputs, [anchors] * len(gts))


def _my_loss(cls, reg, gts):
    return retinanet.retina_loss(
        (paddle.to_tensor(cls), paddle.to_tensor(reg)),
        INPUT,
        [b for b, _ in gts],
        [lab for _, lab in gts],
        [INPUT] * len(gts),
    )


def test_loss_equals_torchvision_for_one_image_and_mmdets_batch_normalisation_for_two(monkeypatch):
    for k in range(2):
        cls, reg = _outputs(1, seed=k)
        mine, ref = _my_loss(cls, reg, GT[k : k + 1]), _tv_loss(cls, reg, GT[k : k + 1])
        assert _rel(float(mine["loss_cls"]), float(ref["classification"])) < TOL
        assert _rel(float(mine["loss_box"]), float(ref["bbox_regression"])) < TOL
    # two images: mmdet divides the batch's sums by the batch's positives, torchvision each image by its own
    cls, reg = _outputs(2, seed=5)
    positives = [
        int(
            (
                tv.compute_matches(
                    [{"boxes": torch.from_numpy(b)}], [torch.from_numpy(np.concatenate(_anchor_levels()))]
                )[0]
                >= 0
            ).sum()
        )
        for b, _ in GT
    ]
    sums = [_tv_loss(cls[i : i + 1], reg[i : i + 1], GT[i : i + 1]) for i in range(2)]
    mine = _my_loss(cls, reg, GT)
    for key, ref_key in (("loss_cls", "classification"), ("loss_box", "bbox_regression")):
        expected = sum(float(s[ref_key]) * p for s, p in zip(sums, positives, strict=True)) / sum(positives)
        assert _rel(float(mine[key]), expected) < TOL
    # mutation: α 0.75 instead of 0.25 moves the classification loss far beyond the tolerance
    monkeypatch.setattr(retinanet, "FOCAL_ALPHA", 0.75)
    cls, reg = _outputs(1)
    assert (
        _rel(
            float(_my_loss(cls, reg, GT[:1])["loss_cls"]), float(_tv_loss(cls, reg, GT[:1])["classification"])
        )
        > 0.1
    )


def test_loss_of_an_image_without_boxes_is_background_only():
    cls, reg = _outputs(1)
    mine = _my_loss(cls, reg, [(np.zeros((0, 4), np.float32), np.zeros(0, np.int64))])
    ref = _tv_loss(cls, reg, [(np.zeros((0, 4), np.float32), np.zeros(0, np.int64))])
    assert _rel(float(mine["loss_cls"]), float(ref["classification"])) < TOL
    assert float(mine["loss_box"]) == 0.0


def test_detections_equal_torchvision():
    cls, reg = _outputs(2, seed=7)
    levels = _anchor_levels()
    bounds = np.cumsum([0] + [len(a) for a in levels])
    assert (1 / (1 + np.exp(-cls[0, : bounds[1]])) > 0.05).sum() > 1000  # the top-1000 cut is exercised
    mine = retinanet.postprocess_outputs(cls, reg, INPUT, [IMAGE, INPUT])
    split = lambda x: [torch.from_numpy(x[:, bounds[k] : bounds[k + 1]]) for k in range(len(levels))]  # noqa: E731
    ref = tv.postprocess_detections(
        {"cls_logits": split(cls), "bbox_regression": split(reg)},
        [[torch.from_numpy(a) for a in levels]] * 2,
        [IMAGE, INPUT],
        detections_per_img=100,
    )
    for m, r in zip(mine, ref, strict=True):
        assert len(m["scores"]) == len(r["scores"]) == 100
        np.testing.assert_array_equal(m["labels"], r["labels"].numpy())
        np.testing.assert_allclose(m["scores"], r["scores"].numpy(), rtol=1e-6)
        np.testing.assert_allclose(m["boxes"], r["boxes"].numpy(), rtol=1e-5, atol=1e-3)
    assert mine[0]["boxes"][:, 2].max() <= IMAGE[1] and mine[0]["boxes"][:, 3].max() <= IMAGE[0]


def test_nms_is_class_wise():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [0, 0, 10, 10]], np.float32)
    scores = np.array([0.9, 0.8, 0.7], np.float32)
    assert det_boxes.batched_nms(boxes, scores, np.array([0, 0, 1]), 0.5).tolist() == [0, 2]


# -- the network: FPN, factory, weights ------------------------------------------------------------------------------
def test_fpn_is_mmdets_with_p6_on_c5_and_no_relu_before_p7():
    paddle.seed(0)
    neck = retinanet.RetinaFPN([16, 24, 32], 8)
    rng = np.random.default_rng(0)
    maps = [
        rng.normal(0, 1, (1, c, 16 // 2**i, 24 // 2**i)).astype(np.float32)
        for i, c in enumerate([16, 24, 32])
    ]
    outs = [o.numpy() for o in neck([paddle.to_tensor(m) for m in maps])]
    w = {k: torch.from_numpy(v) for k, v in state_dict_numpy(neck).items()}

    def conv(x, n, s=1, p=1):
        return torch.nn.functional.conv2d(x, w[f"{n}.conv.weight"], w[f"{n}.conv.bias"], s, p)

    t = [torch.from_numpy(m) for m in maps]
    lat = [conv(t[i], f"lateral_convs.{i}", p=0) for i in range(3)]
    for i in (2, 1):
        lat[i - 1] = lat[i - 1] + torch.nn.functional.interpolate(
            lat[i], size=lat[i - 1].shape[2:], mode="nearest"
        )
    ref = [conv(lat[i], f"fpn_convs.{i}") for i in range(3)]
    ref.append(conv(t[2], "fpn_convs.3", s=2))
    p7 = conv(ref[3], "fpn_convs.4", s=2)
    for o, r in zip(outs, [*ref, p7], strict=True):
        assert _rel(o, r.numpy()) < TOL
    assert [o.shape[2:] for o in outs] == [(16, 24), (8, 12), (4, 6), (2, 3), (1, 2)]
    # torchvision's LastLevelP6P7 puts a ReLU before P7: a different output
    assert _rel(outs[4], conv(torch.relu(ref[3]), "fpn_convs.4", s=2).numpy()) > 0.1


def test_model_builds_loads_a_backbone_and_round_trips_its_weights(tmp_path):
    model = shunted.create_model("shunted_t_retinanet", num_classes=CLASSES, backbone_pretrained=DEMO)
    assert model.backbone_sha256 and model.pretrained_cfg.num_classes == CLASSES
    cls_model = shunted.create_model("shunted_t", pretrained=DEMO)
    np.testing.assert_array_equal(
        model.backbone.block3[0].attn.q.weight.numpy(), cls_model.block3[0].attn.q.weight.numpy()
    )
    model.eval()
    x = paddle.to_tensor(np.random.default_rng(0).normal(0, 1, (1, 3, 64, 96)).astype(np.float32))
    cls, reg = model(x)
    assert cls.shape == [1, sum(len(a) for a in _anchor_levels((64, 96))), CLASSES] and reg.shape[2] == 4
    path = tmp_path / "det.pdparams"
    write_pdparams(path, state_dict_numpy(model))
    again = shunted.create_model("shunted_t_retinanet", pretrained=path)
    again.eval()
    assert again.num_classes == CLASSES
    np.testing.assert_array_equal(again(x)[0].numpy(), cls.numpy())
    with pytest.raises(WeightsError, match="holds shunted_t_retinanet weights, not shunted_s_retinanet"):
        shunted.create_model("shunted_s_retinanet", pretrained=path)
    with pytest.raises(WeightsError, match="classification checkpoint.*backbone_pretrained"):
        shunted.create_model("shunted_t_retinanet", pretrained=DEMO)
    with pytest.raises(WeightsError, match="not shunted_s"):
        shunted.create_model("shunted_s_retinanet", num_classes=2, backbone_pretrained=DEMO)
