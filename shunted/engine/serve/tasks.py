"""What a request's image goes through, per task, with the functions the commands use.

- **Decoding** (``decode_image``): the ``image`` field is the base64 of an image file (a ``data:…;base64,``
  prefix and line breaks are allowed); URLs and paths are refused, never fetched or opened. The bytes are
  decoded as ``shunted predict`` decodes a file (``data/transforms.py``: ``convert('RGB')``, EXIF orientation
  ignored), refusing more than ``max_pixels`` from the header before any pixel is decoded.
- **Classification** (``Classify``): ``EvalTransform`` (resize, centre crop, normalise) as ``shunted predict``;
  a batch's logits → top-k by ``engine/predict.py:_run_batch`` (softmax, stable sort), the same code as
  ``predict`` runs; ``categories`` = ``[{"id", "name", "score"}]`` highest first (score = probability).
- **Segmentation** (``Segment``): ``SegEvalTransform`` and ``SegInference.logits`` (whole image) then
  ``predicted_labels`` at the image's size, as ``shunted seg-predict``; images of one network-input size are run
  together. ``labelMap``: the 8-bit index PNG (what seg-predict writes as ``IMAGE.png``) in base64, or PaddleX's
  flat row-major list with ``"inferenceParams": {"labelMapFormat": "list"}``; ``size`` = [height, width].

- **Detection** (``Detect``): ``DetTransform`` (keep-ratio resize to ``img_scale``, normalise) as ``shunted
  det-predict``; images of one network-input size run together (padded to a multiple of 32 as one alone would be),
  ``postprocess_outputs`` and ``to_results`` take the boxes back to the image's pixels; ``detectedObjects`` =
  ``[{"bbox": [x1, y1, x2, y2], "categoryId", "categoryName", "score"}]`` scoring at least ``threshold``
  (``inferenceParams.threshold`` or PaddleX's top-level one; default 0.3, det-predict's).

A task's ``prepare`` runs in the request's thread (decoding in parallel); ``run`` runs a batch on the one
worker thread (``batcher.py``) and returns one result (or Exception) per item.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...errors import DataError, ShuntedError


class RequestError(Exception):
    """A request the server refuses: the HTTP ``status`` and a one-line message; ``reason`` counts it in
    ``shunted_serve_rejections_total``; ``headers`` go with the answer (``Retry-After``)."""

    def __init__(self, status: int, message: str, reason: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.reason, self.headers = status, message, reason, headers or {}


def bad(message: str) -> RequestError:
    return RequestError(400, message)


def parse_request(body: bytes) -> tuple[str, dict]:
    """(the ``image`` string, the inference parameters) of a JSON body; a 400 in one line otherwise.

    Parameters: ``inferenceParams`` (an object) merged over the top-level ones PaddleX 3 takes (``topk``)."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad(f"the body is not JSON ({' '.join(str(exc).split())})") from None
    if not isinstance(payload, dict):
        raise bad('the body must be a JSON object: {"image": "<base64 of an image file>"}')
    image = payload.get("image")
    if not isinstance(image, str) or not image:
        raise bad('"image" must be a string: the base64 of an image file')
    params = payload.get("inferenceParams", {})
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise bad('"inferenceParams" must be a JSON object')
    top = {k: payload[k] for k in ("topk", "topK", "threshold") if k in payload}
    return image, {**top, **params}


def decode_image(text: str, max_pixels: int | None):
    """The RGB PIL image of the base64 ``text`` (module docstring); a 400 in one line otherwise."""
    from ...data.transforms import _decode_rgb

    head = text[:16].lower()
    if "://" in head or head.startswith("file:"):
        raise bad("image: URLs and paths are not fetched; send the image file's bytes in base64")
    if text.startswith("data:") and ";base64," in text[:100]:
        text = text.split(",", 1)[1]
    try:
        data = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise bad(f"image: not valid base64 ({exc})") from None
    if not data:
        raise bad("image: empty")
    check_pixels(data, max_pixels)
    try:
        return _decode_rgb("image", io.BytesIO(data))  # the commands' decoding and their one-line errors
    except DataError as exc:
        if "cannot identify image file" in str(exc):  # Pillow names the in-memory buffer: say what it means
            raise bad("image: not an image file Pillow can read (PNG, JPEG, BMP, GIF, TIFF, WebP…)") from None
        raise bad(str(exc)) from None
    except MemoryError:
        raise RequestError(507, "image: out of memory while decoding it") from None
    except Exception as exc:  # noqa: BLE001 — whatever else the decoder raises on these bytes is the client's
        raise bad(
            f"image: cannot read image ({type(exc).__name__}: {' '.join(str(exc).split())})"[:300]
        ) from None


