"""Open a checkpoint on a runtime: the one step every command that runs a model shares (eval, predict, bench,
export).

``open_model`` builds the model once with ``shunted.factory.create_model`` (which reads and hashes the weights
once, ``model.pretrained_sha256``) and puts it on the chosen runtime: ``dygraph`` runs the model itself; the
static runtimes (``inference*``, ``onnxruntime``, ``openvino*``) get it exported to a temporary folder
(``shunted/engine/export.py``) that they read completely when their predictor is created
(``shunted/runtime/``).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass

from ..runtime import DEFAULT_MARGIN, ONNX_BACKENDS, Predictor, check_backend, make_predictor
from .export import SEG_PAD_TO, is_segmentation, save_onnx, save_paddle


@dataclass
class Opened:
    """A model on a runtime, with what results record about it."""

    predictor: Predictor
    model: object  # the Paddle model (what ``dygraph`` runs; the static runtimes run an export of it)
    model_name: str
    pretrained_cfg: object  # shunted.models.registry.PretrainedConfig
    num_classes: int
    weights: str | None
    weights_sha256: str | None
    backend: str
    img_size: int
    threads: int | None


def model_predictor(
    backend: str,
    model,
    threads: int | None = 2,
    img_size: int = 224,
    recheck_margin: float = DEFAULT_MARGIN,
) -> Predictor:
    """``model`` on ``backend``: itself for ``dygraph``, else exported at ``img_size`` to a temporary folder.

    A segmentation model (``shunted_*_fpn``) is exported with a dynamic height and width, and its predictor takes
    any size (padded to a multiple of 32 and cropped back, ``shunted/runtime/padding.py``), as the dygraph model.
    """
    check_backend(backend)
    if backend == "dygraph":
        return make_predictor(backend, model, threads)
    # Both runtimes read the files completely when the predictor is created.
    with tempfile.TemporaryDirectory(prefix=f"shunted-{backend}-") as folder:
        (save_onnx if backend in ONNX_BACKENDS else save_paddle)(model, folder, img_size)
        predict = make_predictor(backend, folder, threads, recheck_margin=recheck_margin)
    if is_segmentation(model):
        from ..runtime.padding import padded_predictor

        predict = padded_predictor(predict, SEG_PAD_TO)
    return predict


def open_model(
    name: str,
    weights: str | os.PathLike | None,
    backend: str = "dygraph",
    threads: int | None = None,
    img_size: int | None = None,
    features_only: bool = False,
    num_classes: int | None = None,
    expect_num_classes: int | None = None,
    recheck_margin: float = DEFAULT_MARGIN,
) -> Opened:
    """Build ``name`` with ``weights`` once and open it on ``backend``.

    num_classes: the head's class count (default the checkpoint's; another count makes a fresh head, as
        ``create_model``). expect_num_classes: the class count the user expects (``--num-classes`` of eval): a
        checkpoint with another count is a WeightsError, raised before any export.
    img_size: the input size the static runtimes are exported at (default the variant's, 224); a segmentation
        model (``shunted_t_fpn`` …, built by ``create_model`` with ``weights`` as its whole-model weights) is
        exported with a dynamic size and takes any (``model_predictor``).
    """
    from ..errors import WeightsError
    from ..factory import create_model

    check_backend(backend)
    kwargs = {"features_only": True} if features_only else {}
    model = create_model(name, pretrained=weights, num_classes=num_classes, **kwargs)
    if expect_num_classes is not None and expect_num_classes != model.num_classes:
        raise WeightsError(
            f"{weights}: has {model.num_classes} classes, but --num-classes is {expect_num_classes}"
        )
    size = img_size or model.pretrained_cfg.input_size[-1]
    predictor = model_predictor(backend, model, threads, size, recheck_margin)
    return Opened(
        predictor=predictor,
        model=model,
        model_name=name,
        pretrained_cfg=model.pretrained_cfg,
        num_classes=int(model.num_classes),
        weights=str(weights) if weights is not None else None,
        weights_sha256=model.pretrained_sha256,
        backend=backend,
        img_size=size,
        threads=threads,
    )


def given_predictor(
    name: str, weights: str | os.PathLike, num_classes: int, predictor: Predictor, backend: str = "given"
) -> Opened:
    """A predictor built elsewhere (another runtime, a stand-in), described like an opened checkpoint.

    No model is built; the weights file is hashed once for the records.
    """
    from ..fileio import sha256_file
    from ..models import get_pretrained_cfg

    cfg = get_pretrained_cfg(name)
    return Opened(
        predictor=predictor,
        model=None,
        model_name=name,
        pretrained_cfg=cfg,
        num_classes=int(num_classes),
        weights=str(weights),
        weights_sha256=sha256_file(weights),
        backend=backend,
        img_size=cfg.input_size[-1],
        threads=None,
    )
