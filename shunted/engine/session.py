"""Open a checkpoint on a runtime: the one step every command that runs a model shares (eval, predict, bench,
export).

``open_model`` builds the model once with ``shunted.factory.create_model`` (which reads and hashes the weights
once, ``model.pretrained_sha256``) and puts it on the chosen runtime: ``dygraph`` runs the model itself; the
static runtimes (``inference*``, ``onnxruntime``, ``openvino*``) get an export of it, checked against dygraph on
real images when it is made and kept in the start-up cache (``shunted/runtime/cache.py``), so a second process
with the same weights, model, input size and library versions reads it instead of exporting again (OpenVINO's
compiled blobs are cached beside it). ``cache=False`` (``--no-cache``) exports to a temporary folder instead.

``--backend auto`` (the commands' default) picks the fastest runtime whose parity with dygraph the tests check
and that is installed: OpenVINO fp32, then ONNX Runtime, then Paddle Inference, then dygraph. A runtime that is
missing, cannot be exported to, or whose export fails the parity check is passed over with one line on stderr
saying why. bfloat16 is never picked: it is the user's choice (``openvino_bf16``, ``inference_bf16``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..runtime import BACKENDS, DEFAULT_MARGIN, ONNX_BACKENDS, Predictor, check_backend, make_predictor
from ..runtime.cache import cached_folder, found_folder, openvino_cache_dir
from ..runtime.layout import write_info
from .export import (
    PARITY_TOL,
    ExportError,
    check_parity,
    export_info,
    find_check_images,
    is_dense,
    load_batch,
    onnx_exporter,
    save_onnx,
    save_paddle,
)

AUTO = "auto"
SHORTCUT_FILE = "opened.json"  # a start-up shortcut's content (``open_model``)
# --backend auto: the fastest first. Only runtimes whose parity with dygraph (within 1e-5) the tests check.
AUTO_ORDER = ("openvino", "onnxruntime", "inference", "dygraph")
CHOICES = (AUTO, *BACKENDS)
# The parity check of a new export: this many bundled images, in one batch (split over the cores by OpenVINO).
CHECK_BATCH = 2
# a segmentation or detection export takes any size; checked at a small one (96 is padded to 128 for segmentation)
DENSE_CHECK_SIZE = (128, 96)


@dataclass
class Opened:
    """A model on a runtime, with what results record about it."""

    predictor: Predictor
    # the Paddle model (what ``dygraph`` runs); None when a static runtime was opened by a start-up shortcut
    model: object
    model_name: str
    pretrained_cfg: object  # shunted.models.registry.PretrainedConfig
    num_classes: int
    weights: str | None
    weights_sha256: str | None
    backend: str  # the runtime used (what ``auto`` resolved to)
    img_size: int
    threads: int | None
    requested_backend: str | None = None  # what was asked for (``auto`` or the backend itself)
    cached: bool | None = None  # the export came from the start-up cache (None: dygraph or no cache)


def missing_for(backend: str) -> str | None:
    """Why ``backend`` cannot run here (a package is missing), or None when it can."""
    if backend in ONNX_BACKENDS:
        package = ONNX_BACKENDS[backend]
        if importlib.util.find_spec(package) is None:
            hint = "pip install openvino" if package == "openvino" else "pip install 'shunted-paddle[onnx]'"
            return f"{package} is not installed ({hint})"
        if onnx_exporter() is None:
            return (
                "no ONNX exporter: neither paddle2onnx nor p2o is installed (pip install paddle2onnx or p2o)"
            )
    return None


def export_format(backend: str) -> str:
    """The export a static ``backend`` runs: ``onnx`` (ONNX Runtime, OpenVINO) or ``paddle`` (Paddle Inference)."""
    return "onnx" if backend in ONNX_BACKENDS else "paddle"


def resolve_backend(requested: str) -> str:
    """The runtime ``requested`` means before anything is built: ``auto`` → the first installed of AUTO_ORDER.

    (``open_model`` may still pass over it if its export fails the parity check, saying so.)
    """
    if requested != AUTO:
        return requested
    return next(b for b in AUTO_ORDER if missing_for(b) is None)


def _digest_files(paths) -> str:
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _software(fmt: str, code: list[Path]) -> dict:
    """The parts of a cache key that name the software: exporter, library versions, a digest of ``code``."""
    from ..version import PADDLE_DISTRIBUTIONS, __version__, installed_version

    return {
        "exporter": onnx_exporter() if fmt == "onnx" else "paddle.jit",
        "versions": {"paddlepaddle": installed_version(*PADDLE_DISTRIBUTIONS)}
        | {p: installed_version(p) for p in ("paddle2onnx", "p2o", "onnx", "onnxruntime", "openvino")}
        | {"shunted": __version__, "python": sys.version.split()[0]},
        "code_sha256": _digest_files(code),
    }


def _graph_code() -> list[Path]:
    """The files that decide an export's graph."""
    package = Path(__file__).resolve().parents[1]
    return [
        *(package / "models").glob("*.py"),
        Path(__file__).with_name("export.py"),
        package / "runtime" / "layout.py",
    ]