def check_pixels(data: bytes, max_pixels: int | None) -> None:
    """400 for an image of more than ``max_pixels``, read from its header before any pixel is decoded (a
    decompression bomb: a few kB of PNG claiming gigapixels). An unreadable header passes: the decoding says what
    is wrong in the commands' words."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
    except Exception:  # noqa: BLE001 — Pillow's own bomb refusal included: left to the decoding's message
        return
    if max_pixels and width * height > max_pixels:
        raise bad(
            f"image: {width}×{height} is {width * height:,} pixels, more than the limit of {max_pixels:,}"
        )


def _int_param(params: dict, names: tuple[str, ...], default: int, low: int, high: int) -> int:
    for name in names:
        if name in params:
            value = params[name]
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise bad(
                    f"inferenceParams.{name}: {json.dumps(value)[:40]} is not an integer in {low}..{high}"
                )
            return value
    return default


@dataclass
class Classify:
    """Image classification (module docstring)."""

    opened: Any  # engine/session.py Opened
    transform: Any  # data/transforms.py EvalTransform
    names: list[str] | None = None
    default_topk: int = 5
    name: str = "image-classification"

    @property
    def route(self) -> str:
        return "/" + self.name

    def prepare(self, image, params: dict) -> tuple[np.ndarray, int]:
        k = _int_param(params, ("topk", "topK"), self.default_topk, 1, self.opened.num_classes)
        return np.asarray(self.transform(image), np.float32), k

    def run(self, items: list[tuple[np.ndarray, int]]) -> list:
        from ..predict import _run_batch

        k = max(topk for _, topk in items)
        rows = _run_batch([("request", x, None) for x, _ in items], self.opened.predictor, k)
        return [
            {
                "categories": [
                    {"id": i, "name": self.names[i] if self.names else str(i), "score": p}
                    for i, p in zip(row.index[:topk], row.prob[:topk], strict=True)
                ]
            }
            for row, (_, topk) in zip(rows, items, strict=True)
        ]

    def warm(self, max_batch: int) -> None:
        """Batch sizes 1, 2, 4 … and ``max_batch`` run once before ``/health`` is 200: a static-shape runtime
        (OpenVINO) compiles each shape on its first call and pads a batch to a compiled one at most twice its size,
        so every batch the worker forms then runs without a compile."""
        sizes = {1, max_batch, *(1 << k for k in range(max_batch.bit_length()) if 1 << k < max_batch)}
        for n in sorted(sizes):
            self.opened.predictor(np.zeros((n, *self.transform.output_shape), np.float32))

    def describe(self) -> dict:
        return {"numClasses": self.opened.num_classes, "classNames": self.names}


@dataclass
class Segment:
    """Semantic segmentation (module docstring)."""

    opened: Any
    transform: Any  # data/seg_transforms.py SegEvalTransform
    names: list[str]
    palette: np.ndarray
    inference: Any = None  # engine/seg/evaluate.py SegInference (whole image)
    name: str = "semantic-segmentation"
    formats: tuple[str, ...] = field(default=("png", "list"))

    @property
    def route(self) -> str:
        return "/" + self.name

    def prepare(self, image, params: dict) -> tuple[np.ndarray, tuple[int, int], str]:
        fmt = params.get("labelMapFormat", "png")
        if fmt not in self.formats:
            raise bad(f'inferenceParams.labelMapFormat: {json.dumps(fmt)[:40]} is not "png" or "list"')
        return np.asarray(self.transform(image), np.float32), (image.height, image.width), fmt

    def run(self, items: list) -> list:
        from ..seg.evaluate import predicted_labels

        results: list = [None] * len(items)
        for members in _group_by_shape(items).values():
            try:
                logits = self.inference.logits(
                    self.opened.predictor, np.stack([items[i][0] for i in members]),
                    self.opened.num_classes, "the request's image",
                )  # fmt: skip
            except ShuntedError as exc:  # out of memory at this size: these requests fail, the others go on
                for i in members:
                    results[i] = RequestError(507, str(exc))
                continue
            for i, lg in zip(members, logits, strict=True):
                _, size, fmt = items[i]
                results[i] = self._result(predicted_labels(lg, size), fmt)
        return results

    def _result(self, mask: np.ndarray, fmt: str) -> dict:
        from ..seg.predict import _index_image

        h, w = mask.shape
        if fmt == "list":
            label_map: Any = mask.ravel().tolist()
        else:
            buffer = io.BytesIO()
            _index_image(mask).save(buffer, format="PNG")
            label_map = base64.b64encode(buffer.getvalue()).decode("ascii")
        return {"labelMap": label_map, "size": [h, w]}

    def warm(self, max_batch: int) -> None:
        self.inference.logits(self.opened.predictor, np.zeros((1, 3, 64, 64), np.float32),
                              self.opened.num_classes, "warm-up")  # fmt: skip

    def describe(self) -> dict:
        return {
            "numClasses": self.opened.num_classes,
            "classNames": self.names,
            "palette": self.palette.tolist(),
        }


def _group_by_shape(items: list) -> dict[tuple, list[int]]:
    """Item indices by their network input's shape (``item[0]``), in arrival order: what can run as one batch."""
    groups: dict[tuple, list[int]] = {}
    for i, item in enumerate(items):
        groups.setdefault(item[0].shape, []).append(i)
    return groups


