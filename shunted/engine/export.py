"""Export a model for deployment (Paddle Inference or ONNX), then check the export against dygraph.

Paddle: ``paddle.jit.to_static`` with ``InputSpec([None, 3, S, S])`` + ``paddle.jit.save`` → ``model.json`` +
``model.pdiparams`` (Paddle 3.3 PIR format). ONNX: the same saved program through ``paddle2onnx`` (opset 17,
dynamic batch) → ``model.onnx``. paddle2onnx's default post-export step (polygraphy constant folding) is skipped:
it sets ``POLYGRAPHY_AUTOINSTALL_DEPS`` and may pip-install packages at run time. Asking ``paddle2onnx.export`` for
the model bytes (``save_file=None``) returns before that step; its own C++ graph optimiser still runs.

Segmentation models (``shunted_*_fpn``, ``shunted/models/fpn.py``): the input's height and width stay dynamic too
(``InputSpec([None, 3, None, None])``); the graph needs multiples of 32 and the runtimes pad any other size and crop
the N×K×H×W logits back (``shunted/runtime/padding.py``, ``export.json`` ``pad_to``), as the dygraph model does.
The parity check runs at ``img_size`` (H, W), at a second size and at a size that is not a multiple of 32.

An export directory also holds ``export.json`` (model, format, input size, outputs, parity figures, the files it
wrote). It is built in a temporary sibling directory and swapped into place only after the parity check passed, so
a failed export never leaves a half-written or unchecked model at the destination.

The destination must be new, empty, or a previous export (a folder holding only an ``export.json`` of ours and
the files it lists). Anything else is refused before any work, naming what is there: an export never deletes or
mixes with files it did not write. (Writing beside the user's files instead would leave the folder half old,
half new whenever an export fails midway, and could not replace a previous export atomically.) A previous export
is replaced by one atomic swap (Linux ``renameat2(RENAME_EXCHANGE)``; elsewhere two renames), then its files are
removed by name.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ShuntedError
from ..fileio import IMAGE_EXTENSIONS, OutputError, check_output_dir, disk_full, output_error
from ..runtime import make_predictor
from ..runtime.dygraph import dygraph_outputs
from ..runtime.layout import (
    EXPORT_FILES,
    FORMATS,
    META_FILE,
    ONNX_FILE,
    PADDLE_PREFIX,
    ExportInfo,
    paddle_files,
    previous_export_files,
    read_info,
    write_info,
)

__all__ = [
    "EXPORT_FILES",
    "FORMATS",
    "META_FILE",
    "ONNX_FILE",
    "PADDLE_PREFIX",
    "ExportError",
    "ExportInfo",
    "ParityCheck",
    "check_export_output",
    "check_parity",
    "dygraph_outputs",
    "export_info",
    "export_model",
    "find_check_images",
    "is_dense",
    "is_detection",
    "is_segmentation",
    "load_batch",
    "onnx_exporter",
    "output_names",
    "paddle_files",
    "read_info",
    "rel_err",
    "save_onnx",
    "save_paddle",
]

ONNX_OPSET = 17
PARITY_TOL = 1e-5
SEG_PAD_TO = 32  # the segmentation models' total stride: runtimes pad inputs to a multiple of it


class ExportError(ShuntedError):
    """An export could not be written, or its outputs differ from dygraph beyond the tolerance."""


def rel_err(actual: np.ndarray, expected: np.ndarray) -> float:
    """‖actual − expected‖ / ‖expected‖ in float64 (the parity measure of the project)."""
    a = np.asarray(actual, np.float64)
    e = np.asarray(expected, np.float64)
    return float(np.linalg.norm(a - e) / max(np.linalg.norm(e), 1e-30))


def output_names(model) -> list[str]:
    if is_detection(model):
        return ["cls", "box_deltas"]
    if getattr(model, "features_only", False):
        return [f"stage{i + 1}" for i in model.out_indices]
    return ["logits"]


def is_segmentation(model) -> bool:
    """A segmentation model (``ShuntedFPN``: a ``decode_head``), whose export has a dynamic height and width."""
    return getattr(model, "decode_head", None) is not None


def is_detection(model) -> bool:
    """A detection model (``ShuntedRetinaNet``: a ``bbox_head``): a dynamic height and width (multiples of 32, as
    its inputs always are), raw outputs (decoding and NMS run on them in numpy, ``models/retinanet.py``)."""
    return getattr(model, "bbox_head", None) is not None


def is_dense(model) -> bool:
    return is_segmentation(model) or is_detection(model)


def save_paddle(model, out_dir: str | os.PathLike, img_size: int) -> Path:
    """``jit.save`` the model (eval mode) with a dynamic batch; returns ``model.json``.

    img_size: the fixed input height and width; a segmentation model's are dynamic (``is_segmentation``).
    """
    import paddle

    model.eval()
    side = None if is_dense(model) else img_size
    spec = [paddle.static.InputSpec([None, 3, side, side], "float32", name="x")]
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


def onnx_exporter() -> str | None:
    """The ONNX exporter installed here: ``paddle2onnx`` (wheels up to Python 3.12), else ``p2o`` (a PIR → ONNX
    converter with wheels for any Python ≥ 3.10; a program, found beside this Python or on PATH), else None."""
    import importlib.util

    if importlib.util.find_spec("paddle2onnx") is not None:
        return "paddle2onnx"
    if _p2o_program() is not None:
        return "p2o"
    return None


def _p2o_program() -> str | None:
    beside = Path(sys.executable).parent / "p2o"
    return str(beside) if beside.is_file() and os.access(beside, os.X_OK) else shutil.which("p2o")


def _convert_with_p2o(json_path: Path, params_path: Path, opset: int) -> bytes | None:
    """``model.onnx``'s bytes from the ``p2o`` program, or None when it fails (its output is shown)."""
    import subprocess

    with tempfile.TemporaryDirectory(prefix="shunted-p2o-out-") as out:
        target = Path(out) / ONNX_FILE
        run = subprocess.run(
            [_p2o_program() or "p2o", str(json_path), str(params_path), str(target), "--opset", str(opset)],
            capture_output=True,
            text=True,
        )
        if run.returncode != 0 or not target.is_file():
            print((run.stderr or run.stdout).strip()[-2000:], file=sys.stderr)
            return None
        return target.read_bytes()


