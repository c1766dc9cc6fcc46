"""Make ``backbone: Shunted`` resolvable in a PaddleDetection config (``ppdet.core.workspace``).

    from shunted.integrations.paddledet import register
    register()                      # adds the Shunted backbone class to PaddleDetection's workspace
    # then, in a PaddleDetection config (RETINANET_CONFIG below is a whole RetinaNet 1x one):
    #   RetinaNet: {backbone: Shunted, neck: FPN, head: RetinaHead}
    #   Shunted: {name: shunted_t, pretrained: ckpt_T.pth, out_indices: [1, 2, 3]}

PaddleDetection builds a component from the class registered under its ``__name__`` with the config's keys, and a
backbone gives ``forward(inputs)`` → the maps of ``inputs["image"]`` and ``out_shape`` (a ``ShapeSpec`` per map:
channels and stride), which the neck reads. ``pretrained`` is a path (an official classification ``.pth``, a
``.pdparams`` or a ``.safetensors``, loaded strictly without the classifier by ``shunted/factory.py``).

Tried with ``paddledet`` 2.6.0 from PyPI under Paddle 3.3.1 in its own venv: ``pip install paddledet==2.6.0``
resolves (numpy 1.23.5, opencv-python 4.5.5), but ``import ppdet`` stops at "No module named 'sklearn'" — its
``sklearn==0.0`` requirement is PyPI's empty placeholder — until ``scikit-learn`` is installed (``INSTALL_HINT``);
then RetinaNet with this backbone builds, trains a step (focal + box loss) and predicts
(``tests/integrations/test_paddledet.py``). Importing ``shunted`` never imports ``ppdet``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import paddle

from ..errors import ShuntedError
from ..models.registry import list_models

__all__ = ["INSTALL_HINT", "RETINANET_CONFIG", "Shunted", "register"]

INSTALL_HINT = (
    "pip install paddledet==2.6.0 'scikit-learn<1.4' in an environment of its own (it pins numpy<1.24)"
)

# PaddleDetection's retinanet_r50_fpn_1x model section with the Shunted backbone (stages 2-4, strides 8-32).
RETINANET_CONFIG = """\
architecture: RetinaNet
num_classes: {num_classes}
RetinaNet: {{backbone: Shunted, neck: FPN, head: RetinaHead}}
Shunted: {{name: {name}, pretrained: {pretrained}, out_indices: [1, 2, 3]}}
FPN: {{out_channel: 256, spatial_scales: [0.125, 0.0625, 0.03125], extra_stage: 2, has_extra_convs: true,
      use_c5: false}}
RetinaHead:
  conv_feat: {{name: RetinaFeat, feat_in: 256, feat_out: 256, num_convs: 4, norm_type: null, use_dcn: false}}
  anchor_generator: {{name: RetinaAnchorGenerator, octave_base_scale: 4, scales_per_octave: 3,
                     aspect_ratios: [0.5, 1.0, 2.0], strides: [8.0, 16.0, 32.0, 64.0, 128.0]}}
  bbox_assigner: {{name: MaxIoUAssigner, positive_overlap: 0.5, negative_overlap: 0.4, allow_low_quality: true}}
  loss_class: {{name: FocalLoss, gamma: 2.0, alpha: 0.25, loss_weight: 1.0}}
  loss_bbox: {{name: SmoothL1Loss, beta: 0.0, loss_weight: 1.0}}
  nms: {{name: MultiClassNMS, nms_top_k: 1000, keep_top_k: 100, score_threshold: 0.05, nms_threshold: 0.5}}
"""


class Shunted(paddle.nn.Layer):
    """A ``features_only`` Shunted Transformer with PaddleDetection's backbone interface.

    name: ``shunted_t`` / ``shunted_s`` / ``shunted_b``. pretrained: a classification checkpoint's path, or None.
    out_indices: the stages returned (default 1, 2, 3: strides 8 / 16 / 32, as RetinaNet's FPN takes them).
    """

    __shared__: list = []

    def __init__(
        self,
        name: str = "shunted_t",
        pretrained: str | os.PathLike | None = None,
        out_indices: Sequence[int] = (1, 2, 3),
        drop_path_rate: float = 0.0,
    ):
        super().__init__()
        from ..factory import create_model

        if name not in list_models():
            raise ShuntedError(f"backbone Shunted: name {name!r}; choose one of {', '.join(list_models())}")
        self.body = create_model(
            name,
            pretrained=pretrained,
            features_only=True,
            out_indices=tuple(out_indices),
            drop_path_rate=drop_path_rate,
        )

    def forward(self, inputs: dict) -> list[paddle.Tensor]:
        return self.body(inputs["image"])

    @property
    def out_shape(self) -> list:
        from ppdet.modeling.shape_spec import ShapeSpec

        return [ShapeSpec(channels=f["num_chs"], stride=f["reduction"]) for f in self.body.feature_info]


def register() -> type:
    """Register ``Shunted`` in PaddleDetection's workspace (idempotent); returns the class."""
    try:
        from ppdet.core import workspace
    except ImportError as exc:
        raise ShuntedError(f"PaddleDetection is not importable ({exc}): {INSTALL_HINT}") from None
    if "Shunted" not in workspace.global_config:
        workspace.register(workspace.serializable(Shunted))
    return Shunted