@dataclass
class Detect:
    """Object detection (module docstring)."""

    opened: Any
    transform: Any  # data/det_transforms.py DetTransform
    names: list[str]
    colours: np.ndarray
    default_threshold: float = 0.3
    name: str = "object-detection"

    @property
    def route(self) -> str:
        return "/" + self.name

    def prepare(self, image, params: dict) -> tuple:
        threshold = params.get("threshold", self.default_threshold)
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1:
            raise bad(f"inferenceParams.threshold: {json.dumps(threshold)[:40]} is not a number in 0..1")
        x, _, info = self.transform(image, np.zeros((0, 4), np.float32))
        return np.asarray(x, np.float32), info, float(threshold)

    def run(self, items: list) -> list:
        from ...data.det_transforms import collate_detection
        from ...models.retinanet import postprocess_outputs
        from ..det.evaluate import to_results

        results: list = [None] * len(items)
        empty = (np.zeros((0, 4), np.float32), np.zeros(0, np.int64))
        for members in _group_by_shape(items).values():
            images, _, _, infos = collate_detection([(items[i][0], *empty, items[i][1]) for i in members])
            images = np.asarray(images, np.float32)
            cls, reg = (np.asarray(o, np.float32) for o in self.opened.predictor(images))
            shapes = [tuple(info["image_shape"]) for info in infos]
            dets = postprocess_outputs(cls, reg, images.shape[2:], shapes)
            for i, det, info in zip(members, dets, infos, strict=True):
                found = to_results(det, info, 0, range(self.opened.num_classes))
                results[i] = {"detectedObjects": [
                    {"bbox": [r["bbox"][0], r["bbox"][1], r["bbox"][0] + r["bbox"][2], r["bbox"][1] + r["bbox"][3]],
                     "categoryId": r["category_id"], "categoryName": self.names[r["category_id"]],
                     "score": r["score"]}
                    for r in found if r["score"] >= items[i][2]
                ]}  # fmt: skip
        return results

    def warm(self, max_batch: int) -> None:
        self.opened.predictor(np.zeros((1, 3, 128, 128), np.float32))

    def describe(self) -> dict:
        return {
            "numClasses": self.opened.num_classes,
            "classNames": self.names,
            "palette": self.colours.tolist(),
        }