def save_onnx(model, out_dir: str | os.PathLike, img_size: int, opset: int = ONNX_OPSET) -> Path:
    """jit.save into a scratch folder, convert with paddle2onnx (no polygraphy step) or, where paddle2onnx is not
    installed (no wheel past Python 3.12), with ``p2o``; returns ``model.onnx``."""
    exporter = onnx_exporter()
    if exporter is None:
        raise ExportError(
            "--format onnx needs an ONNX exporter, a dependency of shunted-paddle: pip install paddle2onnx (or "
            "p2o where paddle2onnx has no wheel, Python 3.13)"
        )
    with tempfile.TemporaryDirectory(prefix="shunted-p2o-") as scratch:
        json_path = save_paddle(model, scratch, img_size)
        _, params_path = paddle_files(scratch)
        if exporter == "p2o":
            data = _convert_with_p2o(json_path, params_path, opset)
        else:
            import paddle2onnx

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
            except (UnboundLocalError, SystemExit):
                # paddle2onnx logs the conversion error, then fails on its own variable (2.0) or calls sys.exit
                # (2.1, e.g. on an op attribute of a type it does not expect)
                data = None
        if data:
            data = fix_group_norm_epsilon(data, json_path)
    if not data:
        raise ExportError(f"{exporter} could not convert {model.__class__.__name__} (see its log above)")
    path = Path(out_dir) / ONNX_FILE
    path.write_bytes(data)
    return path


GROUP_NORM_EPSILON = re.compile(
    r'\{"#":"1\.group_norm","A":\[\{"AT":\{"#":"0\.a_f(?:32|64)","D":([^}]+)\},"N":"epsilon"\}'
)