def export_key(model, fmt: str, img_size: int) -> dict:
    """The start-up cache key of ``model``'s export in ``fmt`` (``shunted/runtime/cache.py``)."""
    from ..models.weights import weights_digest

    return {
        "kind": "export",
        "format": fmt,
        "model": type(model).__name__,
        "variant": getattr(getattr(model, "variant", None), "name", None)
        or getattr(model, "variant_name", None),
        "features": bool(getattr(model, "features_only", False)),
        "num_classes": int(getattr(model, "num_classes", 0) or 0),
        "img_size": "dynamic" if is_dense(model) else int(img_size),
        "weights_sha256": weights_digest(model),  # as loaded: a fresh head is covered too
        **_software(fmt, _graph_code()),
    }


def shortcut_key(
    name: str, weights_sha256: str, suffix: str, fmt: str, img_size: int | None, features_only: bool
) -> dict:
    """The cache key of the shortcut from a weights file (its SHA-256 and suffix, which picks the reader) to its
    export (``open_model``).

    Everything that decides the weights as loaded and the export they open to is in it: the file, the model
    name, the code that reads and loads checkpoints, builds the model, keys and checks exports and keeps the
    cache (a change there retires every shortcut), the library versions; a different class count (a fresh head)
    never takes a shortcut.
    """
    package = Path(__file__).resolve().parents[1]
    code = [
        *_graph_code(),
        *(package / "convert").glob("*.py"),
        package / "factory.py",
        Path(__file__),
        package / "runtime" / "cache.py",
    ]
    return {
        "kind": "opened",
        "model": name,
        "weights_file_sha256": weights_sha256,
        "weights_suffix": suffix,
        "format": fmt,
        "img_size": img_size,
        "features": features_only,
        **_software(fmt, code),
    }


def _build_export(
    model, fmt: str, img_size: int, check_backend_name: str, threads: int, folder: Path
) -> None:
    """Write ``model``'s export into ``folder`` and check it against dygraph with ``check_backend_name``."""
    dense = is_dense(model)
    (save_onnx if fmt == "onnx" else save_paddle)(model, folder, img_size)
    name = str(getattr(model, "variant_name", None) or type(model).__name__)
    info = export_info(model, fmt, DENSE_CHECK_SIZE if dense else img_size, name)
    write_info(folder, info)  # before the predictor: it reads pad_to, so the check runs what users run
    images = find_check_images(CHECK_BATCH)
    batch = load_batch(images, model, DENSE_CHECK_SIZE if dense else img_size)
    ov_cache = openvino_cache_dir(folder) if check_backend_name.startswith("openvino") else None
    predict = make_predictor(check_backend_name, folder, threads, compile_cache=ov_cache)
    worst = check_parity(
        predict,
        model,
        batch,
        (CHECK_BATCH,),
        PARITY_TOL,
        label=f"{check_backend_name} export (start-up check)",
    )
    info.parity = {
        "images": [p.name for p in images],
        "batch_sizes": [CHECK_BATCH],
        "backend": check_backend_name,
        "max_rel_err": worst,
        "tolerance": PARITY_TOL,
    }
    info.files = sorted(p.name for p in folder.iterdir() if p.is_file())
    write_info(folder, info)


def _warn(line: str) -> None:
    print(f"shunted: {line}", file=sys.stderr, flush=True)


def model_predictor(
    backend: str,
    model,
    threads: int | None = 2,
    img_size: int = 224,
    recheck_margin: float = DEFAULT_MARGIN,
    cache: bool = True,
) -> Predictor:
    """``model`` on ``backend``: itself for ``dygraph``, else its export at ``img_size`` (checked against dygraph
    when made; from the start-up cache unless ``cache`` is False, then a temporary folder).

    A segmentation model (``shunted_*_fpn``) is exported with a dynamic height and width, and its predictor takes
    any size (padded to a multiple of 32 and cropped back, ``shunted/runtime/padding.py``), as the dygraph model.
    """
    return _model_predictor(backend, model, threads, img_size, recheck_margin, cache)[0]


