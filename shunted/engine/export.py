"""Export a model for deployment (Paddle Inference or ONNX), then check the export against dygraph.

Paddle: ``paddle.jit.to_static`` with ``InputSpec([None, 3, S, S])`` + ``paddle.jit.save`` → ``model.json`` +
``model.pdiparams`` (Paddle 3.3 PIR format). ONNX: the same saved program through ``paddle2onnx`` (opset 17,
dynamic batch) → ``model.onnx``. paddle2onnx's default post-export step (polygraphy constant folding) is skipped:
it sets ``POLYGRAPHY_AUTOINSTALL_DEPS`` and may pip-install packages at run time. Asking ``paddle2onnx.export`` for
the model bytes (``save_file=None``) returns before that step; its own C++ graph optimiser still runs.

An export directory also holds ``export.json`` (model, format, input size, outputs, parity figures). It is built in
a temporary sibling directory and renamed into place only after the parity check passed, so a failed export never
leaves a half-written or unchecked model at the destination.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ShuntedError

FORMATS = ("paddle", "onnx")
PADDLE_PREFIX = "model"  # → model.json + model.pdiparams
ONNX_FILE = "model.onnx"
META_FILE = "export.json"
ONNX_OPSET = 17
PARITY_TOL = 1e-5
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


class ExportError(ShuntedError):
    """An export could not be written, or its outputs differ from dygraph beyond the tolerance."""


@dataclass
class ExportInfo:
    """What ``export.json`` records about an export directory."""

    model: str
    format: str
    img_size: int
    features: bool
    num_classes: int
    outputs: list[str]
    weights: str | None = None
    parity: dict = field(default_factory=dict)  # {"images": n, "batch_sizes": [...], "max_rel_err": x}

    def to_dict(self) -> dict:
        return asdict(self)


def rel_err(actual: np.ndarray, expected: np.ndarray) -> float:
    """‖actual − expected‖ / ‖expected‖ in float64 (the parity measure of the project)."""
    a = np.asarray(actual, np.float64)
    e = np.asarray(expected, np.float64)
    return float(np.linalg.norm(a - e) / max(np.linalg.norm(e), 1e-30))


def paddle_files(export_dir: str | os.PathLike) -> tuple[Path, Path]:
    """(model.json, model.pdiparams) of a Paddle export directory."""
    d = Path(export_dir)
    return d / f"{PADDLE_PREFIX}.json", d / f"{PADDLE_PREFIX}.pdiparams"


def read_info(export_dir: str | os.PathLike) -> ExportInfo | None:
    path = Path(export_dir) / META_FILE
    if not path.is_file():
        return None
    return ExportInfo(**json.loads(path.read_text()))


def output_names(model) -> list[str]:
    if getattr(model, "features_only", False):
        return [f"stage{i + 1}" for i in model.out_indices]
    return ["logits"]


def save_paddle(model, out_dir: str | os.PathLike, img_size: int) -> Path:
    """``jit.save`` the model (eval mode) with a dynamic batch; returns ``model.json``."""
    import paddle

    model.eval()
    spec = [paddle.static.InputSpec([None, 3, img_size, img_size], "float32", name="x")]
    # to_static replaces model.forward in place; put it back, or the caller's "dygraph" model would from now on
    # run the static program (without the dygraph-only code paths of the model).
    had_own_forward, own_forward = "forward" in vars(model), vars(model).get("forward")
    static = paddle.jit.to_static(model, input_spec=spec, full_graph=True)
    try:
        paddle.jit.save(static, str(Path(out_dir) / PADDLE_PREFIX), input_spec=spec)
    finally:
        if had_own_forward:
            model.forward = own_forward
        else:
            del model.forward
    json_path, params_path = paddle_files(out_dir)
    if not (json_path.is_file() and params_path.is_file()):
        raise ExportError(f"{out_dir}: paddle.jit.save did not write {json_path.name} and {params_path.name}")
    return json_path


def save_onnx(model, out_dir: str | os.PathLike, img_size: int, opset: int = ONNX_OPSET) -> Path:
    """jit.save into a scratch folder, convert with paddle2onnx (no polygraphy step); returns ``model.onnx``."""
    try:
        import paddle2onnx
    except ImportError as exc:
        raise ExportError(
            "--format onnx needs the optional packages: pip install 'shunted-paddle[onnx]'"
        ) from exc
    with tempfile.TemporaryDirectory(prefix="shunted-p2o-") as scratch:
        json_path = save_paddle(model, scratch, img_size)
        _, params_path = paddle_files(scratch)
        try:
            data = paddle2onnx.export(
                str(json_path),
                str(params_path),
                save_file=None,  # return the bytes: skips the polygraphy/onnxoptimizer post-step
                opset_version=opset,
                auto_upgrade_opset=True,
                enable_onnx_checker=True,
                enable_optimize=True,
                optimize_tool="None",
            )
        except UnboundLocalError:  # paddle2onnx logs the conversion error and then fails on its own variable
            data = None
    if not data:
        raise ExportError(f"paddle2onnx could not convert {model.__class__.__name__} (see its log above)")
    path = Path(out_dir) / ONNX_FILE
    path.write_bytes(data)
    return path


def find_check_images(limit: int, search: Sequence[str | os.PathLike] | None = None) -> list[Path]:
    """Real images to check an export with: the bundled CIFAR-10 demo images, else ../shared's ImageNet samples."""
    if search is None:
        package = Path(__file__).resolve().parents[1]
        repo = package.parent
        search = [package / "assets" / "cifar10-demo", repo / ".." / "shared" / "data" / "imagenet-samples"]
    for folder in map(Path, search):
        if folder.is_dir():
            files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
            if files:
                return files[:limit]
    raise ExportError(
        f"no real images to check the export with (looked in {', '.join(str(s) for s in search)}); "
        "pass --check-images DIR"
    )