def fix_group_norm_epsilon(data: bytes, json_path: str | os.PathLike) -> bytes:
    """The ONNX model ``data`` with the epsilon of every GroupNorm set to the Paddle program's.

    A PIR program stores ``group_norm``'s epsilon as a float64 attribute, which paddle2onnx 2.1 reads as a float32
    it never writes: the ``InstanceNormalization`` it makes of each GroupNorm gets whatever was on the stack
    (seen: 4e-45, 2e20, -1e25; the segmentation head's outputs were off by 50 %). The epsilons are taken from
    ``model.json`` in program order and written to the ``InstanceNormalization`` nodes in graph order (paddle2onnx
    converts the ops in program order and makes one such node per GroupNorm). Models without GroupNorm (the
    classifiers) are returned unchanged.
    """
    text = Path(json_path).read_text(encoding="utf-8", errors="replace")
    if '"1.group_norm"' not in text:
        return data
    epsilons = [float(v) for v in GROUP_NORM_EPSILON.findall(text)]
    import onnx

    graph = onnx.load_from_string(data)
    nodes = [n for n in graph.graph.node if n.op_type == "InstanceNormalization"]
    if len(nodes) != len(epsilons) or text.count('"1.group_norm"') != len(epsilons):
        raise ExportError(
            f"paddle2onnx made {len(nodes)} InstanceNormalization nodes of {len(epsilons)} GroupNorm ops; "
            "cannot restore their epsilon (see shunted/engine/export.py fix_group_norm_epsilon)"
        )
    for node, eps in zip(nodes, epsilons, strict=True):
        attrs = [a for a in node.attribute if a.name == "epsilon"]
        if attrs:
            attrs[0].f = eps
        else:
            node.attribute.append(onnx.helper.make_attribute("epsilon", eps))
    return graph.SerializeToString()


def find_check_images(limit: int, search: Sequence[str | os.PathLike] | None = None) -> list[Path]:
    """Real images to check an export with: those in ``search`` (``--check-images``), else the bundled CIFAR-10
    demo images (``shunted/assets/cifar10-demo``)."""
    if search is None:
        search = [Path(__file__).resolve().parents[1] / "assets" / "cifar10-demo"]
    for folder in map(Path, search):
        if folder.is_dir():
            files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
            if files:
                return files[:limit]
    raise ExportError(
        f"no real images to check the export with (looked in {', '.join(str(s) for s in search)}); "
        "pass --check-images DIR"
    )


def load_batch(paths: Sequence[Path], model, img_size: int | Sequence[int]) -> np.ndarray:
    """Images → (N, 3, S, S) float32 through the evaluation transform of the model's pretrained config.

    A segmentation model: each image resized (bilinear) to ``img_size`` = (H, W), /255, the config's mean/std.
    """
    from ..data.transforms import EvalTransform
    from ..models.registry import PretrainedConfig

    cfg = getattr(model, "pretrained_cfg", None) or PretrainedConfig()
    if is_dense(model):
        from PIL import Image

        height, width = hw(img_size)
        mean = np.asarray(cfg.mean, np.float32).reshape(3, 1, 1)
        std = np.asarray(cfg.std, np.float32).reshape(3, 1, 1)
        batch = []
        for p in paths:
            with Image.open(p) as im:
                rgb = im.convert("RGB").resize((width, height), Image.BILINEAR)
            batch.append((np.asarray(rgb, np.float32).transpose(2, 0, 1) / 255.0 - mean) / std)
        return np.stack(batch).astype(np.float32)
    transform = EvalTransform.from_config(cfg, img_size=img_size)
    return np.stack([transform.load(p) for p in paths]).astype(np.float32)


def hw(img_size: int | Sequence[int]) -> tuple[int, int]:
    """``S`` or ``(H, W)`` → (H, W)."""
    if isinstance(img_size, int):
        return img_size, img_size
    height, width = img_size
    return int(height), int(width)