def _model_predictor(
    backend, model, threads, img_size, recheck_margin, cache
) -> tuple[Predictor, bool | None]:
    check_backend(backend)
    if backend == "dygraph":
        return make_predictor(backend, model, threads), None
    missing = missing_for(backend)
    if missing is not None:
        raise ExportError(f"--backend {backend}: {missing}")
    threads_n = threads if threads is not None else (os.cpu_count() or 1)
    fmt = export_format(backend)
    checker = backend.removesuffix("_bf16")

    def build(folder: Path) -> None:
        _build_export(model, fmt, img_size, checker, threads_n, folder)

    if cache:
        try:
            folder, found = cached_folder(export_key(model, fmt, img_size), build, log=_warn)
        except OSError as exc:  # a read-only or full cache folder: this run without it
            _warn(f"cannot use the start-up cache ({exc}): exporting to a temporary folder")
        else:
            ov_cache = openvino_cache_dir(folder) if backend.startswith("openvino") else None
            return make_predictor(backend, folder, threads, recheck_margin, compile_cache=ov_cache), found
    # Both runtimes read the files completely when the predictor is created.
    with tempfile.TemporaryDirectory(prefix=f"shunted-{backend}-") as folder:
        build(Path(folder))
        return make_predictor(backend, folder, threads, recheck_margin=recheck_margin), None


