"""One served checkpoint: its task, the batcher in front of its runtime, the metrics, and what ``serve`` was
given (``ServeConfig``). ``open_service`` builds it from a config; ``Service.start`` warms the model and starts
the worker; ``Service.stop`` drains the queue."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from .batcher import Batcher, BatchLimits
from .metrics import Metrics


@dataclass(frozen=True)
class HttpLimits:
    """What one request may cost: body bytes (413 above), decoded pixels (400 above, read from the
    header; default Pillow's ``MAX_IMAGE_PIXELS``, the commands' limit), seconds from its
    arrival to its answer (504 when the model has not answered by then; 408 when the body has not arrived),
    and how many requests decode at once (each holds one decoded image)."""

    max_body_bytes: int = 20 << 20
    max_pixels: int = 89_478_485
    timeout_s: float = 30.0
    decoders: int = 2


@dataclass
class ServeConfig:
    """What ``shunted serve`` runs (``commands/serve.py`` builds it from the flags)."""

    model: str
    weights: str | os.PathLike
    backend: str = "auto"
    cache: bool = True
    threads: int | None = None
    img_size: int | None = None
    labels: str | None = None
    det_img_scale: tuple[int, int] = (1333, 800)  # (W, H): detection's keep-ratio resize, as det-predict
    host: str = "127.0.0.1"
    port: int = 8080
    batch: BatchLimits = field(default_factory=BatchLimits)
    http: HttpLimits = field(default_factory=HttpLimits)


class Service:
    """A task behind its batcher (module docstring); ``ready`` once warmed, until ``stop``."""

    def __init__(self, task, limits: BatchLimits, http: HttpLimits | None = None, about: dict | None = None):
        self.task, self.limits, self.http = task, limits, http or HttpLimits()
        self.metrics = Metrics(limits.max_batch)
        self.batcher = Batcher(task.run, limits, self.metrics.batch)
        self.about = about or {}
        self.ready = False

    def start(self) -> Service:
        self.task.warm(self.limits.max_batch)
        self.batcher.start()
        self.ready = True
        return self

    def stop(self, timeout: float | None = None) -> None:
        self.ready = False
        self.batcher.close(timeout)

    def info(self) -> dict:
        """``GET /info``: what the page needs to know (task, route, classes, palette) and what runs."""
        return {**self.about, "task": self.task.name, "route": self.task.route, **self.task.describe(),
                "maxBatch": self.limits.max_batch, "maxBodyBytes": self.http.max_body_bytes}  # fmt: skip


def open_service(cfg: ServeConfig) -> Service:
    """The checkpoint of ``cfg`` opened on its backend with its task (classification or, for the ``*_fpn``
    models, segmentation); not started."""
    from ...errors import ShuntedError
    from ...models import get_pretrained_cfg
    from ...models.registry import is_det_model, is_seg_model
    from ..session import RuntimeConfig, open_model

    if is_seg_model(cfg.model):
        task = _segment_task(cfg)
    elif is_det_model(cfg.model):
        task = _detect_task(cfg)
    else:
        try:
            pretrained = get_pretrained_cfg(cfg.model)
        except ValueError as exc:
            raise ShuntedError(f"--model: {exc}") from None
        from ...data.transforms import EvalTransform
        from ..predict import _class_names
        from .tasks import Classify

        transform = EvalTransform.from_config(pretrained, img_size=cfg.img_size)
        opened = open_model(
            cfg.model,
            cfg.weights,
            RuntimeConfig(cfg.backend, cfg.threads, img_size=transform.img_size, cache=cfg.cache),
        )
        names, _ = _class_names(
            cfg, opened
        )  # predict's: --labels, else the names recorded beside the weights
        task = Classify(opened, transform, names)
    about = {"model": cfg.model, "backend": task.opened.backend, "weightsSha256": task.opened.weights_sha256}
    return Service(task, cfg.batch, cfg.http, about)


def _segment_task(cfg: ServeConfig):
    from ...data.seg_transforms import SegEvalTransform
    from ..seg.evaluate import SegInference, open_seg_model
    from ..seg.palette import default_class_names, get_palette, read_class_names
    from .tasks import Segment

    opened = open_seg_model(cfg.model, cfg.weights, cfg.backend, cfg.threads, cache=cfg.cache)
    k, pre = opened.num_classes, opened.pretrained_cfg
    names = read_class_names(cfg.labels, k) if cfg.labels else default_class_names("voc", k)
    transform = SegEvalTransform(mean=pre.mean, std=pre.std)
    return Segment(opened, transform, names, get_palette("voc", k), SegInference())


def _detect_task(cfg: ServeConfig):
    from ...data.det_transforms import DetTransform
    from ..det.evaluate import open_det_model
    from ..det.predict import _class_names, class_colours
    from .tasks import Detect

    opened = open_det_model(cfg.model, cfg.weights, cfg.backend, cfg.threads)
    k, pre = opened.num_classes, opened.pretrained_cfg
    transform = DetTransform(img_scale=cfg.det_img_scale, mean=pre.mean, std=pre.std)
    return Detect(opened, transform, _class_names(cfg.labels, k), class_colours(k))
