"""``shunted.integrations.paddleseg.register()``: a PaddleSeg config resolves ``backbone: {type: shunted_*}``.

The component contract (PaddleSeg registers a component under its ``__name__`` and its builder calls it with the
config's other keys) is checked here against a stand-in for ``paddleseg.cvlibs.manager``. The real package is
tested in its own environment, because ``paddleseg`` 2.8.0 pins opencv ≤ 4.6 and visualdl (it imports with
numpy 2 and Paddle 3.3 when installed ``--no-deps``): a Python with PaddleSeg is taken from
``SHUNTED_PADDLESEG_PYTHON``, or ``.venv-paddleseg/`` in the repository; with ``SHUNTED_TEST_PADDLESEG=1`` that
venv is created when missing (``PADDLESEG_VENV_STEPS`` below, about 1.5 minutes and 1.3 GB). Otherwise that test
is skipped and says so.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import shunted
from shunted.errors import ShuntedError
from shunted.integrations.paddleseg import BACKBONES, register

REPO = Path(__file__).resolve().parents[2]
CKPT = REPO / "shunted" / "assets" / "demo" / "ckpt_T_cifar10_fp16.pth"
PADDLESEG_VENV = REPO / ".venv-paddleseg"
# paddleseg's own metadata pins opencv-python<=4.6 and visualdl: install it without its pins, then what it imports.
PADDLESEG_VENV_STEPS = [
    [
        "paddlepaddle==3.3.1",
        "numpy>=2,<3",
        "pillow",
        "safetensors",
        "pyyaml",
        "tqdm",
        "six",
        "requests",
        "scipy",
        "scikit-learn",
        "filelock",
        "prettytable",
        "opencv-python-headless",
    ],
    ["--no-deps", "paddleseg==2.8.0"],
]


class StandInManager:
    """What ``paddleseg.cvlibs.manager.ComponentManager`` does: components keyed by ``__name__``."""

    def __init__(self):
        self.components_dict = {}
        self.added = []

    def add_component(self, component):
        self.added.append(component.__name__)
        self.components_dict[component.__name__] = component
        return component


class StandInManagerModule:
    def __init__(self):
        self.BACKBONES = StandInManager()


def build_like_paddleseg(manager, cfg: dict):
    """PaddleSeg's ``Builder.build_component``: pop ``type``, look it up, call it with the other keys."""
    cfg = dict(cfg)
    return manager.BACKBONES.components_dict[cfg.pop("type")](**cfg)


def features(model, x: np.ndarray) -> list[np.ndarray]:
    import paddle

    model.eval()
    with paddle.no_grad():
        return [m.numpy() for m in model(paddle.to_tensor(x))]


def test_register_adds_backbones_once_under_their_names():
    manager = StandInManagerModule()
    assert register(manager) == shunted.list_models() == ["shunted_t", "shunted_s", "shunted_b"]
    assert sorted(manager.BACKBONES.components_dict) == sorted(shunted.list_models())
    register(
        manager
    )  # a second call finds the same components: nothing is added again (no PaddleSeg warning)
    assert manager.BACKBONES.added == shunted.list_models()
    assert all(manager.BACKBONES.components_dict[n] is BACKBONES[n] for n in BACKBONES)