def export_info(model, fmt: str, img_size, model_name: str, weights: str | None = None) -> ExportInfo:
    """What ``export.json`` says of ``model``'s export (before the parity check): the task, and for a dense model
    (segmentation, detection) a dynamic height and width, ``img_size`` being the (H, W) it is checked at."""
    seg, dense = is_segmentation(model), is_dense(model)
    height, width = hw(img_size)
    return ExportInfo(
        model=model_name,
        format=fmt,
        img_size=[height, width] if dense else height,
        features=bool(getattr(model, "features_only", False)),
        num_classes=int(getattr(model, "num_classes", 0) or 0),
        outputs=output_names(model),
        weights=weights,
        task="segmentation" if seg else "detection" if is_detection(model) else "classification",
        dynamic_hw=dense,
        pad_to=SEG_PAD_TO if seg else 0,
    )


def check_parity(
    predict: Callable[[np.ndarray], np.ndarray | list[np.ndarray]],
    model,
    batch: np.ndarray,
    batch_sizes: Sequence[int] = (1, 3),
    tol: float = PARITY_TOL,
    label: str = "export",
    stats: dict | None = None,
) -> float:
    """Run ``predict`` and dygraph on slices of ``batch`` of each size; the largest relative error, or raise.

    stats: when given, ``stats["max_abs_err"]`` is raised to the largest absolute difference seen.
    """
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
            if stats is not None:
                stats["max_abs_err"] = max(
                    stats.get("max_abs_err", 0.0), float(np.abs(g - e).max(initial=0.0))
                )
            if not err <= tol:
                raise ExportError(
                    f"{label}: output {i} differs from dygraph by rel err {err:.2e} > {tol:.0e} "
                    f"at batch {n}; the exported model is wrong and was not written"
                )
    return worst


@dataclass(frozen=True)
class ParityCheck:
    """How a new export is checked against the model: on ``images`` (default: the bundled ones), in batches of
    ``batch_sizes``, with ``threads`` threads, to ``tol``."""

    images: Sequence[Path] | None = None
    batch_sizes: Sequence[int] = (1, 3)
    threads: int = 2
    tol: float = PARITY_TOL


def export_model(
    model,
    fmt: str,
    output: str | os.PathLike,
    img_size: int | Sequence[int],
    model_name: str,
    weights: str | None = None,
    check: ParityCheck = ParityCheck(),
) -> ExportInfo:
    """Write ``model`` as ``fmt`` into ``output`` (replaced atomically) after checking it on real images.

    img_size: S, or (H, W) for a segmentation model (whose export takes any size; the check runs at (H, W),
    at (H + 32, W + 64) and at (H + 13, W + 7), the last two with one image).
    """
    check_images, batch_sizes, threads, tol = check.images, check.batch_sizes, check.threads, check.tol
    if fmt not in FORMATS:
        raise ExportError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    seg, det = is_segmentation(model), is_detection(model)
    dense = seg or det
    height, width = hw(img_size)
    if height % 32 or width % 32:
        raise ExportError(f"--img-size {img_size}: must be a multiple of 32 (the network's total stride)")
    if height != width and not dense:
        raise ExportError(f"--img-size {height} {width}: a classification export is square; give one size")
    given = output
    output = check_export_output(output)
    images = list(check_images) if check_images else find_check_images(max(batch_sizes))
    batch = load_batch(images, model, (height, width) if dense else height)
    # a segmentation export: also one image at a second size and at a size the runtime pads (padding.py); a
    # detection export at a second size (its inputs are padded to 32 before they reach it)
    extra = (
        [(height + 32, width + 64), (height + 13, width + 7)]
        if seg
        else [(height + 32, width + 64)]
        if det
        else []
    )
    extra_batches = [load_batch(images[:1], model, size) for size in extra]
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent))
    except OSError as exc:
        raise output_error(given, exc) from None
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; the export is an ordinary directory
    installed = False
    try:
        model.eval()
        save_paddle(model, tmp, height) if fmt == "paddle" else save_onnx(model, tmp, height)
        backend = "inference" if fmt == "paddle" else "onnxruntime"
        info = export_info(model, fmt, (height, width), model_name, weights)
        if dense:
            write_info(tmp, info)  # before the predictor: it reads pad_to, so the check runs what users run
        predict = make_predictor(backend, tmp, threads=threads)
        label = f"{fmt} export of {model_name}"
        stats: dict = {}
        worst = check_parity(predict, model, batch, batch_sizes, tol, label=label, stats=stats)
        for x in extra_batches:
            worst = max(worst, check_parity(predict, model, x, (1,), tol, label=label, stats=stats))
        del predict
        info.parity = {
            "images": [p.name for p in images],
            "batch_sizes": list(batch_sizes),
            "backend": backend,
            "max_rel_err": worst,
            "tolerance": tol,
        }
        if dense:
            info.parity["sizes"] = [[height, width], *map(list, extra)]
            info.parity["max_abs_err"] = stats.get("max_abs_err")
        info.files = sorted({META_FILE, *(p.name for p in tmp.iterdir())})
        write_info(tmp, info)
        _install(tmp, output, given)
        installed = True
    except OSError as exc:  # ENOSPC, EIO, ...: name the user's folder, not the temporary one
        raise output_error(given, exc, (tmp,)) from exc
    except Exception as exc:
        # paddle.jit.save ignores ENOSPC and leaves a truncated model.pdiparams; the failure then surfaces as
        # a RuntimeError of the predictor reading it. A full file system is the cause worth naming.
        if disk_full(tmp):
            raise OutputError(f"{given}: cannot write: no space left on the device", errno.ENOSPC) from exc
        raise
    finally:
        if not installed:  # the folder this call made (mkdtemp) and filled: only files it wrote
            shutil.rmtree(tmp, ignore_errors=True)
    return info


