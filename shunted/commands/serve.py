"""Serve a checkpoint over HTTP in PaddleX's serving shape, with dynamic batching.

  shunted serve --model shunted_t --weights ckpt_T.pth --port 8080
  shunted serve --model shunted_t_fpn --weights RUN/best.pdparams --max-batch 4

Classification models answer ``POST /image-classification``, segmentation models (``*_fpn``) ``POST
/semantic-segmentation``, detection models (``*_retinanet``) ``POST /object-detection``, with ``{"image": "<base64 of an image file>", "inferenceParams": {...}}``; ``GET
/health``, ``GET /metrics`` (Prometheus), ``GET /`` (a page to try an image). Requests arriving together are
run as one batch (up to --max-batch, waiting at most --max-wait-ms for it to fill) on one runtime instance; at
most --max-queue wait (503 beyond). Needs the ``[serve]`` extra (FastAPI, uvicorn). SIGTERM / Ctrl-C: the
requests in flight are answered, then the process exits 0. shunted/engine/serve/ has the details.
"""

from __future__ import annotations

import argparse

HELP = "serve a checkpoint over HTTP (PaddleX's API, dynamic batching, /metrics, a page)"


def port(text: str) -> int:
    from .common import _int

    value = _int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} must be between 0 (any free port) and 65535")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from .common import add_backend_arguments, image_size, nonnegative_int, positive_float, positive_int

    parser.add_argument(
        "--model", required=True, help="shunted_t/s/b (classification), shunted_*_fpn, shunted_*_retinanet"
    )
    parser.add_argument("--weights", required=True, help="official .pth, .pdparams or .safetensors")
    parser.add_argument("--labels", help="class names: 'imagenet' or a file, one per line in index order")
    parser.add_argument(
        "--img-size", type=image_size, help="classification crop size (default the variant's)"
    )
    parser.add_argument(
        "--img-scale", type=positive_int, nargs=2, default=(1333, 800), metavar=("W", "H"),
        help="detection: keep-ratio resize into W×H (default 1333 800, as det-predict)",
    )  # fmt: skip
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=port, default=8080, help="port (default 8080; 0: any free port)")
    parser.add_argument("--max-batch", type=positive_int, default=8, help="images per model call (default 8)")
    parser.add_argument(
        "--max-wait-ms", type=nonnegative_int, default=10, help="wait for a batch to fill (default 10 ms)"
    )
    parser.add_argument("--max-queue", type=positive_int, default=64, help="requests waiting (default 64)")
    parser.add_argument(
        "--timeout", type=positive_float, default=30.0, help="seconds per request (default 30)"
    )
    parser.add_argument("--max-body-mb", type=positive_float, default=20.0, help="request body limit (MB)")
    add_backend_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from ..engine.serve.batcher import BatchLimits
    from ..engine.serve.run import require_serving_packages, serve
    from ..engine.serve.service import HttpLimits, ServeConfig

    require_serving_packages()  # before the model is built
    cfg = ServeConfig(
        model=args.model,
        weights=args.weights,
        backend=args.backend,
        cache=not args.no_cache,
        threads=args.threads,
        img_size=args.img_size,
        labels=args.labels,
        det_img_scale=tuple(args.img_scale),
        host=args.host,
        port=args.port,
        batch=BatchLimits(args.max_batch, float(args.max_wait_ms), args.max_queue),
        http=HttpLimits(max_body_bytes=int(args.max_body_mb * (1 << 20)), timeout_s=args.timeout),
    )
    return serve(cfg)