def test_backbone_follows_paddleseg_conventions_and_loads_our_weights():
    manager = StandInManagerModule()
    register(manager)
    # in_channels: what PaddleSeg's builder adds from a named dataset's IMG_CHANNELS
    backbone = build_like_paddleseg(manager, {"type": "shunted_t", "pretrained": str(CKPT), "in_channels": 3})
    ours = shunted.create_model("shunted_t", pretrained=CKPT, features_only=True)
    assert backbone.feat_channels == [64, 128, 256, 512]
    assert backbone.pretrained == str(CKPT) and backbone.pretrained_sha256 == ours.pretrained_sha256
    theirs = backbone.state_dict()
    assert list(theirs) == list(ours.state_dict())
    for name, value in ours.state_dict().items():
        np.testing.assert_array_equal(theirs[name].numpy(), value.numpy(), err_msg=name)

    x = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype("float32")
    got, expected = features(backbone, x), features(ours, x)
    assert isinstance(got, list) and [m.shape for m in got] == [
        (2, c, 64 // s, 64 // s) for c, s in zip((64, 128, 256, 512), (4, 8, 16, 32), strict=True)
    ]
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_array_equal(g, e)


@pytest.mark.slow  # moved to the marked stage to keep the fast suite within its 5-minute budget
def test_backbone_pads_any_size_and_crops_maps_to_ceil():
    """70×90 → the maps of the zero-padded 96×96 image, cropped to ceil(70/s)×ceil(90/s) (a CNN's sizes)."""
    manager = StandInManagerModule()
    register(manager)
    backbone = build_like_paddleseg(manager, {"type": "shunted_t", "pretrained": str(CKPT)})
    x = np.random.default_rng(1).standard_normal((1, 3, 70, 90)).astype("float32")
    padded = np.zeros((1, 3, 96, 96), np.float32)
    padded[:, :, :70, :90] = x
    got = features(backbone, x)
    full = features(shunted.create_model("shunted_t", pretrained=CKPT, features_only=True), padded)
    for g, f, s in zip(got, full, (4, 8, 16, 32), strict=True):
        h, w = -(-70 // s), -(-90 // s)
        assert g.shape[2:] == (h, w)
        np.testing.assert_array_equal(g, f[:, :, :h, :w])


def test_backbone_options_and_errors():
    manager = StandInManagerModule()
    register(manager)
    two = build_like_paddleseg(manager, {"type": "shunted_s", "out_indices": [1, 3], "drop_path_rate": 0.2})
    assert two.feat_channels == [128, 512] and two.variant_name == "shunted_s"
    assert [m.shape[1] for m in features(two, np.zeros((1, 3, 64, 64), np.float32))] == [128, 512]
    with pytest.raises(ShuntedError, match="URLs are not fetched"):
        build_like_paddleseg(manager, {"type": "shunted_b", "pretrained": "https://example.org/ckpt_B.pth"})
    with pytest.raises(ShuntedError, match="shunted_t weights, not shunted_s"):
        build_like_paddleseg(manager, {"type": "shunted_s", "pretrained": str(CKPT)})


def _paddleseg_python() -> Path:
    explicit = os.environ.get("SHUNTED_PADDLESEG_PYTHON")
    if explicit:
        return Path(explicit)
    python = PADDLESEG_VENV / "bin" / "python"
    if python.exists():
        return python
    if os.environ.get("SHUNTED_TEST_PADDLESEG") != "1":
        pytest.skip(
            "PaddleSeg 2.8.0 pins opencv<=4.6 and lives outside the main venv: set SHUNTED_TEST_PADDLESEG=1 to "
            "build .venv-paddleseg (~1.5 min, 1.3 GB) or SHUNTED_PADDLESEG_PYTHON to a Python that has paddleseg"
        )
    subprocess.run([sys.executable, "-m", "venv", str(PADDLESEG_VENV)], check=True)
    for step in PADDLESEG_VENV_STEPS:
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", *step], check=True)
    return python


# A complete PaddleSeg training config (its UPerNet, our backbone): Config's sanity rules need every section.
# The loss is OhemCrossEntropyLoss: PaddleSeg 2.8.0's CrossEntropyLoss fails under Paddle 3.3.1 on its own
# (it multiplies a float32 mask by an int64 tensor, which Paddle 3's type promotion refuses), whatever the backbone.
CONFIG = textwrap.dedent(
    """
    batch_size: 2
    iters: 10
    train_dataset:
      type: Dataset
      dataset_root: data
      train_path: data/train.txt
      num_classes: 5
      mode: train
      transforms:
        - type: Normalize
    model:
      type: UPerNet
      num_classes: 5
      backbone:
        type: shunted_t
        pretrained: {ckpt}
      backbone_indices: [0, 1, 2, 3]
      channels: 128
      dropout_prob: 0.1
    optimizer:
      type: AdamW
      weight_decay: 0.01
    lr_scheduler:
      type: PolynomialDecay
      learning_rate: 0.0001
      end_lr: 0
      power: 1.0
    loss:
      types:
        - type: OhemCrossEntropyLoss
      coef: [1]
    """
)

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import paddle
    from shunted.integrations.paddleseg import register
    imported_early = "paddleseg" in sys.modules  # our module imports PaddleSeg only when register() is called
    import paddleseg
    from paddleseg.cvlibs import Config, SegBuilder

    config_path, x_path, out_dir = sys.argv[1:4]
    register()
    builder = SegBuilder(Config(config_path))
    model = builder.model
    model.eval()
    result = {"imported_early": imported_early, "numpy": np.__version__, "paddle": paddle.__version__, "paddleseg": paddleseg.__version__,
              "model": type(model).__name__, "backbone": type(model.backbone).__name__,
              "feat_channels": model.backbone.feat_channels}
    x = np.load(x_path)
    with paddle.no_grad():
        logits = model(paddle.to_tensor(x))
        odd = model(paddle.to_tensor(x[:1, :, :50, :40]))
        maps = model.backbone(paddle.to_tensor(x))
    result["outputs"] = len(logits)
    result["odd_shape"] = list(odd[0].shape)
    np.save(f"{out_dir}/logits.npy", logits[0].numpy())
    for i, m in enumerate(maps):
        np.save(f"{out_dir}/map{i}.npy", m.numpy())
    np.savez(f"{out_dir}/backbone_state.npz", **{k: v.numpy() for k, v in model.backbone.state_dict().items()})
    # one training step through PaddleSeg's loss and optimizer: the backbone's parameters get gradients
    model.train()
    loss_cfg = builder.loss
    optimizer = builder.optimizer
    label = paddle.to_tensor(np.random.default_rng(0).integers(0, 5, (2, 64, 64)).astype("int64"))
    loss = loss_cfg["types"][0](model(paddle.to_tensor(x))[0], label)
    loss.backward()
    result["loss"] = float(loss)
    result["backbone_grad_abs_sum"] = float(sum(float(p.grad.abs().sum()) for p in model.backbone.parameters()
                                                if p.grad is not None))
    optimizer.step()
    print("RESULT " + json.dumps(result))
    """
)


def test_real_paddleseg_builds_upernet_on_our_backbone(tmp_path):
    """PaddleSeg's Config + SegBuilder build its UPerNet on ``type: shunted_t`` with the demo checkpoint."""
    import paddle

    python = _paddleseg_python()
    x = np.random.default_rng(2).standard_normal((2, 3, 64, 64)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    (tmp_path / "upernet_shunted_t.yml").write_text(CONFIG.format(ckpt=CKPT))
    (tmp_path / "run.py").write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [str(python), "run.py", "upernet_shunted_t.yml", "x.npy", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(s for s in proc.stdout.splitlines() if s.startswith("RESULT "))
    result = json.loads(line[len("RESULT ") :])
    assert result["imported_early"] is False
    assert result["paddleseg"] == "2.8.0" and result["numpy"].startswith("2.")
    assert (result["model"], result["backbone"]) == ("UPerNet", "ShuntedBackbone")
    assert result["feat_channels"] == [64, 128, 256, 512] and result["outputs"] == 1
    assert np.load(tmp_path / "logits.npy").shape == (2, 5, 64, 64)
    assert result["odd_shape"] == [1, 5, 50, 40]
    assert np.isfinite(result["loss"]) and result["backbone_grad_abs_sum"] > 0

    ours = shunted.create_model("shunted_t", pretrained=CKPT, features_only=True)
    state = np.load(tmp_path / "backbone_state.npz")
    assert sorted(state.files) == sorted(ours.state_dict())
    for name, value in ours.state_dict().items():
        np.testing.assert_array_equal(state[name], value.numpy(), err_msg=name)
    ours.eval()
    with paddle.no_grad():
        expected = [m.numpy() for m in ours(paddle.to_tensor(x))]
    for i, e in enumerate(
        expected
    ):  # the same weights and kernels in another process: equal up to float noise
        np.testing.assert_allclose(np.load(tmp_path / f"map{i}.npy"), e, rtol=0, atol=1e-5)
