"""The segmentation model (shunted/models/fpn.py): parity with its PyTorch transcription, weights, errors.

The transcription (tests/reference/torch_seg_reference.py) is the independent yardstick: backbone from
torch_reference.py, neck/head written from the Semantic FPN description, every weight — GroupNorm affine included —
drawn at random. Mutated Paddle heads (align_corners=True, nearest instead of bilinear and the converse) must miss
it by far more than the tolerance, so the comparison can tell those details apart.
"""

from __future__ import annotations

import numpy as np
import paddle
import paddle.nn.functional as F
import pytest

import shunted
from shunted.convert import read_weights
from shunted.convert.safetensors_io import write as write_safetensors
from shunted.convert.writer import write_pdparams
from shunted.errors import WeightsError
from shunted.models import fpn
from shunted.models.registry import is_seg_model, list_seg_models, seg_backbone_name
from shunted.models.weights import apply_state_dict, state_dict_numpy

TOL = 2e-6  # ‖Δ‖/‖ref‖, float32 rounding only (measured ≈ 1e-6 for the full model, ≈ 8e-7 for the head)
MUTANT_MIN = 1e-2  # a mutated head misses by at least this much (measured 0.14, 0.27, 0.21)
NUM_CLASSES = 7
DEMO = shunted.__path__[0] + "/assets/demo/ckpt_T_cifar10_fp16.pth"
STAGES = ((64, 4), (128, 8), (256, 16), (512, 32))


def _rel(actual: np.ndarray, expected: np.ndarray) -> float:
    return float(np.linalg.norm(actual - expected) / np.linalg.norm(expected))