def foreign_entries(folder: str | os.PathLike) -> list[str]:
    """Names in ``folder`` that a previous export did not write (all of them when it is not an export)."""
    folder = Path(folder)
    names = sorted(os.listdir(folder))
    ours = previous_export_files(folder) or set()
    return [n for n in names if n not in ours or (folder / n).is_symlink() or not (folder / n).is_file()]


def check_export_output(output: str | os.PathLike) -> Path:
    """The real path to export to, or ExportError / OutputError naming ``output`` (nothing is changed).

    Refused: the current folder or one of its parents, a file, a folder holding anything but a previous export,
    a location that cannot be written (shunted/fileio.py ``check_output_dir``).
    """
    given = str(output)
    real = Path(os.path.realpath(output))  # "." and symbolic links: the folder that would be replaced
    cwd = Path(os.path.realpath(os.getcwd()))
    if real == cwd or real in cwd.parents:
        raise ExportError(
            f"--output {given}: is the current folder or one of its parents; give a new folder, "
            f"e.g. --output {Path(given) / 'export'}"
        )
    if os.path.lexists(real) and not real.is_dir():
        raise ExportError(f"--output {given}: exists and is not a folder")
    if real.is_dir():
        _refuse_foreign(real, given)
    check_output_dir(real, beside=True)
    return real


def _refuse_foreign(folder: Path, given: str) -> None:
    foreign = foreign_entries(folder)
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise ExportError(
            f"--output {given}: holds files that are not a shunted export ({shown}); nothing was changed: "
            "give a new or empty folder"
        )


def _install(tmp: Path, output: Path, given: str) -> None:
    """Put the finished export ``tmp`` at ``output``, replacing a previous export (checked again) atomically."""
    if not os.path.lexists(output):
        os.rename(tmp, output)  # fails if a non-empty folder appeared meanwhile; an empty one is replaced
        return
    _refuse_foreign(output, given)
    if _exchange(tmp, output):
        old = tmp
    else:
        old = Path(tempfile.mkdtemp(prefix=f".{output.name}.", suffix=".old", dir=output.parent))
        os.rename(output, old)  # onto the empty placeholder
        try:
            os.rename(tmp, output)
        except BaseException:
            os.rename(old, output)
            raise
    _remove_previous_export(old)


def _remove_previous_export(folder: Path) -> None:
    """Delete, by name, the files a previous export wrote, then the folder; anything else is left there."""
    for name in previous_export_files(folder) or ():
        path = folder / name
        if path.is_file() and not path.is_symlink():
            path.unlink()
    try:
        folder.rmdir()
    except OSError:
        print(
            f"shunted export: warning: left {folder}: it holds files the previous export did not write",
            file=sys.stderr,
        )


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux ``renameat2`` with ``RENAME_EXCHANGE``); False if unsupported."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(b))