def load_batch(paths: Sequence[Path], model, img_size: int) -> np.ndarray:
    """Images → (N, 3, S, S) float32 through the evaluation transform of the model's pretrained config."""
    from ..data.transforms import EvalTransform
    from ..models.registry import PretrainedConfig

    cfg = getattr(model, "pretrained_cfg", None) or PretrainedConfig()
    transform = EvalTransform.from_config(cfg, img_size=img_size)
    return np.stack([transform.load(p) for p in paths]).astype(np.float32)


def dygraph_outputs(model, x: np.ndarray) -> list[np.ndarray]:
    """The dygraph model's outputs on ``x``, always as a list (one array per output)."""
    from .backends import dygraph_predictor

    out = dygraph_predictor(model)(x)
    return out if isinstance(out, list) else [out]


def check_parity(
    predict: Callable[[np.ndarray], np.ndarray | list[np.ndarray]],
    model,
    batch: np.ndarray,
    batch_sizes: Sequence[int] = (1, 3),
    tol: float = PARITY_TOL,
    label: str = "export",
) -> float:
    """Run ``predict`` and dygraph on slices of ``batch`` of each size; the largest relative error, or raise."""
    worst = 0.0
    for n in batch_sizes:
        x = batch[:n]
        if len(x) < n:
            x = np.concatenate([x] * (n // max(len(x), 1) + 1))[:n]
        expected = dygraph_outputs(model, x)
        got = predict(x)
        got = list(got) if isinstance(got, (list, tuple)) else [got]
        if len(got) != len(expected):
            raise ExportError(f"{label}: {len(got)} outputs, dygraph gives {len(expected)}")
        for i, (g, e) in enumerate(zip(got, expected, strict=True)):
            if g.shape != e.shape:
                raise ExportError(f"{label}: output {i} has shape {g.shape}, dygraph {e.shape} (batch {n})")
            err = rel_err(g, e)
            worst = max(worst, err)
            if not err <= tol:
                raise ExportError(
                    f"{label}: output {i} differs from dygraph by rel err {err:.2e} > {tol:.0e} "
                    f"at batch {n}; the exported model is wrong and was not written"
                )
    return worst


def export_model(
    model,
    fmt: str,
    output: str | os.PathLike,
    img_size: int,
    model_name: str,
    weights: str | None = None,
    check_images: Sequence[Path] | None = None,
    batch_sizes: Sequence[int] = (1, 3),
    threads: int = 2,
    tol: float = PARITY_TOL,
) -> ExportInfo:
    """Write ``model`` as ``fmt`` into ``output`` (replaced atomically) after checking it on real images."""
    from .backends import make_predictor

    if fmt not in FORMATS:
        raise ExportError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if img_size % 32:
        raise ExportError(f"--img-size {img_size}: must be a multiple of 32 (the network's total stride)")
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise ExportError(f"{output}: exists and is not a directory")
    images = list(check_images) if check_images else find_check_images(max(batch_sizes))
    batch = load_batch(images, model, img_size)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; the export is an ordinary directory
    try:
        model.eval()
        save_paddle(model, tmp, img_size) if fmt == "paddle" else save_onnx(model, tmp, img_size)
        backend = "inference" if fmt == "paddle" else "onnxruntime"
        predict = make_predictor(backend, tmp, threads=threads)
        worst = check_parity(predict, model, batch, batch_sizes, tol, label=f"{fmt} export of {model_name}")
        del predict
        info = ExportInfo(
            model=model_name,
            format=fmt,
            img_size=img_size,
            features=bool(getattr(model, "features_only", False)),
            num_classes=int(getattr(model, "num_classes", 0)),
            outputs=output_names(model),
            weights=weights,
            parity={
                "images": [p.name for p in images],
                "batch_sizes": list(batch_sizes),
                "backend": backend,
                "max_rel_err": worst,
                "tolerance": tol,
            },
        )
        (tmp / META_FILE).write_text(json.dumps(info.to_dict(), indent=2) + "\n")
        _replace_dir(tmp, output)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return info


def _replace_dir(src: Path, dst: Path) -> None:
    """Rename ``src`` to ``dst``; an existing ``dst`` is moved aside first and removed after the swap."""
    old = None
    if dst.exists():
        old = dst.with_name(f".{dst.name}.old.{os.getpid()}")
        os.replace(dst, old)
    try:
        os.replace(src, dst)
    except BaseException:
        if old is not None:
            os.replace(old, dst)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