def _input(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((1, 3, height, width)).astype(np.float32)


def _maps(height: int = 64, width: int = 96) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [rng.standard_normal((2, c, height // s, width // s)).astype(np.float32) for c, s in STAGES]


@pytest.fixture(scope="module")
def pair():
    """A randomised torch transcription and the Paddle model that received its weights (eval mode)."""
    pytest.importorskip("torch")
    from reference import torch_seg_reference as ref

    torch_model = ref.randomize_(ref.build("shunted_t_fpn", NUM_CLASSES), seed=15)
    model = shunted.create_model("shunted_t_fpn", num_classes=NUM_CLASSES)
    model.eval()
    apply_state_dict(model, ref.paddle_state_dict(torch_model), source="torch_seg_reference")
    return torch_model, model


def _torch_head(torch_model, maps):
    import torch

    with torch.no_grad():
        return torch_model.decode_head([torch.from_numpy(m) for m in maps]).numpy()


def _torch_forward(torch_model, x):
    import torch

    with torch.no_grad():
        return torch_model(torch.from_numpy(x)).numpy()


# -- registry -----------------------------------------------------------------------------------------------------
def test_seg_registry():
    assert list_seg_models() == ["shunted_t_fpn", "shunted_s_fpn", "shunted_b_fpn"]
    assert shunted.list_seg_models() == list_seg_models()
    assert is_seg_model("shunted_s_fpn") and not is_seg_model("shunted_s")
    assert seg_backbone_name("shunted_b_fpn") == "shunted_b"
    assert "shunted_t_fpn" not in shunted.list_models()  # the classifier list stays as it was
    with pytest.raises(ValueError, match="shunted_t_fpn"):
        seg_backbone_name("shunted_t")


# -- parity with the PyTorch transcription ---------------------------------------------------------------------
def test_gn_affine_is_randomised(pair):
    """The parity below exercises GroupNorm's scale and shift (not the trivial 1 and 0)."""
    _, model = pair
    gn = model.decode_head.scale_heads[3][2].gn
    assert np.abs(gn.weight.numpy() - 1).min() > 0 and np.abs(gn.bias.numpy()).max() > 0.05


def test_head_matches_torch(pair):
    torch_model, model = pair
    maps = _maps()
    expected = _torch_head(torch_model, maps)
    actual = model.decode_head([paddle.to_tensor(m) for m in maps]).numpy()
    assert actual.shape == expected.shape == (2, NUM_CLASSES, 16, 24)
    assert _rel(actual, expected) <= TOL


@pytest.mark.parametrize("size", [(64, 64), (70, 90)], ids=["64x64", "70x90"])
def test_model_matches_torch(pair, size):
    torch_model, model = pair
    x = _input(*size)
    expected = _torch_forward(torch_model, x)
    actual = model(paddle.to_tensor(x)).numpy()
    assert actual.shape == expected.shape == (1, NUM_CLASSES, *size)
    assert _rel(actual, expected) <= TOL


def _align_corners_true(self, x):
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)


def _nearest(self, x):
    return F.interpolate(x, scale_factor=2, mode="nearest")


def _bilinear_top_down(self, maps):
    laterals = [conv(x) for conv, x in zip(self.lateral_convs, maps, strict=True)]
    for i in range(len(laterals) - 1, 0, -1):
        laterals[i - 1] = laterals[i - 1] + F.interpolate(
            laterals[i], scale_factor=2, mode="bilinear", align_corners=False
        )
    return [conv(x) for conv, x in zip(self.fpn_convs, laterals, strict=True)]


@pytest.mark.parametrize(
    ("target", "mutant"),
    [
        ("Upsample2x.forward", _align_corners_true),
        ("Upsample2x.forward", _nearest),
        ("SemanticFPNHead.forward_neck", _bilinear_top_down),
    ],
    ids=["head-align-corners-true", "head-nearest", "top-down-bilinear"],
)
def test_mutated_head_misses_torch(pair, monkeypatch, target, mutant):
    torch_model, model = pair
    cls, attr = target.split(".")
    monkeypatch.setattr(getattr(fpn, cls), attr, mutant)
    maps = _maps()
    err = _rel(model.decode_head([paddle.to_tensor(m) for m in maps]).numpy(), _torch_head(torch_model, maps))
    assert err > MUTANT_MIN


# -- shape contract (no torch) ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def seg_model():
    model = shunted.create_model("shunted_t_fpn", num_classes=5, backbone_pretrained=DEMO)
    model.eval()
    return model


def test_any_size_is_padded_bottom_right_and_cropped(seg_model):
    x = _input(38, 45, seed=3)
    out = seg_model(paddle.to_tensor(x)).numpy()
    assert out.shape == (1, 5, 38, 45)
    padded = np.zeros((1, 3, 64, 64), np.float32)
    padded[:, :, :38, :45] = x
    full = seg_model(paddle.to_tensor(padded)).numpy()
    assert full.shape == (1, 5, 64, 64)
    np.testing.assert_allclose(out, full[:, :, :38, :45], rtol=0, atol=1e-5)


def test_attributes_and_init(seg_model):
    assert seg_model.variant_name == "shunted_t_fpn" and seg_model.num_classes == 5
    assert seg_model.backbone.features_only and seg_model.backbone.head is None
    assert (
        seg_model.pretrained_cfg.mean == (0.485, 0.456, 0.406) and seg_model.pretrained_cfg.num_classes == 5
    )
    head = seg_model.decode_head
    assert head.channels == 128 and head.fpn_channels == 256
    assert [len([b for b in s if isinstance(b, fpn.ConvGNReLU)]) for s in head.scale_heads] == [1, 1, 2, 3]
    w = head.conv_seg.weight.numpy()
    assert abs(w.std() - 0.01) < 0.002 and not head.conv_seg.bias.numpy().any()
    assert not head.lateral_convs[0].bias.numpy().any()
    gn = head.scale_heads[0][0].gn
    assert (gn.weight.numpy() == 1).all() and not gn.bias.numpy().any()


@pytest.fixture(scope="module")
def narrow_model():
    return shunted.create_model("shunted_t_fpn", num_classes=4, channels=64)


def test_channels_are_configurable(narrow_model):
    assert narrow_model.decode_head.conv_seg.weight.shape == [4, 64, 1, 1]
    assert narrow_model.decode_head.scale_heads[3][4].gn._num_groups == 32
    with pytest.raises(ValueError, match="multiple of 32"):
        shunted.create_model("shunted_t_fpn", num_classes=3, channels=48)


def test_num_classes_is_required_without_weights():
    with pytest.raises(ValueError, match="num_classes"):
        shunted.create_model("shunted_t_fpn")


# -- weights ---------------------------------------------------------------------------------------------------
def test_backbone_pretrained_loads_the_classification_checkpoint(seg_model):
    """Every backbone tensor is the demo checkpoint's (classifier left out); the head keeps its fresh init."""
    cls = read_weights(DEMO)
    backbone = state_dict_numpy(seg_model.backbone)
    assert set(backbone) == {k for k in cls.state if not k.startswith("head.")}
    for key, value in backbone.items():
        np.testing.assert_array_equal(value, cls.state[key], err_msg=key)
    assert seg_model.backbone_sha256 == cls.sha256 and seg_model.pretrained_sha256 is None
    assert not seg_model.decode_head.conv_seg.bias.numpy().any()


def test_backbone_pretrained_matches_the_pth_file(seg_model):
    """Independent of the converter: the official file read by torch, Linear weights transposed."""
    torch = pytest.importorskip("torch")
    official = torch.load(DEMO, map_location="cpu", weights_only=True)["model"]
    np.testing.assert_array_equal(
        seg_model.backbone.block2[1].attn.kv1.weight.numpy(),
        official["block2.1.attn.kv1.weight"].float().numpy().T,
    )
    np.testing.assert_array_equal(
        seg_model.backbone.patch_embed1.conv[1]._variance.numpy(),
        official["patch_embed1.conv.1.running_var"].float().numpy(),
    )


@pytest.mark.parametrize("suffix", [".pdparams", ".safetensors"])
def test_seg_weights_round_trip(seg_model, tmp_path, suffix):
    state = state_dict_numpy(seg_model)
    path = tmp_path / f"seg{suffix}"
    (write_pdparams if suffix == ".pdparams" else write_safetensors)(path, state)
    loaded = shunted.create_model("shunted_t_fpn", pretrained=path)
    assert loaded.num_classes == 5 and loaded.pretrained_sha256 is not None
    again = state_dict_numpy(loaded)
    assert set(again) == set(state)
    for key in state:
        np.testing.assert_array_equal(again[key], state[key])


def test_paddle_save_file_loads_and_channels_follow_the_file(narrow_model, tmp_path):
    path = tmp_path / "last.pdparams"
    paddle.save(narrow_model.state_dict(), str(path))
    loaded = shunted.create_model("shunted_t_fpn", pretrained=path)
    assert loaded.decode_head.channels == 64 and loaded.num_classes == 4


def test_other_class_count_keeps_all_but_the_classifier(seg_model, tmp_path):
    path = tmp_path / "seg.pdparams"
    write_pdparams(path, state_dict_numpy(seg_model))
    model = shunted.create_model("shunted_t_fpn", pretrained=path, num_classes=9)
    assert model.decode_head.conv_seg.weight.shape == [9, 128, 1, 1]
    np.testing.assert_array_equal(
        model.decode_head.fpn_convs[2].weight.numpy(), seg_model.decode_head.fpn_convs[2].weight.numpy()
    )


def test_torch_seg_state_dict_loads_as_pretrained(pair, tmp_path):
    """A ``.pth`` of the transcription (official layout: Linear [out, in], BN running_*) loads into the model."""
    import torch

    torch_model, model = pair
    path = tmp_path / "seg_torch.pth"
    torch.save({"state_dict": torch_model.state_dict()}, path)
    loaded = state_dict_numpy(shunted.create_model("shunted_t_fpn", pretrained=path))
    expected = state_dict_numpy(model)
    assert set(loaded) == set(expected)
    for key, value in expected.items():
        np.testing.assert_array_equal(loaded[key], value, err_msg=key)


@pytest.fixture(scope="module")
def seg_file(seg_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("seg") / "seg_t.pdparams"
    write_pdparams(path, state_dict_numpy(seg_model))
    return path


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda f: shunted.create_model("shunted_t_fpn", pretrained=DEMO), "classification checkpoint"),
        (lambda f: shunted.create_model("shunted_t", pretrained=f), "segmentation model's weights"),
        (
            lambda f: shunted.create_model("shunted_t_fpn", num_classes=3, backbone_pretrained=f),
            "segmentation model's weights",
        ),
        (
            lambda f: shunted.create_model("shunted_s_fpn", pretrained=f),
            "shunted_t_fpn weights, not shunted_s_fpn",
        ),
        (
            lambda f: shunted.create_model("shunted_s_fpn", num_classes=3, backbone_pretrained=DEMO),
            "shunted_t weights, not shunted_s",
        ),
    ],
    ids=["cls-as-seg", "seg-as-cls", "seg-as-backbone", "seg-other-variant", "backbone-other-variant"],
)
def test_wrong_file_is_one_line(seg_file, call, message):
    with pytest.raises(WeightsError) as info:
        call(seg_file)
    text = str(info.value)
    assert message in text and "\n" not in text
    assert str(seg_file) in text or DEMO in text


def test_backbone_pretrained_is_refused_by_a_classifier():
    with pytest.raises(ValueError, match="segmentation models"):
        shunted.create_model("shunted_t", backbone_pretrained=DEMO)
