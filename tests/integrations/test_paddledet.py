"""``shunted.integrations.paddledet.register()``: a PaddleDetection config resolves ``backbone: Shunted``.

The backbone's contract (``forward(inputs)`` → the maps of ``inputs["image"]``, strides 8/16/32, a checkpoint loaded
strictly) is checked here without PaddleDetection. PaddleDetection itself (``paddledet`` 2.6.0 pins numpy<1.24, so
it lives in its own environment) is tested through the Python named by ``SHUNTED_PADDLEDET_PYTHON`` (made with
``INSTALL_HINT``: ``pip install paddledet==2.6.0 'scikit-learn<1.4' paddlepaddle==3.3.1``): RetinaNet from
``RETINANET_CONFIG`` builds, trains a step and predicts. Without it that test is skipped and says so.
"""

from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import paddle
import pytest

import shunted
from shunted.integrations.paddledet import Shunted

REPO = Path(__file__).resolve().parents[2]
CKPT = REPO / "shunted" / "assets" / "demo" / "ckpt_T_cifar10_fp16.pth"


def test_backbone_gives_the_stage_maps_of_the_image_with_the_checkpoint_loaded():
    backbone = Shunted("shunted_t", pretrained=str(CKPT))
    reference = shunted.create_model("shunted_t", pretrained=CKPT)
    np.testing.assert_array_equal(
        backbone.body.block2[0].attn.q.weight.numpy(), reference.block2[0].attn.q.weight.numpy()
    )
    backbone.eval()
    maps = backbone({"image": paddle.zeros([1, 3, 64, 96])})
    assert [tuple(m.shape) for m in maps] == [(1, 128, 8, 12), (1, 256, 4, 6), (1, 512, 2, 3)]


SCRIPT = textwrap.dedent(
    """
    import os, sys, tempfile
    sys.path.insert(0, {repo!r})
    import paddle
    from ppdet.core.workspace import create, load_config
    from shunted.integrations.paddledet import RETINANET_CONFIG, register
    register()
    path = os.path.join(tempfile.mkdtemp(), "retinanet.yml")
    open(path, "w").write(RETINANET_CONFIG.format(name="shunted_t", pretrained={ckpt!r}, num_classes=3))
    model = create(load_config(path).architecture)
    model.train()
    x = paddle.randn([2, 3, 128, 160])
    meta = {{"im_shape": paddle.to_tensor([[128.0, 160.0]] * 2), "scale_factor": paddle.to_tensor([[1.0, 1.0]] * 2)}}
    losses = model({{"image": x, **meta, "gt_bbox": [paddle.to_tensor([[10.0, 10.0, 60.0, 50.0]])] * 2,
                    "gt_class": [paddle.to_tensor([[0]]), paddle.to_tensor([[2]])]}})
    losses["loss"].backward()
    model.eval()
    out = model({{"image": x, **meta}})
    print("OK", float(losses["loss"]), list(out["bbox_num"].shape))
    """
)


def test_paddledet_builds_trains_and_predicts_a_retinanet_on_it():
    python = os.environ.get("SHUNTED_PADDLEDET_PYTHON")
    if not python:
        pytest.skip("SHUNTED_PADDLEDET_PYTHON (a Python with paddledet 2.6.0, see INSTALL_HINT) is not set")
    done = subprocess.run(
        [python, "-c", SCRIPT.format(repo=str(REPO), ckpt=str(CKPT))],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    line = done.stdout.strip().splitlines()[-1].split()
    assert line[0] == "OK" and np.isfinite(float(line[1])) and line[2:] == ["[2]"]