def open_backend(
    backend: str,
    model,
    threads: int | None,
    img_size: int,
    recheck_margin: float = DEFAULT_MARGIN,
    cache: bool = True,
    warn: Callable[[str], None] = _warn,
) -> tuple[str, Predictor, bool | None]:
    """(the backend used, its predictor, whether its export came from the cache) for ``backend`` or ``auto``."""
    if backend != AUTO:
        predictor, cached = _model_predictor(backend, model, threads, img_size, recheck_margin, cache)
        return backend, predictor, cached
    passed = []
    for candidate in AUTO_ORDER:
        missing = missing_for(candidate)
        if missing is not None:
            passed.append(f"{candidate}: {missing}")
            continue
        try:
            predictor, cached = _model_predictor(candidate, model, threads, img_size, recheck_margin, cache)
        except Exception as exc:  # an export or runtime failure, or a parity miss: the next runtime
            if candidate == "dygraph":
                raise
            passed.append(f"{candidate}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
            continue
        if passed:
            warn(f"--backend auto: using {candidate} ({'; '.join(passed)})")
        return candidate, predictor, cached
    raise AssertionError("dygraph always opens")


@dataclass(frozen=True)
class RuntimeConfig:
    """Where a model runs: ``backend`` (a runtime, or ``auto``) with ``threads``; the other fields are
    ``open_model``'s (below)."""

    backend: str = "dygraph"
    threads: int | None = None
    img_size: int | None = None
    recheck_margin: float = DEFAULT_MARGIN
    cache: bool = True


def open_model(
    name: str,
    weights: str | os.PathLike | None,
    runtime: RuntimeConfig = RuntimeConfig(),
    features_only: bool = False,
    num_classes: int | None = None,
    expect_num_classes: int | None = None,
) -> Opened:
    """Build ``name`` with ``weights`` once and open it on ``runtime.backend`` (a runtime, or ``auto``).

    num_classes: the head's class count (default the checkpoint's; another count makes a fresh head, as
        ``create_model``). expect_num_classes: the class count the user expects (``--num-classes`` of eval): a
        checkpoint with another count is a WeightsError, raised before any export.
    runtime.img_size: the input size the static runtimes are exported at (default the variant's, 224); a segmentation
        model (``shunted_t_fpn`` …, built by ``create_model`` with ``weights`` as its whole-model weights) is
        exported with a dynamic size and takes any (``model_predictor``).
    runtime.cache: keep the export in the start-up cache (``shunted/runtime/cache.py``) and read it from there.
    """
    backend, threads, img_size = runtime.backend, runtime.threads, runtime.img_size
    recheck_margin, cache = runtime.recheck_margin, runtime.cache
    from ..errors import WeightsError

    if backend != AUTO:
        check_backend(backend)
    shortcut = _shortcut_for(name, weights, runtime, features_only) if num_classes is None else None
    if shortcut is not None:
        opened = _open_by_shortcut(name, weights, runtime, shortcut, expect_num_classes)
        if opened is not None:
            return opened
    from ..factory import create_model

    kwargs = {"features_only": True} if features_only else {}
    model = create_model(name, pretrained=weights, num_classes=num_classes, **kwargs)
    if expect_num_classes is not None and expect_num_classes != model.num_classes:
        raise WeightsError(
            f"{weights}: has {model.num_classes} classes, but --num-classes is {expect_num_classes}"
        )
    size = img_size or model.pretrained_cfg.input_size[-1]
    used, predictor, cached = open_backend(backend, model, threads, size, recheck_margin, cache)
    # the file as read now must be the file hashed for the key (a checkpoint replaced meanwhile: no shortcut)
    if shortcut is not None and cached is not None and used == shortcut[0]:
        if getattr(model, "pretrained_sha256", None) == shortcut[1]["weights_file_sha256"]:
            _save_shortcut(shortcut[1], model, used, size)
    return Opened(
        predictor=predictor,
        model=model,
        model_name=name,
        pretrained_cfg=model.pretrained_cfg,
        num_classes=int(model.num_classes),
        weights=str(weights) if weights is not None else None,
        weights_sha256=model.pretrained_sha256,
        backend=used,
        img_size=size,
        threads=threads,
        requested_backend=backend,
        cached=cached,
    )


def _shortcut_for(name: str, weights, runtime: RuntimeConfig, features_only: bool) -> tuple[str, dict] | None:
    """(the static backend, the shortcut key) under which ``open_model`` may find this request's export without
    building the model (``shunted/runtime/cache.py``), or None: no weights file, no cache, dygraph."""
    if weights is None or not runtime.cache:
        return None
    backend = resolve_backend(runtime.backend)
    if backend == "dygraph" or missing_for(backend) is not None:
        return None
    from ..errors import ShuntedError
    from ..fileio import open_input, sha256_stream

    try:  # a regular file only, opened without blocking (the reader gives a folder or a pipe its one line)
        with open_input(weights) as fh:
            digest = sha256_stream(fh)
    except (OSError, ShuntedError):
        return None
    fmt = export_format(backend)
    suffix = Path(weights).suffix.lower()
    return backend, shortcut_key(name, digest, suffix, fmt, runtime.img_size, features_only)


def _open_by_shortcut(
    name: str, weights, runtime: RuntimeConfig, shortcut: tuple[str, dict], expect_num_classes: int | None
) -> Opened | None:
    """The export a shortcut names, opened on its runtime without building the model (nor importing Paddle);
    None when there is no good shortcut or its export is gone or bad (the caller builds the model)."""
    from ..errors import WeightsError
    from ..models.registry import PretrainedConfig

    backend, key = shortcut
    folder = found_folder(key)
    if folder is None:
        return None
    try:
        meta = json.loads((folder / SHORTCUT_FILE).read_text())
        export = found_folder(meta["export_key"])
        num_classes = int(meta["num_classes"])
        pretrained_cfg = PretrainedConfig.from_dict(meta["pretrained_cfg"])
        size = int(meta["img_size"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if export is None:
        return None
    if expect_num_classes is not None and expect_num_classes != num_classes:
        raise WeightsError(f"{weights}: has {num_classes} classes, but --num-classes is {expect_num_classes}")
    ov_cache = openvino_cache_dir(export) if backend.startswith("openvino") else None
    try:
        predictor = make_predictor(
            backend, export, runtime.threads, runtime.recheck_margin, compile_cache=ov_cache
        )
    except Exception:  # noqa: BLE001 — the runtime cannot open it here: the cold path decides (auto moves on)
        return None
    return Opened(
        predictor=predictor,
        model=None,
        model_name=name,
        pretrained_cfg=pretrained_cfg,
        num_classes=num_classes,
        weights=str(weights),
        weights_sha256=key["weights_file_sha256"],
        backend=backend,
        img_size=size,
        threads=runtime.threads,
        requested_backend=runtime.backend,
        cached=True,
    )


def _save_shortcut(key: dict, model, backend: str, img_size: int) -> None:
    """Record that the weights of ``key`` open to ``model``'s export for ``backend`` (best effort: a cache that
    cannot be written only costs the next start the model build)."""
    fmt = export_format(backend)
    meta = {
        "export_key": export_key(model, fmt, img_size),
        "num_classes": int(model.num_classes),
        "pretrained_cfg": model.pretrained_cfg.to_dict(),
        "img_size": int(img_size),
    }
    try:
        cached_folder(
            key, lambda folder: (folder / SHORTCUT_FILE).write_text(json.dumps(meta, indent=1) + "\n")
        )
    except OSError as exc:
        _warn(f"cannot record the start-up shortcut ({exc})")


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
