"""Run the hostile and careless inputs of issue 11 through the ``shunted`` command and tabulate the outcomes.

python tools/reliability_cases.py                      # every case; writes docs/reliability.md
python tools/reliability_cases.py --quick --no-write   # the fast subset (what tests/test_reliability_cases.py runs)
python tools/reliability_cases.py --only 2 --only 6    # the cases of items 2 and 6 of issue 11

Each case builds its inputs in a fresh temporary folder (crafted pickles, zips and safetensors are made here, in
code, byte by byte), runs ``python -m shunted CMD ...`` of this checkout as a subprocess (stdin closed, a timeout,
an address-space limit; peak RSS from ``os.wait4`` in a small wrapper process) and compares what happened with what the case expects: the exit
code; for an error, that stderr is exactly one line ``shunted CMD: error: ...`` naming the user's file or flag (an
argparse usage block before it is allowed), short, and never naming an internal ``.tmp`` file; the user's files
unchanged (sha256 before and after); files that must not exist (orphan ``.tmp``, a checkpoint holding NaN/inf);
a peak-memory bound; and any case-specific check (e.g. the accuracy an evaluation reports).

Read-only and full output locations are real: the command runs in a private mount namespace (``unshare -m``) with
a read-only bind mount or a full tmpfs over the case's folder; without ``unshare`` those cases are SKIPped.
The good weights are the repository's demo checkpoint (``shunted/assets/demo``, shunted_t, 10 CIFAR-10 classes,
64 px), converted once to ``.pdparams`` by the command itself; images come from ``shunted/assets/cifar10-demo``.
``--shared DIR`` (default ``../shared`` beside the checkout) is only used for the cases marked as needing it;
``--alt-pillow DIR`` is a ``pip install --target DIR pillow==13.*`` folder for the Pillow-13 cases of item 7.

Exit status: 0 when no case FAILs, 1 otherwise.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import dataclasses
import datetime
import fnmatch
import hashlib
import json
import os
import pickle
import re
import resource
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
ASSETS = REPO / "shunted" / "assets"
DEMO_PTH = ASSETS / "demo" / "ckpt_T_cifar10_fp16.pth"
CIFAR = ASSETS / "cifar10-demo"
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
MB = 1 << 20
MAX_TIMEOUT = 60.0
MAX_MESSAGE = 400  # characters: a longer "one line" is a dump, not a message
CONVERT_RSS_MB = 700  # Paddle imported + the 11.5 M-parameter model twice + small crafted files ≈ 400 MB
ITEMS = {
    1: "no command deletes files it did not write",
    2: "safe loaders: memory bounded by the file, validation first",
    3: "non-finite checkpoints; out-of-range flags",
    4: "class folders map by name",
    5: "symlink loops",
    6: "one line, not a traceback",
    7: "Pillow 13",
}
# The cases are about input handling, not runtimes: dygraph (--backend auto would export the model first).
EVAL_64 = [
    "--backend=dygraph",
    "--model",
    "shunted_t",
    "--img-size",
    "64",
    "--resize-short",
    "73",
    "--workers",
    "0",
    "--no-progress",
]


# ---------------------------------------------------------------------------------------------------------------
# Crafting files: a tiny pickle assembler (the hostile files need opcodes no pickler would write)


@dataclasses.dataclass(frozen=True)
class G:
    """A global ``module.name`` (GLOBAL opcode)."""

    module: str
    name: str


@dataclasses.dataclass(frozen=True)
class Call:
    """``func(*args)`` (REDUCE)."""

    func: Any
    args: tuple


@dataclasses.dataclass(frozen=True)
class PID:
    """A persistent id (BINPERSID), as torch writes storages."""

    value: Any


@dataclasses.dataclass(frozen=True)
class Memo:
    """Emit ``value`` and remember it under ``slot`` (LONG_BINPUT)."""

    slot: int
    value: Any


@dataclasses.dataclass(frozen=True)
class Get:
    """The value remembered under ``slot`` (LONG_BINGET): a reference, not a copy."""

    slot: int


@dataclasses.dataclass(frozen=True)
class Raw:
    """Opcodes emitted as they are."""

    data: bytes


def _emit(out: bytearray, obj: Any) -> None:
    if isinstance(obj, Raw):
        out += obj.data
    elif isinstance(obj, G):
        out += b"c" + obj.module.encode() + b"\n" + obj.name.encode() + b"\n"
    elif isinstance(obj, Call):
        _emit(out, obj.func)
        _emit(out, tuple(obj.args))
        out += b"R"
    elif isinstance(obj, PID):
        _emit(out, obj.value)
        out += b"Q"
    elif isinstance(obj, Memo):
        _emit(out, obj.value)
        out += b"r" + struct.pack("<I", obj.slot)
    elif isinstance(obj, Get):
        out += b"j" + struct.pack("<I", obj.slot)
    elif obj is None:
        out += b"N"
    elif obj is True or obj is False:
        out += b"\x88" if obj else b"\x89"
    elif isinstance(obj, int):
        if -(2**31) <= obj < 2**31:
            out += b"J" + struct.pack("<i", obj)
        else:
            raw = obj.to_bytes((obj.bit_length() + 8) // 8, "little", signed=True)
            out += b"\x8a" + bytes([len(raw)]) + raw
    elif isinstance(obj, str):
        raw = obj.encode("utf-8")
        out += b"X" + struct.pack("<I", len(raw)) + raw
    elif isinstance(obj, bytes | bytearray):
        out += b"B" + struct.pack("<I", len(obj)) + bytes(obj)
    elif isinstance(obj, tuple):
        out += b"("
        for item in obj:
            _emit(out, item)
        out += b"t"
    elif isinstance(obj, list):
        out += b"]"
        for item in obj:
            _emit(out, item)
            out += b"a"
    elif isinstance(obj, dict):
        out += b"}"
        for key, value in obj.items():
            _emit(out, key)
            _emit(out, value)
            out += b"s"
    else:
        raise TypeError(f"cannot emit {type(obj).__name__}")


def pickle_bytes(obj: Any, proto: int = 2) -> bytes:
    out = bytearray(b"\x80" + bytes([proto]))
    _emit(out, obj)
    return bytes(out + b".")


STORAGE_TYPES = {"float32": "FloatStorage", "float16": "HalfStorage", "int64": "LongStorage"}


def storage_pid(key: str, numel: int, dtype: str = "float32", legacy: bool = False) -> PID:
    base = ("storage", G("torch", STORAGE_TYPES[dtype]), key, "cpu", numel)
    return PID(base + (None,) if legacy else base)


def tensor(pid: Any, size, stride=None, offset: int = 0) -> Call:
    size = tuple(size)
    if stride is None:
        stride, acc = [], 1
        for n in reversed(size):
            stride.insert(0, acc)
            acc *= n
    ordered = Call(G("collections", "OrderedDict"), ())
    return Call(G("torch._utils", "_rebuild_tensor_v2"), (pid, offset, size, tuple(stride), False, ordered))


def write_zip_pth(
    path: Path,
    root: Any,
    storages: dict[str, bytes],
    deflate: dict[str, int] | None = None,
    proto: int = 2,
) -> None:
    """A torch >= 1.6 zip checkpoint; ``deflate`` maps storage keys to a count of zero bytes written deflated."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("archive/data.pkl", pickle_bytes(root, proto))
        zf.writestr("archive/byteorder", "little")
        for key, data in storages.items():
            zf.writestr(f"archive/data/{key}", data)
        for key, nbytes in (deflate or {}).items():
            info = zipfile.ZipInfo(f"archive/data/{key}")
            info.compress_type = zipfile.ZIP_DEFLATED
            chunk = bytes(MB)
            with zf.open(info, "w", force_zip64=True) as fh:
                for _ in range(nbytes // MB):
                    fh.write(chunk)
        zf.writestr("archive/version", "3\n")


def patch_zip_sizes(path: Path, entry: str, size: int) -> None:
    """Make the central directory claim ``size`` bytes (stored and uncompressed) for ``entry``."""
    data = bytearray(path.read_bytes())
    pos = data.find(b"PK\x01\x02")
    while pos >= 0:
        name_len = struct.unpack_from("<H", data, pos + 28)[0]
        if bytes(data[pos + 46 : pos + 46 + name_len]) == entry.encode():
            struct.pack_into("<II", data, pos + 20, size, size)
            path.write_bytes(bytes(data))
            return
        pos = data.find(b"PK\x01\x02", pos + 4)
    raise KeyError(entry)


def write_legacy_pth(path: Path, root: Any, storages: list[tuple[str, int, bytes]]) -> None:
    """A ``_use_new_zipfile_serialization=False`` checkpoint: (key, declared numel, bytes) per storage."""
    sys_info = {
        "protocol_version": 1001,
        "little_endian": True,
        "type_sizes": {"short": 2, "int": 4, "long": 4},
    }
    with open(path, "wb") as fh:
        fh.write(pickle_bytes(0x1950A86A20F9469CFC6C))
        fh.write(pickle_bytes(1001))
        fh.write(pickle_bytes(sys_info))
        fh.write(pickle_bytes(root))
        fh.write(pickle_bytes([key for key, _, _ in storages]))
        for _, numel, data in storages:
            fh.write(struct.pack("<q", numel))
            fh.write(data)


def write_safetensors(path: Path, header: Any, data: bytes = b"", raw_header: bytes | None = None) -> None:
    blob = raw_header if raw_header is not None else json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(blob)))
        fh.write(blob)
        fh.write(data)


def deep_list_pickle(depth: int, wrap: Callable[[bytes], bytes] | None = None) -> bytes:
    """``[[[...]]]`` ``depth`` levels deep: the unpickler builds it without recursion; repr/json/copy recurse."""
    body = b"]" * depth + b"a" * (depth - 1)
    return b"\x80\x02" + (wrap(body) if wrap else body) + b"."


def deep_dict_pickle(depth: int) -> bytes:
    """``{'model': {'a': {'a': ...}}}``."""
    body = b"}" + (b"X\x01\x00\x00\x00a}" * depth) + b"s" * depth
    return b"\x80\x02}X\x05\x00\x00\x00model" + body + b"s."


# ---------------------------------------------------------------------------------------------------------------
# Shared inputs


class Context:
    """What every case can use: the prepared weights, image folders, the alternative Pillow, the shared data."""

    def __init__(self, root: Path, shared: Path | None, alt_pillow: Path | None, python: str):
        self.root = root
        self.prep = root / "prep"
        self.prep.mkdir(parents=True, exist_ok=True)
        self.shared = shared if shared is not None and shared.is_dir() else None
        self.alt_pillow = alt_pillow if alt_pillow is not None and (alt_pillow / "PIL").is_dir() else None
        self.alt_pillow_version = ""
        if self.alt_pillow is not None:
            found = re.search(
                r"__version__ = \"([^\"]+)\"", (self.alt_pillow / "PIL" / "_version.py").read_text()
            )
            self.alt_pillow_version = found.group(1) if found else "?"
        self.python = python
        self.demo_pth = self.prep / "demo.pth"
        self.good = self.prep / "good.pdparams"
        self.good_error = ""
        self.unshare_ok = False
        self._state: dict | None = None
        shutil.copyfile(DEMO_PTH, self.demo_pth)
        self.images = {c: sorted((CIFAR / c).glob("*.jpg")) for c in CLASSES}

    def prepare(self, need_weights: bool, need_unshare: bool) -> None:
        if need_weights:
            proc = subprocess.run(
                [self.python, "-m", "shunted", "convert", str(self.demo_pth), str(self.good)],
                cwd=self.prep,
                env=child_env(self),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=180,
            )
            if proc.returncode != 0 or not self.good.is_file():
                err = proc.stderr.decode(errors="replace").strip().splitlines()
                self.good_error = (
                    f"converting the demo checkpoint failed: {err[-1] if err else proc.returncode}"
                )
        if need_unshare and shutil.which("unshare"):
            probe = self.prep / "unshare-probe"
            probe.mkdir(exist_ok=True)
            script = f"mount --bind {probe} {probe} && mount -o remount,ro,bind {probe} && ! touch {probe}/x"
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                ok = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, timeout=20)
                self.unshare_ok = ok.returncode == 0

    @property
    def state(self) -> dict:
        """The good weights as {name: numpy array} (Paddle layout), read from the converter's own output."""
        if self._state is None:
            self._state = load_trusted_pickle(self.good)
        return self._state

    def copy_images(self, dst: Path, classes=CLASSES, per_class: int = 2, start: int = 0) -> Path:
        for c in classes:
            (dst / c).mkdir(parents=True, exist_ok=True)
            for src in self.images[c][start : start + per_class]:
                shutil.copyfile(src, dst / c / src.name)
        return dst


class _TrustedUnpickler(pickle.Unpickler):
    """For files the commands wrote in the case folder: plain containers and numpy arrays only."""

    def find_class(self, module, name):
        if module.split(".")[0] in ("numpy", "collections", "builtins") and name not in ("eval", "exec"):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name}")


def load_trusted_pickle(path: Path) -> Any:
    with open(path, "rb") as fh:
        return _TrustedUnpickler(fh).load()


def write_pdparams(path: Path, state: dict) -> None:
    with open(path, "wb") as fh:
        pickle.dump(state, fh, protocol=4)


def child_env(ctx: Context, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SHUNTED_", "PYTHON"))}
    env["PYTHONPATH"] = str(REPO)
    env["HOME"] = str(ctx.root / "home")
    env["CUDA_VISIBLE_DEVICES"] = ""
    env["COLUMNS"] = "100"
    env.update(extra or {})
    return env


# ---------------------------------------------------------------------------------------------------------------
# Cases


@dataclasses.dataclass
class Case:
    name: str
    item: int
    argv: list[str] | Callable[[Path, Context], list[str]]  # after ``shunted`` (or ``-c CODE`` for python -c)
    setup: Callable[[Path, Context], None] | None = None
    exit: tuple[int, ...] = (2,)
    mentions: tuple[str, ...] = ()  # the one-line message must contain each (the user's file / flag)
    keep: tuple[str, ...] = ()  # files/folders (relative to the case folder) that must be unchanged
    absent: tuple[str, ...] = ()  # glob patterns (relative) that must match nothing afterwards
    check: Callable[[Path, Context, Result], str | None] | None = None
    max_rss_mb: float | None = None
    timeout: float = 30.0
    mem_limit_mb: int = 4096  # RLIMIT_AS of the command
    needs: tuple[str, ...] = ()  # "weights", "shared", "unshare", "alt_pillow"
    mounts: tuple[tuple[str, str], ...] = ()  # ("ro"|"full", relative folder): private mount namespace
    stdin: bytes | None = None
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    alt_pillow: bool = False
    quick: bool = False
    error_command: str = ""  # CMD of "shunted CMD: error:" (default: the first argument)

    @property
    def command(self) -> str:
        return "python" if self.argv_is_python else "shunted"

    @property
    def argv_is_python(self) -> bool:
        return not callable(self.argv) and self.argv[:1] == ["-c"]


@dataclasses.dataclass
class Result:
    case: Case
    status: str = "FAIL"  # PASS, FAIL, SKIP
    exit: int | None = None
    message: str = ""
    stdout: str = ""
    stderr: str = ""
    rss_mb: float | None = None
    seconds: float = 0.0
    files: str = "—"
    reasons: list[str] = dataclasses.field(default_factory=list)
    shown_argv: str = ""
    argv: list[str] = dataclasses.field(default_factory=list)
    inside: list[str] = dataclasses.field(default_factory=list)


# -- small builders ----------------------------------------------------------------------------------------------


def touch(path: Path, text: str = "user data\n") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def user_project(d: Path, name: str = "myproject") -> None:
    touch(d / name / "thesis.tex", "\\documentclass{article}\n")
    touch(d / name / "src" / "main.py", "print('mine')\n")


def write_file(name: str, data: bytes | Callable[[Path, Context], bytes]):
    def setup(d: Path, ctx: Context) -> None:
        (d / name).write_bytes(data(d, ctx) if callable(data) else data)

    return setup


def seq(*steps):
    def setup(d: Path, ctx: Context) -> None:
        for step in steps:
            step(d, ctx)

    return setup


def eval_json(d: Path, name: str = "res.json") -> dict | None:
    try:
        return json.loads((d / name).read_text(), parse_constant=_no_constant)
    except (OSError, ValueError):
        return None


def _no_constant(name: str):
    raise ValueError(f"JSON holds {name}")


def check_eval(n: int | None = None, top1_min: float | None = None, top1_eq: float | None = None):
    """On exit 0: res.json exists, is valid JSON (no NaN), counts ``n`` images and reports the top-1 asked for."""

    def check(d: Path, ctx: Context, r: Result) -> str | None:
        if r.exit != 0:
            return None
        res = eval_json(d)
        if res is None:
            return "exit 0 but res.json is missing or not strict JSON"
        if n is not None and res.get("n") != n:
            return f"counted {res.get('n')} images, the folder holds {n}"
        top1 = float(res.get("top1", {}).get("percent", -1))
        if top1_min is not None and top1 < top1_min:
            return f"top-1 {top1:.1f} % < {top1_min} % (labels by position?)"
        if top1_eq is not None and abs(top1 - top1_eq) > 1e-6:
            return f"top-1 {top1:.1f} %, expected {top1_eq} % (labels by position?)"
        return None

    return check


def check_stdout_lacks(text: str, why: str):
    def check(d: Path, ctx: Context, r: Result) -> str | None:
        return f"{why} (stdout shows {text!r})" if text in r.stdout else None

    return check


def check_stderr_has(pattern: str, why: str):
    def check(d: Path, ctx: Context, r: Result) -> str | None:
        return None if re.search(pattern, r.stderr + r.stdout, re.I) else why

    return check


def check_predictions(count: int):
    def check(d: Path, ctx: Context, r: Result) -> str | None:
        if r.exit != 0:
            return None
        res = eval_json(d, "preds.json")
        if res is None:
            return "exit 0 but preds.json is missing"
        got = len(res.get("predictions", []))
        return None if got == count else f"{got} predictions for {count} images"

    return check


# -- argument lists -------------------------------------------------------------------------------------------------


def eval_args(*extra: str, weights: str | None = None, data: str = "data") -> Callable:
    def argv(d: Path, ctx: Context) -> list[str]:
        w = weights if weights is not None else str(ctx.good)
        return ["eval", *EVAL_64, "--weights", w, "--data", data, *extra]

    return argv


def train_args(
    *extra: str, data: str = "data", output: str = "run", steps: int = 1, drop: str = ""
) -> list[str]:
    """A one-epoch, ``steps``-step run at 32 px; ``drop`` removes that flag (a case gives its own)."""
    flags = {
        "--epochs": "1",
        "--max-steps": str(steps),
        "--batch-size": "4",
        "--img-size": "32",
        "--workers": "0",
    }
    flags.pop(drop, None)
    base = ["train", "--model", "shunted_t", "--data", data, "--output", output]
    return base + [x for kv in flags.items() for x in kv] + list(extra)


def export_args(output: str, *extra: str, weights: bool = True) -> Callable:
    def argv(d: Path, ctx: Context) -> list[str]:
        w = ["--weights", str(ctx.good)] if weights else []
        return ["export", "--model", "shunted_t", *w, "--format", "paddle", "--img-size", "32"] + [
            "--output",
            output,
            *extra,
        ]

    return argv


def predict_args(*inputs: str, extra: tuple[str, ...] = ()) -> Callable:
    def argv(d: Path, ctx: Context) -> list[str]:
        return ["predict", "--backend=dygraph", "--model", "shunted_t", "--weights", str(ctx.good)] + [
            "--img-size",
            "64",
            "--resize-short",
            "73",
            *extra,
            *inputs,
        ]

    return argv


def data_setup(per_class: int = 2, classes=CLASSES, name: str = "data"):
    def setup(d: Path, ctx: Context) -> None:
        ctx.copy_images(d / name, classes, per_class)

    return setup


# -- item 2: crafted checkpoints ---------------------------------------------------------------------------------

BYTEARRAY_39 = b"\x80\x02}X\x01\x00\x00\x00acbuiltins\nbytearray\n\x8a\x04\x00\x94\x35\x77\x85Rs."


def pd_bytearray_huge(d, ctx) -> bytes:
    return pickle_bytes({"a": Call(G("builtins", "bytearray"), (2**62,))})


def pd_binbytes8(d, ctx) -> bytes:  # BINBYTES8 declaring 1 TiB, 20 bytes of file
    return b"\x80\x04}X\x01\x00\x00\x00a\x8e" + struct.pack("<Q", 1 << 40) + b"xs."


def pd_unicode8(d, ctx) -> bytes:
    return b"\x80\x04}X\x01\x00\x00\x00a\x8d" + struct.pack("<Q", 1 << 40) + b"xs."


def pd_huge_shape(d, ctx) -> bytes:
    shape = tuple([1] * 300_000) + ("x",)
    dtype = Call(G("numpy", "dtype"), ("f4",))
    arr = Call(G("numpy.core.numeric", "_frombuffer"), (b"\0" * 4, dtype, shape, "C"))
    return pickle_bytes({"head.weight": arr})


def pd_aliased(d, ctx) -> bytes:
    """3,000 entries referencing one float16 array of 8 MB: the file is 8 MB, copies would be 48 GB."""
    dtype = Call(G("numpy", "dtype"), ("f2",))
    arr = Call(G("numpy.core.numeric", "_frombuffer"), (bytes(8 * MB), dtype, (2048, 2048), "C"))
    state: dict = {"junk.0": Memo(1, arr)}
    state.update({f"junk.{i}": Get(1) for i in range(1, 3000)})
    return pickle_bytes(state)


def pth_zip_oversized_central(d: Path, ctx) -> None:
    """Zip stored entry whose central directory claims 2 GiB (the file is a few hundred bytes)."""
    numel = (2**31) // 4
    root = {"model": {"head.weight": tensor(storage_pid("0", numel), (10, 512))}}
    write_zip_pth(d / "lie.pth", root, {"0": bytes(64)})
    patch_zip_sizes(d / "lie.pth", "archive/data/0", 2**31)


def pth_zip_bomb(d: Path, ctx) -> None:
    """512 MiB of zeros deflated to ~0.5 MB; the tensor in it needs 20 kB and the other keys are missing."""
    nbytes = 512 * MB
    root = {"model": {"head.weight": tensor(storage_pid("0", nbytes // 4), (10, 512))}}
    write_zip_pth(d / "bomb.pth", root, {}, deflate={"0": nbytes})


def pth_zip_aliased(d: Path, ctx) -> None:
    """2,000 tensors that each view the whole of one 4 MB float16 storage."""
    numel = 2 * MB
    pid = storage_pid("0", numel, "float16")
    root = {"model": {f"junk.{i}": tensor(pid, (numel,)) for i in range(2000)}}
    write_zip_pth(d / "alias.pth", root, {"0": bytes(numel * 2)})


def pth_legacy_aliased(d: Path, ctx) -> None:
    numel = 2 * MB
    pid = storage_pid("0", numel, "float16", legacy=True)
    root = {"model": {f"junk.{i}": tensor(pid, (numel,)) for i in range(2000)}}
    write_legacy_pth(d / "alias.pth", root, [("0", numel, bytes(numel * 2))])


def pth_legacy_oversized(d: Path, ctx) -> None:
    """A legacy storage declaring 2^31 floats (8 GiB) — in the pickle and in its header — with 64 bytes of data."""
    numel = 2**31
    root = {"model": {"head.weight": tensor(storage_pid("0", numel, legacy=True), (10, 512))}}
    write_legacy_pth(d / "big.pth", root, [("0", numel, bytes(64))])


def pth_zip_stride0(d: Path, ctx) -> None:
    """One float, viewed as a 100,000 × 100,000 tensor with strides (0, 0): 40 GB if materialised."""
    root = {"model": {"head.weight": tensor(storage_pid("0", 1), (100_000, 100_000), (0, 0))}}
    write_zip_pth(d / "stride0.pth", root, {"0": bytes(4)})


def pth_zip_huge_size_list(d: Path, ctx) -> None:
    size = tuple([1] * 300_000) + ("x",)
    root = {"model": {"head.weight": tensor(storage_pid("0", 1), size, tuple([1] * 300_001))}}
    write_zip_pth(d / "sizes.pth", root, {"0": bytes(4)})


def pth_zip_deep_pid(d: Path, ctx) -> None:
    """A persistent id that is a list nested 200,000 deep (repr of it recurses)."""
    body = b"}X\x01\x00\x00\x00a" + b"]" * 200_000 + b"a" * 199_999 + b"Qs"
    with zipfile.ZipFile(d / "deep.pth", "w") as zf:
        zf.writestr("archive/data.pkl", b"\x80\x02" + body + b".")
        zf.writestr("archive/byteorder", "little")


def st_header_too_big(d, ctx) -> bytes:
    return struct.pack("<Q", 10**9) + b'{"a":1}'


def st_offsets_past_end(d: Path, ctx) -> None:
    header = {"head.weight": {"dtype": "F32", "shape": [512, 10], "data_offsets": [0, 20480]}}
    write_safetensors(d / "short.safetensors", header, bytes(64))


def st_aliased(d: Path, ctx) -> None:
    """600 tensors over the same 8 MB region."""
    n = 8 * MB
    header = {f"junk.{i}": {"dtype": "F16", "shape": [n // 2], "data_offsets": [0, n]} for i in range(600)}
    write_safetensors(d / "alias.safetensors", header, bytes(n))


def st_deep_json(d: Path, ctx) -> None:
    write_safetensors(d / "deep.safetensors", None, b"", raw_header=b"[" * 200_000 + b"]" * 200_000)


def st_bad_shape(d: Path, ctx) -> None:
    header = {"head.bias": {"dtype": "F32", "shape": ["a"], "data_offsets": [0, 40]}}
    write_safetensors(d / "shape.safetensors", header, bytes(40))


def st_negative_shape(d: Path, ctx) -> None:
    header = {"head.bias": {"dtype": "F32", "shape": [-10, -1], "data_offsets": [0, 40]}}
    write_safetensors(d / "neg.safetensors", header, bytes(40))


def st_huge_shape_list(d: Path, ctx) -> None:
    header = {"head.bias": {"dtype": "F32", "shape": [1] * 500_000 + [10], "data_offsets": [0, 40]}}
    write_safetensors(d / "shapes.safetensors", header, bytes(40))


# -- item 3 / 4 / 5 builders ---------------------------------------------------------------------------------------


def nan_weights(d: Path, ctx: Context) -> None:
    import numpy as np

    state = {k: np.array(v, copy=True) for k, v in ctx.state.items()}
    state["head.weight"][0, 0] = np.nan
    write_pdparams(d / "nan.pdparams", state)


def synset_weights(d: Path, ctx: Context) -> None:
    """1000-class weights that predict class 999 (n15075141) for every image; data: folders of two synsets."""
    import numpy as np

    state = dict(ctx.state)
    synsets = (ASSETS / "imagenet_synsets.txt").read_text().split()
    state["head.weight"] = np.zeros((state["head.weight"].shape[0], 1000), np.float32)
    bias = np.zeros(1000, np.float32)
    bias[999] = 10.0
    state["head.bias"] = bias
    write_pdparams(d / "in1k.pdparams", state)
    for synset, cls in ((synsets[999], "cat"), (synsets[3], "dog")):
        (d / "data" / synset).mkdir(parents=True)
        shutil.copyfile(ctx.images[cls][0], d / "data" / synset / "0000.jpg")


def names_file(d: Path, ctx: Context, names=CLASSES, name: str = "names.txt") -> None:
    (d / name).write_text("\n".join(names) + "\n")


def finite_check(*dirs: str):
    """No ``*.pdparams`` / ``*.pdckpt`` in ``dirs`` holds a NaN or inf (and each one is readable)."""

    def check(d: Path, ctx: Context, r: Result) -> str | None:
        import numpy as np

        for folder in dirs:
            for path in sorted((d / folder).glob("*.pd*")) if (d / folder).is_dir() else []:
                if path.suffix not in (".pdparams", ".pdckpt"):
                    continue
                try:
                    obj = load_trusted_pickle(path)
                except Exception as exc:  # noqa: BLE001 - reported in the table
                    return f"{path.name} unreadable ({type(exc).__name__})"
                stack = [obj]
                while stack:
                    item = stack.pop()
                    if isinstance(item, dict):
                        stack.extend(item.values())
                    elif isinstance(item, list | tuple):
                        stack.extend(item)
                    elif (
                        isinstance(item, np.ndarray)
                        and item.dtype.kind == "f"
                        and not np.isfinite(item).all()
                    ):
                        return f"{path.name} holds non-finite values"
        return None

    return check


def checks(*fns):
    def check(d: Path, ctx: Context, r: Result) -> str | None:
        for fn in fns:
            why = fn(d, ctx, r)
            if why:
                return why
        return None

    return check


def orphan_run(d: Path, ctx: Context) -> None:
    ctx.copy_images(d / "data", ("cat", "dog"), 4)
    touch(d / "run" / "thesis.tex")
    touch(d / "run" / ".my-notes.tmp", "user's own .tmp file\n")
    (d / "run" / ".last.pdckpt.k2j4h5g6.tmp").write_bytes(b"half-written checkpoint of a killed run")


POSTERIZE = (
    "from PIL import Image, __version__ as v\n"
    "from shunted.data.randaugment import RandAugment\n"
    "img = Image.new('RGB', (32, 32), (200, 120, 40))\n"
    "out = RandAugment().apply_op(img, 'PosterizeIncreasing', 10.0)\n"
    "assert out.getextrema() == ((0, 0), (0, 0), (0, 0)), out.getextrema()\n"
    "print('Pillow', v, 'posterize 0 bits: black image')\n"
)
PILLOW_CAP = (
    "import re, tomllib\n"
    f"deps = tomllib.load(open({str(REPO / 'pyproject.toml')!r}, 'rb'))['project']['dependencies']\n"
    "spec = [d for d in deps if re.match(r'(?i)pillow\\b', d)][0]\n"
    "from packaging.specifiers import SpecifierSet\n"
    "s = SpecifierSet(spec[len('pillow'):].strip())\n"
    "assert '13.0.0' in s and '12.3.0' in s, spec\n"
    "print('pyproject allows', spec)\n"
)


def ro(rel: str) -> tuple[tuple[str, str], ...]:
    return (("ro", rel),)


def full(rel: str) -> tuple[tuple[str, str], ...]:
    return (("full", rel),)


def flag_cases() -> list[Case]:
    """Item 3/6: out-of-range flag values are refused by argparse before any work (no output folder made)."""
    out: list[Case] = []
    train = [
        ("--lr", ["nan", "inf", "-1", "0"]),
        ("--epochs", ["0", "-1"]),
        ("--batch-size", ["0", "-4"]),
        ("--workers", ["-1"]),
        ("--img-size", ["0", "48"]),
        ("--max-steps", ["0", "-1"]),
    ]
    for flag, values in train:
        for v in values:
            out.append(
                Case(
                    f"train {flag} {v}",
                    3,
                    ["train", f"{flag}={v}", *train_args(drop=flag)[1:]],
                    data_setup(1, ("cat", "dog")),
                    mentions=(flag,),
                    absent=("run",),
                    quick=(flag, v) in (("--lr", "nan"), ("--epochs", "0")),
                )
            )
    evals = [
        ("--crop-pct", ["0", "nan", "-0.5"]),
        ("--limit", ["0", "-1"]),
        ("--batch-size", ["0"]),
        ("--workers", ["-1"]),
        ("--img-size", ["0", "-64"]),
        ("--threads", ["0", "-2"]),
    ]
    for flag, values in evals:
        for v in values:
            base = [a for a in EVAL_64]
            if flag in base:
                i = base.index(flag)
                base = base[:i] + base[i + 2 :]
            if flag == "--crop-pct":
                i = base.index("--resize-short")
                base = base[:i] + base[i + 2 :]

            def argv(d, ctx, base=base, flag=flag, v=v):
                return ["eval", f"{flag}={v}", *base, "--weights", str(ctx.good), "--data", "data"] + [
                    "--output",
                    "res.json",
                ]

            out.append(
                Case(
                    f"eval {flag} {v}",
                    3 if flag not in ("--limit", "--crop-pct") else 6,
                    argv,
                    data_setup(1),
                    mentions=(flag,),
                    absent=("res.json",),
                    needs=("weights",),
                    quick=(flag, v) in (("--limit", "0"), ("--crop-pct", "nan")),
                    timeout=45,
                )
            )
    for flag, v in (("--topk", "0"), ("--topk", "-1"), ("--threads", "0"), ("--img-size", "-64")):
        out.append(
            Case(
                f"predict {flag} {v}",
                3,
                predict_args("data", extra=(f"{flag}={v}",)),
                data_setup(1, ("cat",)),
                mentions=(flag,),
                needs=("weights",),
                timeout=45,
            )
        )
    for flag, v in (("--img-size", "0"), ("--img-size", "100"), ("--threads", "0")):
        out.append(
            Case(
                f"export {flag} {v}",
                3,
                export_args("exp", f"{flag}={v}"),
                mentions=(flag,),
                absent=("exp",),
                needs=("weights",),
                timeout=45,
            )
        )
    for args, flag in (
        (["--batch-sizes", "0"], "--batch-sizes"),
        (["--threads", "0"], "--threads"),
        (["--img-size", "0"], "--img-size"),
        (["--repeats", "0"], "--repeats"),
    ):
        out.append(
            Case(
                f"bench {' '.join(args)}",
                6,
                ["bench", "--quick", "--backends", "dygraph", "--img-size", "32", *args],
                mentions=(flag,),
                timeout=45,
                quick=flag == "--batch-sizes",
            )
        )
    for args, flag in (
        (["eval", "--img-size", "32000"], "--img-size"),
        (["eval", "--crop-pct", "1e-6"], "--crop-pct"),
        (["eval", "--resize-short", "1000000000"], "--resize-short"),
    ):
        base = [a for a in EVAL_64 if a not in ("--img-size", "64", "--resize-short", "73")]

        def argv(d, ctx, base=base, args=args):
            return ["eval", *base, "--weights", str(ctx.good), "--data", "data", *args[1:]]

        out.append(
            Case(
                f"eval {' '.join(args[1:])} (absurdly large)",
                3,
                argv,
                data_setup(1),
                mentions=(flag,),
                needs=("weights",),
                timeout=25,
            )
        )
    for command in ("export", "bench"):
        argv = export_args("exp", "--img-size", "32000") if command == "export" else None
        out.append(
            Case(
                f"{command} --img-size 32000 (absurdly large)",
                3,
                argv
                or ["bench", "--quick", "--backends", "dygraph", "--batch-sizes", "1", "--img-size", "32000"],
                mentions=("--img-size",),
                needs=("weights",) if command == "export" else (),
                timeout=25,
            )
        )
    out.append(
        Case("info --img-size 0", 6, ["info", "--img-size", "0"], mentions=("--img-size",), quick=True)
    )
    out.append(Case("info --img-size -32", 6, ["info", "--img-size=-32"], mentions=("--img-size",)))
    out.append(
        Case(
            "demo --batch-size 0",
            6,
            ["demo", "--batch-size", "0", "--output-dir", "out"],
            mentions=("--batch-size",),
            absent=("out",),
            quick=True,
        )
    )
    out.append(
        Case(
            "demo --workers -1",
            6,
            ["demo", "--workers=-1", "--output-dir", "out"],
            mentions=("--workers",),
            absent=("out",),
        )
    )
    return out


def all_cases() -> list[Case]:
    cases: list[Case] = []
    add = cases.append

    # ---- 1. no command deletes files it did not write ----
    add(
        Case(
            "export --output into a folder of user files",
            1,
            export_args("myproject"),
            lambda d, ctx: user_project(d),
            exit=(0, 2),
            mentions=("myproject",),
            keep=("myproject/thesis.tex", "myproject/src/main.py"),
            needs=("weights",),
            timeout=60,
            mem_limit_mb=6144,
        )
    )
    add(
        Case(
            "export --output . (the current folder)",
            1,
            export_args("."),
            lambda d, ctx: touch(d / "notes.txt"),
            exit=(0, 2),
            keep=("notes.txt",),
            needs=("weights",),
            timeout=60,
            mem_limit_mb=6144,
        )
    )
    add(
        Case(
            "export --output is a user's symlink to a folder",
            1,
            export_args("link"),
            seq(lambda d, ctx: user_project(d, "real"), lambda d, ctx: (d / "link").symlink_to("real")),
            exit=(0, 2),
            keep=("real/thesis.tex", "real/src/main.py"),
            needs=("weights",),
            timeout=60,
            mem_limit_mb=6144,
        )
    )
    add(
        Case(
            "export --output is an existing file",
            1,
            export_args("out.txt"),
            lambda d, ctx: touch(d / "out.txt"),
            mentions=("out.txt",),
            keep=("out.txt",),
            needs=("weights",),
            timeout=60,
            mem_limit_mb=6144,
        )
    )
    add(
        Case(
            "convert: sidecar DST.json is the source file",
            1,
            ["convert", "w.safetensors.json", "w.safetensors"],
            lambda d, ctx: shutil.copyfile(ctx.demo_pth, d / "w.safetensors.json"),
            exit=(0, 2),
            keep=("w.safetensors.json",),
            timeout=45,
        )
    )
    add(
        Case(
            "convert: DST is a folder of user files",
            1,
            lambda d, ctx: ["convert", str(ctx.demo_pth), "mine.pdparams"],
            lambda d, ctx: touch(d / "mine.pdparams" / "thesis.tex"),
            mentions=("mine.pdparams",),
            keep=("mine.pdparams",),
            timeout=45,
        )
    )
    add(
        Case(
            "convert: DST is a symlink to SRC",
            1,
            ["convert", "a.pdparams", "b.pdparams"],
            lambda d, ctx: (
                shutil.copyfile(ctx.good, d / "a.pdparams"),
                (d / "b.pdparams").symlink_to("a.pdparams"),
            ),
            mentions=("b.pdparams",),
            keep=("a.pdparams",),
            needs=("weights",),
            quick=True,
        )
    )
    add(
        Case(
            "convert: DST is a hard link of SRC",
            1,
            ["convert", "a.pdparams", "b.pdparams"],
            lambda d, ctx: (
                shutil.copyfile(ctx.good, d / "a.pdparams"),
                os.link(d / "a.pdparams", d / "b.pdparams"),
            ),
            exit=(0, 2),
            keep=("a.pdparams",),
            needs=("weights",),
            timeout=45,
        )
    )
    add(
        Case(
            "train --output: user files kept, orphan .tmp of a killed run removed",
            1,
            train_args(),
            orphan_run,
            exit=(0,),
            keep=("run/thesis.tex", "run/.my-notes.tmp"),
            absent=("run/.last.pdckpt.*.tmp", "run/.*.tmp.*"),
            check=finite_check("run"),
            timeout=60,
            mem_limit_mb=6144,
        )
    )
    add(
        Case(
            "eval --output is a folder of user files",
            1,
            eval_args("--output", "results"),
            seq(data_setup(1), lambda d, ctx: touch(d / "results" / "keep.txt")),
            mentions=("results",),
            keep=("results",),
            check=check_stdout_lacks("top-1", "refused only after the evaluation"),
            needs=("weights",),
            timeout=45,
        )
    )
    add(
        Case(
            "eval --output is the --weights file",
            1,
            lambda d, ctx: [
                "eval",
                *EVAL_64,
                "--weights",
                "w.pdparams",
                "--data",
                "data",
                "--output",
                "w.pdparams",
            ],
            seq(data_setup(1), lambda d, ctx: shutil.copyfile(ctx.good, d / "w.pdparams")),
            mentions=("w.pdparams",),
            keep=("w.pdparams",),
            needs=("weights",),
            timeout=45,
        )
    )
    add(
        Case(
            "eval --output is one of the evaluated images",
            1,
            eval_args("--output", "data/cat/0000.jpg"),
            data_setup(1),
            mentions=("0000.jpg",),
            keep=("data",),
            needs=("weights",),
            timeout=45,
        )
    )
    add(
        Case(
            "eval --output and --save-logits are the same file",
            1,
            eval_args("--output", "r.json", "--save-logits", "r.json"),
            data_setup(1),
            mentions=("r.json",),
            check=check_stdout_lacks("top-1", "refused only after the evaluation"),
            needs=("weights",),
            timeout=45,
        )
    )
    add(
        Case(
            "predict --output is the input image",
            1,
            predict_args("img.jpg", extra=("--output", "img.jpg")),
            lambda d, ctx: shutil.copyfile(ctx.images["cat"][0], d / "img.jpg"),
            mentions=("img.jpg",),
            keep=("img.jpg",),
            needs=("weights",),
            timeout=45,
        )
    )
    add(
        Case(
            "bench --json is a folder of user files",
            1,
            [
                "bench",
                "--quick",
                "--backends",
                "dygraph",
                "--img-size",
                "32",
                "--batch-sizes",
                "1",
                "--json",
                "results",
            ],
            lambda d, ctx: touch(d / "results" / "keep.txt"),
            mentions=("results",),
            keep=("results",),
            check=check_stdout_lacks("img/s", "refused only after the benchmark"),
            timeout=60,
        )
    )

    # ---- 2. safe loaders ----
    conv = dict(max_rss_mb=CONVERT_RSS_MB, timeout=45)
    add(
        Case(
            "convert control: demo .pth → .safetensors",
            2,
            lambda d, ctx: ["convert", str(ctx.demo_pth), "w.safetensors"],
            exit=(0,),
            **conv,
        )
    )
    add(
        Case(
            "convert control: .pdparams → .pth",
            2,
            lambda d, ctx: ["convert", str(ctx.good), "w.pth"],
            exit=(0,),
            needs=("weights",),
            **conv,
        )
    )
    for name, maker, fname, quick in (
        ("pdparams: 39-byte bytearray(2.3 GB) (issue)", lambda d, c: BYTEARRAY_39, "b.pdparams", True),
        ("pdparams: bytearray(2**62)", pd_bytearray_huge, "b.pdparams", False),
        ("pdparams: BINBYTES8 declaring 1 TiB", pd_binbytes8, "b.pdparams", True),
        ("pdparams: BINUNICODE8 declaring 1 TiB", pd_unicode8, "b.pdparams", False),
        ("pdparams: list nested 200,000 deep", lambda d, c: deep_list_pickle(200_000), "b.pdparams", True),
        ("pdparams: dict nested 100,000 deep", lambda d, c: deep_dict_pickle(100_000), "b.pdparams", False),
        ("pdparams: numpy shape list of 300,000 entries", pd_huge_shape, "b.pdparams", False),
        ("pdparams: 3,000 keys alias one 8 MB fp16 array", pd_aliased, "b.pdparams", False),
        ("safetensors: header length 10^9 > file", st_header_too_big, "b.safetensors", True),
    ):
        add(
            Case(
                f"convert {name}",
                2,
                ["convert", fname, "out.safetensors"],
                write_file(fname, maker),
                mentions=(fname,),
                absent=("out.safetensors*", ".out.*"),
                quick=quick,
                **conv,
            )
        )
    for name, maker, fname in (
        ("pth legacy: storage declares 8 GiB, holds 64 B", pth_legacy_oversized, "big.pth"),
        ("pth zip: central directory claims 2 GiB", pth_zip_oversized_central, "lie.pth"),
        ("pth zip: 512 MiB deflate bomb, keys missing", pth_zip_bomb, "bomb.pth"),
        ("pth zip: 2,000 tensors alias one 4 MB storage", pth_zip_aliased, "alias.pth"),
        ("pth legacy: 2,000 tensors alias one 4 MB storage", pth_legacy_aliased, "alias.pth"),
        ("pth zip: stride-0 100k×100k view of 1 float", pth_zip_stride0, "stride0.pth"),
        ("pth zip: size list of 300,000 entries", pth_zip_huge_size_list, "sizes.pth"),
        ("pth zip: persistent id nested 200,000 deep", pth_zip_deep_pid, "deep.pth"),
        ("safetensors: offsets past the end", st_offsets_past_end, "short.safetensors"),
        ("safetensors: 600 tensors over one 8 MB region", st_aliased, "alias.safetensors"),
        ("safetensors: JSON header nested 200,000 deep", st_deep_json, "deep.safetensors"),
        ("safetensors: shape ['a']", st_bad_shape, "shape.safetensors"),
        ("safetensors: negative shape", st_negative_shape, "neg.safetensors"),
        ("safetensors: shape list of 500,001 entries", st_huge_shape_list, "shapes.safetensors"),
    ):
        out_name = "out.pdparams"
        add(
            Case(
                f"convert {name}",
                2,
                ["convert", fname, out_name],
                maker,
                mentions=(fname,),
                absent=("out.pdparams*", ".out.*"),
                **conv,
            )
        )
    add(
        Case(
            "eval --weights: 39-byte bytearray pdparams",
            2,
            eval_args(weights="b.pdparams"),
            seq(write_file("b.pdparams", BYTEARRAY_39), data_setup(1)),
            mentions=("b.pdparams",),
            max_rss_mb=CONVERT_RSS_MB,
            timeout=45,
        )
    )
    add(
        Case(
            "train --pretrained: 2,000-alias zip .pth",
            2,
            train_args("--pretrained", "alias.pth"),
            seq(pth_zip_aliased, data_setup(1, ("cat", "dog"))),
            mentions=("alias.pth",),
            max_rss_mb=1200,
            absent=("run/*.pd*",),
            timeout=45,
        )
    )

    # ---- 3. non-finite checkpoints ----
    cases.extend(flag_cases())
    add(
        Case(
            "train -o learning_rate=nan (config route)",
            3,
            train_args("-o", "Optimizer.lr.learning_rate=nan"),
            data_setup(2, ("cat", "dog")),
            exit=(2,),
            absent=("run/*.pdparams", "run/*.pdckpt"),
            timeout=60,
            mem_limit_mb=6144,
        )
    )
    add(
        Case(
            "train --lr 1e39 (finite, inf in float32), no warm-up: no non-finite checkpoint",
            3,
            train_args("--lr", "1e39", "-o", "Optimizer.lr.warmup_epoch=0"),
            data_setup(4, ("cat", "dog")),
            exit=(0, 2),
            check=finite_check("run"),
            timeout=60,
            mem_limit_mb=6144,
        )
    )
    for key in ("DataLoader.Train.transform.img_size=48", "Optimizer.lr.learning_rate=-1"):
        add(
            Case(
                f"train -o {key} (config route)",
                3,
                train_args("-o", key, drop="--img-size" if "img_size" in key else ""),
                data_setup(2, ("cat", "dog")),
                mentions=(key.split("=")[0].rsplit(".", 1)[-1],),
                absent=("run/*.pd*",),
                timeout=60,
                mem_limit_mb=6144,
            )
        )
    add(
        Case(
            "train --pretrained holding NaN",
            3,
            train_args("--pretrained", "nan.pdparams"),
            seq(nan_weights, data_setup(1, ("cat", "dog"))),
            mentions=("nan.pdparams",),
            absent=("run/*.pdparams", "run/*.pdckpt"),
            needs=("weights",),
            timeout=60,
            mem_limit_mb=6144,
        )
    )
    add(
        Case(
            "eval --weights holding NaN",
            3,
            eval_args("--output", "res.json", weights="nan.pdparams"),
            seq(nan_weights, data_setup(1)),
            mentions=("nan.pdparams",),
            absent=("res.json",),
            needs=("weights",),
            timeout=45,
        )
    )

    # ---- 4. class folders map by name ----
    add(
        Case(
            "eval cat/ + dog/ only, weights without class names",
            4,
            lambda d, ctx: eval_args("--output", "res.json", weights=str(ctx.demo_pth))(d, ctx),
            data_setup(10, ("cat", "dog")),
            exit=(0, 2),
            mentions=("--class-names",),
            check=check_eval(20, top1_min=70),
            timeout=60,
        )
    )
    add(
        Case(
            "eval cat/ + dog/ only, the bundled demo weights (names known)",
            4,
            eval_args("--output", "res.json", weights=str(DEMO_PTH)),
            data_setup(10, ("cat", "dog")),
            exit=(0,),
            check=check_eval(20, top1_min=70),
            timeout=60,
        )
    )
    add(
        Case(
            "eval cat/ + dog/ only, --class-names",
            4,
            eval_args("--class-names", "names.txt", "--output", "res.json"),
            seq(data_setup(10, ("cat", "dog")), names_file),
            exit=(0,),
            check=check_eval(20, top1_min=70),
            needs=("weights",),
            timeout=60,
        )
    )
    add(
        Case(
            "eval a folder that is not a class (unicorn/)",
            4,
            eval_args("--class-names", "names.txt", "--output", "res.json"),
            seq(
                data_setup(2, ("cat",)),
                data_setup(2, ("dog",)),
                lambda d, ctx: shutil.move(d / "data" / "dog", d / "data" / "unicorn"),
                names_file,
            ),
            mentions=("unicorn",),
            absent=("res.json",),
            needs=("weights",),
            timeout=45,
        )
    )
    add(
        Case(
            "eval --class-names with 3 names for 10 classes",
            4,
            eval_args("--class-names", "names.txt"),
            seq(data_setup(1, ("cat",)), lambda d, ctx: names_file(d, ctx, ("cat", "dog", "bird"))),
            mentions=("names.txt",),
            needs=("weights",),
            timeout=45,
        )
    )
    add(
        Case(
            "eval all 10 folders (control, positional = by name)",
            4,
            eval_args("--output", "res.json"),
            data_setup(5),
            exit=(0,),
            check=check_eval(50, top1_min=70),
            needs=("weights",),
            timeout=60,
        )
    )
    add(
        Case(
            "eval ImageNet synset folders map by synset",
            4,
            eval_args("--output", "res.json", weights="in1k.pdparams"),
            synset_weights,
            exit=(0, 2),
            check=check_eval(2, top1_eq=50.0),
            needs=("weights",),
            timeout=60,
        )
    )
    add(
        Case(
            "train on a single class",
            4,
            train_args(),
            data_setup(4, ("cat",)),
            mentions=("data",),
            absent=("run/*.pd*",),
            timeout=45,
        )
    )
    add(
        Case(
            "train --val-data folders differ from --data's",
            4,
            train_args("--val-data", "val"),
            seq(data_setup(2, ("cat", "dog")), data_setup(1, ("cat", "bird"), name="val")),
            mentions=("val",),
            absent=("run/*.pd*",),
            timeout=45,
        )
    )
    add(
        Case(
            "predict --labels with 3 names for 10 classes",
            4,
            predict_args("data", extra=("--labels", "names.txt")),
            seq(data_setup(1, ("cat",)), lambda d, ctx: names_file(d, ctx, ("cat", "dog", "bird"))),
            mentions=("names.txt",),
            needs=("weights",),
            timeout=45,
        )
    )
    add(
        Case(
            "eval --labels with a label out of range",
            4,
            eval_args("--labels", "list.txt", data="flat"),
            seq(
                lambda d, ctx: (d / "flat").mkdir(),
                lambda d, ctx: shutil.copyfile(ctx.images["cat"][0], d / "flat" / "a.jpg"),
                lambda d, ctx: (d / "list.txt").write_text("a.jpg 12\n"),
            ),
            mentions=("list.txt",),
            needs=("weights",),
            timeout=45,
        )
    )

    # ---- 5. symlink loops ----
    add(
        Case(
            "eval: class folder holds loop -> .",
            5,
            eval_args("--output", "res.json"),
            seq(data_setup(2), lambda d, ctx: (d / "data" / "cat" / "loop").symlink_to(".")),
            exit=(0, 2),
            mentions=("loop",),
            check=check_eval(20),
            needs=("weights",),
            timeout=60,
        )
    )
    add(
        Case(
            "eval: class folder holds up -> ..",
            5,
            eval_args("--output", "res.json"),
            seq(data_setup(2), lambda d, ctx: (d / "data" / "dog" / "up").symlink_to("..")),
            exit=(0, 2),
            mentions=("up",),
            check=check_eval(20),
            needs=("weights",),
            timeout=60,
        )
    )
    add(
        Case(
            "predict: folder holds loop -> .",
            5,
            predict_args("imgs", extra=("--output", "preds.json")),
            seq(
                lambda d, ctx: ctx.copy_images(d / "tmpdata", ("cat",), 2),
                lambda d, ctx: shutil.move(d / "tmpdata" / "cat", d / "imgs"),
                lambda d, ctx: (d / "imgs" / "loop").symlink_to("."),
            ),
            exit=(0, 2),
            mentions=("loop",),
            check=check_predictions(2),
            needs=("weights",),
            timeout=45,
        )
    )
    add(
        Case(
            "eval --data is a symlink to itself",
            5,
            eval_args(data="self"),
            lambda d, ctx: (d / "self").symlink_to("self"),
            mentions=("self",),
            needs=("weights",),
            timeout=45,
            quick=True,
        )
    )
    add(
        Case(
            "eval: dangling symlink x.jpg in a class folder",
            5,
            eval_args(),
            seq(data_setup(1), lambda d, ctx: (d / "data" / "cat" / "x.jpg").symlink_to("gone.jpg")),
            mentions=("x.jpg",),
            needs=("weights",),
            timeout=45,
        )
    )
    add(
        Case(
            "train: class folder holds loop -> .",
            5,
            train_args(),
            seq(data_setup(2, ("cat", "dog")), lambda d, ctx: (d / "data" / "cat" / "loop").symlink_to(".")),
            exit=(0, 2),
            mentions=("loop",),
            check=check_stderr_has(
                r"\b4 (training )?(images|samples)|loop", "train does not say it found 4 images"
            ),
            timeout=60,
            mem_limit_mb=6144,
        )
    )

    # ---- 6. one line, not a traceback ----
    add(
        Case(
            "convert /dev/stdin (closed)",
            6,
            ["convert", "/dev/stdin", "out.pdparams"],
            mentions=("/dev/stdin",),
            timeout=20,
            quick=True,
        )
    )
    add(
        Case(
            "convert /dev/stdin (a pipe with data)",
            6,
            ["convert", "/dev/stdin", "out.pdparams"],
            mentions=("/dev/stdin",),
            stdin=BYTEARRAY_39 * 100,
            timeout=20,
        )
    )
    add(
        Case(
            "convert /dev/zero",
            6,
            ["convert", "/dev/zero", "out.pdparams"],
            mentions=("/dev/zero",),
            timeout=20,
            max_rss_mb=CONVERT_RSS_MB,
            quick=True,
        )
    )
    add(
        Case(
            "convert a FIFO (no writer)",
            6,
            ["convert", "fifo.pth", "out.pdparams"],
            lambda d, ctx: os.mkfifo(d / "fifo.pth"),
            mentions=("fifo.pth",),
            timeout=20,
        )
    )
    add(
        Case(
            "convert an empty file",
            6,
            ["convert", "e.pth", "out.pdparams"],
            write_file("e.pth", b""),
            mentions=("e.pth",),
            quick=True,
        )
    )
    add(
        Case(
            "convert random bytes",
            6,
            ["convert", "r.pth", "out.pdparams"],
            write_file("r.pth", lambda d, c: hashlib.sha512(b"x").digest() * 64),
            mentions=("r.pth",),
        )
    )
    add(
        Case(
            "convert a truncated demo .pth",
            6,
            ["convert", "t.pth", "out.pdparams"],
            write_file("t.pth", lambda d, c: DEMO_PTH.read_bytes()[: 11 * MB]),
            mentions=("t.pth",),
            max_rss_mb=CONVERT_RSS_MB,
        )
    )
    add(
        Case(
            "convert SRC is a folder",
            6,
            ["convert", "src", "out.pdparams"],
            lambda d, c: (d / "src").mkdir(),
            mentions=("src",),
            quick=True,
        )
    )
    add(
        Case(
            "convert DST extension .txt",
            6,
            lambda d, ctx: ["convert", str(ctx.demo_pth), "out.txt"],
            mentions=("out.txt",),
            absent=("out.txt",),
        )
    )
    add(
        Case(
            "convert DST's parent is a file",
            6,
            lambda d, ctx: ["convert", str(ctx.demo_pth), "f/out.pdparams"],
            lambda d, c: touch(d / "f"),
            mentions=("f",),
            keep=("f",),
            timeout=45,
        )
    )
    add(
        Case(
            "convert DST on a read-only file system",
            6,
            lambda d, ctx: ["convert", str(ctx.demo_pth), "ro/out.pdparams"],
            lambda d, ctx: touch(d / "ro" / "keep.txt"),
            mentions=("out.pdparams",),
            keep=("ro",),
            mounts=ro("ro"),
            needs=("unshare",),
            timeout=45,
        )
    )
    add(
        Case(
            "convert DST on a full file system",
            6,
            lambda d, ctx: ["convert", str(ctx.demo_pth), "full/out.pdparams"],
            lambda d, ctx: (d / "full").mkdir(),
            mentions=("out.pdparams",),
            absent=("full/.*.tmp", "full/out.pdparams"),
            mounts=full("full"),
            needs=("unshare",),
            timeout=45,
        )
    )
    add(
        Case(
            "convert: old DST kept when its sidecar cannot be written",
            6,
            lambda d, ctx: ["convert", str(ctx.demo_pth), "w.pdparams"],
            lambda d, ctx: (touch(d / "w.pdparams", "previous weights"), (d / "w.pdparams.json").mkdir()),
            mentions=("w.pdparams",),
            keep=("w.pdparams",),
            absent=(".w.pdparams.*.tmp",),
            timeout=45,
        )
    )
    add(
        Case(
            "eval --output on a read-only file system",
            6,
            eval_args("--output", "ro/res.json"),
            seq(data_setup(1), lambda d, ctx: (d / "ro").mkdir()),
            mentions=("res.json",),
            check=check_stdout_lacks("top-1", "refused only after the evaluation"),
            mounts=ro("ro"),
            needs=("weights", "unshare"),
            timeout=45,
        )
    )
    add(
        Case(
            "eval --save-logits on a full file system",
            6,
            eval_args("--save-logits", "full/l.npy"),
            seq(data_setup(1), lambda d, ctx: (d / "full").mkdir()),
            mentions=("l.npy",),
            absent=("full/.*.tmp",),
            mounts=full("full"),
            needs=("weights", "unshare"),
            timeout=45,
        )
    )
    add(
        Case(
            "eval --output's parent is a file",
            6,
            eval_args("--output", "f/res.json"),
            seq(data_setup(1), lambda d, ctx: touch(d / "f")),
            mentions=("f",),
            keep=("f",),
            check=check_stdout_lacks("top-1", "refused only after the evaluation"),
            needs=("weights",),
            timeout=45,
        )
    )
    add(
        Case(
            "predict --output on a read-only file system",
            6,
            predict_args("data", extra=("--output", "ro/p.json")),
            seq(data_setup(1, ("cat",)), lambda d, ctx: (d / "ro").mkdir()),
            mentions=("p.json",),
            mounts=ro("ro"),
            needs=("weights", "unshare"),
            timeout=45,
        )
    )
    add(
        Case(
            "export --output on a read-only file system",
            6,
            export_args("ro/exp"),
            lambda d, ctx: (d / "ro").mkdir(),
            mentions=("exp",),
            mounts=ro("ro"),
            needs=("weights", "unshare"),
            timeout=60,
            mem_limit_mb=6144,
        )
    )
    add(
        Case(
            "train --output on a read-only file system",
            6,
            train_args(output="ro/run"),
            seq(data_setup(1, ("cat", "dog")), lambda d, ctx: (d / "ro").mkdir()),
            mentions=("run",),
            mounts=ro("ro"),
            needs=("unshare",),
            timeout=60,
            mem_limit_mb=6144,
        )
    )
    add(
        Case(
            "demo --output-dir is a file",
            6,
            ["demo", "--output-dir", "f"],
            lambda d, c: touch(d / "f"),
            mentions=("f",),
            keep=("f",),
            timeout=45,
        )
    )
    add(
        Case(
            "export without --weights warns about random weights",
            6,
            export_args("exp", weights=False),
            exit=(0,),
            check=check_stderr_has(r"random", "no warning that the weights are random"),
            timeout=60,
            mem_limit_mb=6144,
        )
    )
    add(
        Case(
            "eval -o typo key",
            6,
            eval_args("-o", "Global.pretrained_modle=x.pdparams"),
            data_setup(1),
            mentions=("pretrained_modle",),
            needs=("weights",),
            quick=True,
        )
    )
    add(
        Case(
            "train -o typo key",
            6,
            train_args("-o", "Optimizer.lrr=0.1"),
            data_setup(1, ("cat", "dog")),
            mentions=("lrr",),
            absent=("run",),
            quick=True,
        )
    )
    add(
        Case(
            "eval -o without '='",
            6,
            eval_args("-o", "Global.seed"),
            data_setup(1),
            mentions=("Global.seed",),
            needs=("weights",),
        )
    )
    add(
        Case(
            "eval -c YAML nested 100,000 deep",
            6,
            eval_args("-c", "deep.yaml"),
            write_file("deep.yaml", b"[" * 100_000 + b"]" * 100_000),
            mentions=("deep.yaml",),
            needs=("weights",),
        )
    )
    add(
        Case(
            "eval -c invalid YAML",
            6,
            eval_args("-c", "bad.yaml"),
            write_file("bad.yaml", b"Global: [\n"),
            mentions=("bad.yaml",),
            needs=("weights",),
        )
    )
    add(
        Case(
            "eval a zero-byte image",
            6,
            eval_args(),
            seq(data_setup(1), write_file("data/cat/zero.jpg", b"")),
            mentions=("zero.jpg",),
            needs=("weights",),
            timeout=45,
        )
    )
    add(
        Case(
            "eval --skip-bad lists a zero-byte image",
            6,
            eval_args("--skip-bad", "--output", "res.json"),
            seq(data_setup(1), write_file("data/cat/zero.jpg", b"")),
            exit=(0,),
            check=checks(
                check_eval(10),
                lambda d, c, r: (
                    None if "zero.jpg" in json.dumps(eval_json(d) or {}) else "zero.jpg not listed"
                ),
            ),
            needs=("weights",),
            timeout=45,
        )
    )
    add(
        Case(
            "eval --data is an empty folder",
            6,
            eval_args(data="empty"),
            lambda d, c: (d / "empty").mkdir(),
            mentions=("empty",),
            needs=("weights",),
        )
    )
    add(
        Case(
            "eval --weights missing",
            6,
            eval_args(weights="nope.pdparams"),
            data_setup(1),
            mentions=("nope.pdparams",),
            quick=True,
        )
    )
    add(
        Case(
            "eval --model shunted_s with shunted_t weights",
            6,
            lambda d, ctx: (
                eval_args(data="data")(d, ctx)[:2] + ["shunted_s"] + eval_args(data="data")(d, ctx)[3:]
            ),
            data_setup(1),
            mentions=("shunted_s",),
            needs=("weights",),
        )
    )
    add(
        Case(
            "eval --limit 1 gives strict JSON (no NaN)",
            6,
            eval_args("--limit", "1", "--output", "res.json"),
            data_setup(1),
            exit=(0,),
            check=check_eval(1),
            needs=("weights",),
            timeout=45,
        )
    )
    add(
        Case(
            "predict a text file named .jpg",
            6,
            predict_args("fake.jpg"),
            write_file("fake.jpg", b"not an image\n"),
            mentions=("fake.jpg",),
            needs=("weights",),
        )
    )
    add(
        Case(
            "predict a missing image", 6, predict_args("nope.jpg"), mentions=("nope.jpg",), needs=("weights",)
        )
    )
    add(
        Case(
            "bench --weights with two --models",
            6,
            ["bench", "--models", "shunted_t", "shunted_s", "--weights", "w.pdparams", "--quick"],
            mentions=("--weights",),
        )
    )
    add(
        Case(
            "convert to a non-ASCII path (control)",
            6,
            lambda d, ctx: ["convert", str(ctx.demo_pth), "poids ü/вес.pdparams"],
            exit=(0,),
            absent=("poids ü/.*.tmp",),
            max_rss_mb=CONVERT_RSS_MB,
            timeout=45,
        )
    )

    # ---- 7. Pillow 13 ----
    add(Case("posterize 0 bits: the venv's Pillow", 7, ["-c", POSTERIZE], exit=(0,), quick=True))
    add(
        Case(
            "posterize 0 bits: the --alt-pillow Pillow",
            7,
            ["-c", POSTERIZE],
            exit=(0,),
            needs=("alt_pillow",),
            alt_pillow=True,
        )
    )
    add(Case("pyproject allows Pillow 13", 7, ["-c", PILLOW_CAP], exit=(0,), quick=True))
    add(
        Case(
            "train with RandAugment m10 (--alt-pillow Pillow)",
            7,
            train_args("-o", "DataLoader.Train.transform.auto_augment=rand-m10-n15-mstd0-inc1-p1.0"),
            data_setup(4, ("cat", "dog")),
            exit=(0,),
            check=finite_check("run"),
            needs=("alt_pillow",),
            alt_pillow=True,
            timeout=60,
            mem_limit_mb=6144,
        )
    )
    add(
        Case(
            "eval records the --alt-pillow Pillow version",
            7,
            eval_args("--output", "res.json"),
            data_setup(1),
            exit=(0,),
            check=lambda d, c, r: (
                None
                if r.exit != 0
                or f'"{c.alt_pillow_version}"' in json.dumps((eval_json(d) or {}).get("preprocessing", {}))
                else f"Pillow version not recorded as {c.alt_pillow_version}"
            ),
            needs=("weights", "alt_pillow"),
            alt_pillow=True,
            timeout=45,
        )
    )

    # ---- needs ../shared: real ImageNet samples through eval with a label file ----
    add(
        Case(
            "eval ImageNet samples + val_list.txt, 1000-class weights (shared)",
            4,
            lambda d, ctx: eval_args(
                "--labels",
                str(ctx.shared / "data/imagenet-samples/val_list.txt"),
                "--output",
                "res.json",
                "--limit",
                "8",
                weights="in1k.pdparams",
                data=str(ctx.shared / "data/imagenet-samples"),
            )(d, ctx),
            synset_weights,
            exit=(0,),
            check=check_eval(8),
            needs=("weights", "shared"),
            timeout=60,
        )
    )
    add(
        Case(
            "eval --data camvid/ (a segmentation set, 4 folders) (shared)",
            4,
            lambda d, ctx: eval_args("--limit", "8", data=str(ctx.shared / "data/camvid"))(d, ctx),
            exit=(2,),
            mentions=("camvid",),
            needs=("weights", "shared"),
            timeout=45,
        )
    )
    names = [c.name for c in cases]
    dup = {n for n in names if names.count(n) > 1}
    assert not dup, dup
    for c in cases:
        c.timeout = min(c.timeout, MAX_TIMEOUT)
    return cases


# ---------------------------------------------------------------------------------------------------------------
# Running one case


def fingerprint(path: Path) -> Any:
    if path.is_symlink() and not path.exists():
        return ("dangling", os.readlink(path))
    if path.is_file():
        return hashlib.sha256(path.read_bytes()).hexdigest()
    if path.is_dir():
        return sorted(
            (str(p.relative_to(path)), hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir")
            for p in path.rglob("*")
        )
    return None


# The command runs under this small wrapper, which forks it and reports its peak RSS. Measured directly with
# os.wait4 from this (large) process, a child's ru_maxrss starts at the RSS this process had when it forked.
RSS_WRAPPER = """
import os, signal, sys
pid = os.fork()
if pid == 0:
    try:
        os.execvp(sys.argv[2], sys.argv[2:])
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as fh:
    fh.write(str(usage.ru_maxrss))
code = os.waitstatus_to_exitcode(status)
if code < 0:
    signal.signal(-code, signal.SIG_DFL)
    os.kill(os.getpid(), -code)
sys.exit(code)
"""


def _preexec(mem_mb: int):
    def fn() -> None:
        limit = mem_mb * MB
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return fn


def _mount_wrapper(case: Case, d: Path, inside_log: Path) -> list[str]:
    lines = ["set -e"]
    for kind, rel in case.mounts:
        p = shlex.quote(str(d / rel))
        if kind == "ro":
            lines += [f"mount --bind {p} {p}", f"mount -o remount,ro,bind {p}"]
        else:
            lines += [
                f"mount -t tmpfs -o size=64k tmpfs {p}",
                f"dd if=/dev/zero of={p}/.filler bs=4096 2>/dev/null || true",
            ]
    lines += ["set +e", '"$@"', "rc=$?"]
    for kind, rel in case.mounts:
        if kind == "full":
            p = shlex.quote(str(d / rel))
            lines.append(
                f"(cd {p} && find . -mindepth 1 ! -name .filler) >> {shlex.quote(str(inside_log))} 2>/dev/null"
            )
    lines.append("exit $rc")
    return ["unshare", "-m", "sh", "-c", "\n".join(lines), "sh"]


def run_case(case: Case, ctx: Context) -> Result:
    r = Result(case)
    missing = [n for n in case.needs if not _available(n, ctx)]
    if missing:
        r.status = "SKIP"
        r.reasons = [_skip_reason(missing[0], ctx)]
        return r
    slug = (
        re.sub(r"[^A-Za-z0-9]+", "-", case.name).strip("-")[:60]
        + "-"
        + hashlib.md5(case.name.encode()).hexdigest()[:6]
    )
    d = ctx.root / "cases" / slug
    logs = ctx.root / "logs"
    logs.mkdir(exist_ok=True)
    d.mkdir(parents=True)
    try:
        if case.setup:
            case.setup(d, ctx)
    except Exception as exc:  # noqa: BLE001 - a case that cannot be built is a FAIL of this script, shown
        r.reasons = [f"setup failed: {type(exc).__name__}: {exc}"]
        return r
    argv = case.argv(d, ctx) if callable(case.argv) else list(case.argv)
    r.argv = argv
    before = {k: fingerprint(d / k) for k in case.keep}
    if case.argv_is_python:
        cmd = [ctx.python, *argv]
        r.shown_argv = "python -c '" + argv[1].strip().splitlines()[-1][:50] + "…'"
    else:
        cmd = [ctx.python, "-m", "shunted", *argv]
        r.shown_argv = abbreviate("shunted " + " ".join(shlex.quote(_show_path(a, d, ctx)) for a in argv))
    inside_log = logs / f"{slug}.inside"
    if case.mounts:
        cmd = _mount_wrapper(case, d, inside_log) + cmd
    env = child_env(ctx, case.env)
    if case.alt_pillow and ctx.alt_pillow is not None:
        env["PYTHONPATH"] = f"{ctx.alt_pillow}{os.pathsep}{REPO}"
    out_path, err_path, rss_path = logs / f"{slug}.out", logs / f"{slug}.err", logs / f"{slug}.rss"
    cmd = [ctx.python, "-I", "-S", "-c", RSS_WRAPPER, str(rss_path), *cmd]
    start = time.monotonic()
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen(
            cmd,
            cwd=d,
            env=env,
            stdin=subprocess.PIPE if case.stdin is not None else subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            preexec_fn=_preexec(case.mem_limit_mb),
            start_new_session=True,
        )
        if case.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.write(case.stdin)
            with contextlib.suppress(OSError):
                proc.stdin.close()
        status, timed_out = _wait(proc, case.timeout)
    r.seconds = time.monotonic() - start
    r.exit = os.waitstatus_to_exitcode(status)
    with contextlib.suppress(OSError, ValueError):
        r.rss_mb = int(rss_path.read_text()) / 1024  # KiB; absent when the case was killed
    r.stdout = out_path.read_text(errors="replace")
    r.stderr = err_path.read_text(errors="replace")
    if inside_log.exists():
        r.inside = [
            line[2:] if line.startswith("./") else line for line in inside_log.read_text().splitlines()
        ]
    reasons = r.reasons
    if timed_out:
        reasons.append(f"timed out after {case.timeout:.0f} s (killed)")
    elif r.exit not in case.exit:
        reasons.append(f"exit {r.exit}, expected {'/'.join(map(str, case.exit))}" + _traceback_hint(r.stderr))
    r.message = _message(r, reasons)
    if case.max_rss_mb is not None and r.rss_mb is not None and r.rss_mb > case.max_rss_mb:
        reasons.append(f"peak RSS {r.rss_mb:.0f} MB > {case.max_rss_mb:.0f} MB")
    file_problems = []
    for k, fp in before.items():
        if fingerprint(d / k) != fp:
            file_problems.append(f"{k} changed or deleted")
    for pattern in case.absent:
        hits = [str(p.relative_to(d)) for p in d.glob(pattern)] + [
            p for p in r.inside for kind, rel in case.mounts if fnmatch.fnmatch(f"{rel}/{p}", pattern)
        ]
        if hits:
            file_problems.append(f"{hits[0]} exists")
    if case.check is not None and not timed_out:
        try:
            why = case.check(d, ctx, r)
        except Exception as exc:  # noqa: BLE001
            why = f"check failed: {type(exc).__name__}: {exc}"
        if why:
            (file_problems if "non-finite" in why or "unreadable" in why else reasons).append(why)
    if case.keep or case.absent or "finite" in getattr(case.check, "__qualname__", ""):
        r.files = "✗" if file_problems else "✓"
    reasons.extend(file_problems)
    r.status = "FAIL" if reasons else "PASS"
    return r


def _available(need: str, ctx: Context) -> bool:
    return {
        "weights": not ctx.good_error and ctx.good.is_file(),
        "shared": ctx.shared is not None,
        "unshare": ctx.unshare_ok,
        "alt_pillow": ctx.alt_pillow is not None,
    }[need]


def _skip_reason(need: str, ctx: Context) -> str:
    return {
        "weights": ctx.good_error or "the good weights were not prepared",
        "shared": "needs --shared (../shared not found)",
        "unshare": "needs `unshare -m` with mount rights (read-only / full file systems)",
        "alt_pillow": "needs --alt-pillow DIR (pip install --target DIR 'pillow==13.*')",
    }[need]


def _wait(proc: subprocess.Popen, timeout: float):
    deadline = time.monotonic() + timeout
    timed_out = False
    while True:
        pid, status = os.waitpid(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)  # Popen must not wait for it again
            return status, timed_out
        if time.monotonic() > deadline and not timed_out:
            timed_out = True
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        time.sleep(0.05)


def _traceback_hint(stderr: str) -> str:
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    if any("Traceback (most recent call last)" in ln for ln in lines):
        last = next(
            (ln for ln in reversed(lines) if re.match(r"^\w[\w.]*(Error|Exception|Interrupt)\b", ln)),
            lines[-1],
        )
        return f" (traceback: {last[:120]})"
    return ""


USAGE_LINE = re.compile(r"^(usage: |\s)")
# Lines a run may print before it stops with an error: progress bars and log warnings (not tracebacks).
PROGRESS_LINE = re.compile(
    r"\d+%\||\d+/\d+ \[|\bs/it\b|\bit/s\b|^\[\d{4}-\d\d-\d\d [\d:,]+\] \[ ?(WARNING|INFO)\]"
)


def _message(r: Result, reasons: list[str]) -> str:
    """The one-line message of an error, checked; or the last stderr line of anything else (for the table)."""
    case = r.case
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    if r.exit != 2 or 2 not in case.exit:
        if r.exit not in case.exit:
            return lines[-1] if lines else ""
        return (r.stdout.strip().splitlines() or [""])[-1] if r.exit == 0 else (lines[-1] if lines else "")
    cmd = case.error_command or (r.argv[0] if r.argv else "?")
    prefix = f"shunted {cmd}: error: "
    errors = [i for i, ln in enumerate(lines) if ln.startswith(prefix)]
    if len(errors) != 1:
        reasons.append(f"{len(errors)} lines start with {prefix.strip()!r}; stderr has {len(lines)} lines")
        return lines[-1] if lines else ""
    i = errors[0]
    before = lines[:i]
    in_usage = bool(before) and before[0].startswith("usage: ") and all(USAGE_LINE.match(ln) for ln in before)
    extra = [ln for ln in before if not PROGRESS_LINE.search(ln)] if not in_usage else []
    extra += lines[i + 1 :]
    message = lines[i]
    if extra:
        reasons.append(f"stderr has {len(extra)} more line(s): {extra[0][:80]!r}")
    if len(message) > MAX_MESSAGE:
        reasons.append(f"message is {len(message):,} characters long")
    if re.search(r"\.tmp\b", message):
        reasons.append("message names an internal .tmp file")
    for m in case.mentions:
        if m not in message:
            reasons.append(f"message does not name {m!r}")
    return message


ABBREVIATIONS = (
    ("--weights $PREP/good.pdparams", "W"),
    (" ".join(EVAL_64), "E64"),
    ("--epochs 1 --max-steps 1 --batch-size 4 --img-size 32 --workers 0", "T1"),
    ("--model shunted_t W --img-size 64 --resize-short 73", "P64"),
    ("--model shunted_t W --format paddle --img-size 32", "X32"),
)


def abbreviate(shown: str) -> str:
    """Shorten the arguments every case of a command repeats (the legend is in the report's header)."""
    shown = shown.replace("'$PREP/good.pdparams'", "$PREP/good.pdparams")
    for long, short in ABBREVIATIONS:
        shown = shown.replace(long, short)
    return shown


def _show_path(arg: str, d: Path, ctx: Context) -> str:
    for base, label in ((str(d), "."), (str(ctx.prep), "$PREP"), (str(REPO), "$REPO")):
        if arg.startswith(base + os.sep):
            rel = arg[len(base) + 1 :]
            return rel if label == "." else f"{label}/{rel}"
    if ctx.shared is not None and arg.startswith(str(ctx.shared)):
        return "$SHARED" + arg[len(str(ctx.shared)) :]
    return arg


# ---------------------------------------------------------------------------------------------------------------
# Report


def _cell(text: str, width: int) -> str:
    text = " ".join(str(text).split()).replace("|", "\\|")
    return text if len(text) <= width else text[: width - 1] + "…"


def versions(python: str) -> str:
    code = (
        "import platform, PIL, paddle, numpy; "
        "print(f'Python {platform.python_version()}, Paddle {paddle.__version__}, Pillow {PIL.__version__}, "
        "numpy {numpy.__version__}')"
    )
    try:
        proc = subprocess.run(
            [python, "-c", code], capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL
        )
        return proc.stdout.strip() or "versions unavailable"
    except (OSError, subprocess.SubprocessError):
        return "versions unavailable"


def render(
    results: list[Result],
    argv: list[str],
    started: datetime.datetime,
    seconds: float,
    ctx: Context,
    jobs: int,
) -> str:
    passed = sum(r.status == "PASS" for r in results)
    failed = sum(r.status == "FAIL" for r in results)
    skipped = sum(r.status == "SKIP" for r in results)
    alt = ""
    if ctx.alt_pillow is not None:
        alt = f"; the --alt-pillow cases with Pillow {ctx.alt_pillow_version} (`{ctx.alt_pillow.name}`) first on PYTHONPATH"
    lines = [
        "# Reliability: hostile and careless inputs (issue 11)",
        "",
        "Generated by `python tools/reliability_cases.py"
        + (" " + " ".join(shlex.quote(a) for a in argv) if argv else "")
        + f"` on {started:%Y-%m-%d %H:%M} UTC in {seconds / 60:.1f} min ({jobs} cases at a time, {os.cpu_count()} CPUs); "
        + f"{versions(ctx.python)}{alt}. Do not edit by hand: re-run the script.",
        "",
        "Each case builds its inputs in a temporary folder (crafted pickles, zips and safetensors are written byte by "
        "byte by the script), runs `python -m shunted …` of this checkout with stdin closed, a timeout and an "
        "address-space limit, and checks the outcome: the exit code; for errors, that stderr is one line "
        "`shunted CMD: error: …` naming the user's file or flag (after an argparse usage block, if any), at most "
        f"{MAX_MESSAGE} characters and never an internal `.tmp` name; peak RSS (`os.wait4`) under the case's bound; "
        "the user's files unchanged (sha256); no orphan `.tmp` and no checkpoint holding NaN/inf. Read-only and full "
        "file systems are real mounts in a private mount namespace. `.` is the case's folder, `$PREP` the prepared "
        "inputs (`demo.pth`: the bundled demo checkpoint; `good.pdparams`: it converted by `shunted convert`). "
        "Abbreviations in the command column: "
        + "; ".join(f"`{short}` = `{long}`" for long, short in ABBREVIATIONS)
        + ".",
        "",
        f"**{passed} passed, {failed} failed**"
        + (f", {skipped} skipped" if skipped else "")
        + f" ({len(results)} cases).",
        "",
        "Items of issue 11 (passed / cases): "
        + "; ".join(
            f"{k}. {v} ({sum(r.status == 'PASS' for r in results if r.case.item == k)} / "
            f"{sum(r.case.item == k for r in results)})"
            for k, v in ITEMS.items()
        )
        + ".",
        "",
        "| # | case | item | command | exit | one-line message (truncated) | peak RSS MB | files kept | verdict |",
        "|---:|---|:-:|---|:-:|---|---:|:-:|---|",
    ]
    for i, r in enumerate(results, 1):
        expected = "/".join(map(str, r.case.exit))
        exit_cell = (
            "—"
            if r.exit is None
            else (f"{r.exit}" if r.exit in r.case.exit else f"**{r.exit}** (want {expected})")
        )
        verdict = r.status if r.status == "PASS" else f"**{r.status}**: {'; '.join(r.reasons)}"
        lines.append(
            f"| {i} | {_cell(r.case.name, 70)} | {r.case.item} | `{_cell(r.shown_argv, 110).replace('`', '')}` | "
            f"{exit_cell} | {_cell(r.message, 140)} | "
            f"{'—' if r.rss_mb is None else f'{r.rss_mb:.0f}'} | {r.files} | {_cell(verdict, 220)} |"
        )
    lines += ["", f"{passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else "") + "."]
    return "\n".join(lines) + "\n"


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def select(cases: list[Case], quick: bool, only: list[int], names: list[str]) -> list[Case]:
    out = [c for c in cases if (not quick or c.quick) and (not only or c.item in only)]
    if names:
        out = [c for c in out if any(n.lower() in c.name.lower() for n in names)]
    return out


def run_all(
    cases: list[Case], ctx: Context, jobs: int = 2, progress: Callable[[Result], None] | None = None
) -> list[Result]:
    ctx.prepare(any("weights" in c.needs or _uses_good(c) for c in cases), any(c.mounts for c in cases))
    results: dict[int, Result] = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        order = sorted(range(len(cases)), key=lambda i: -_cost(cases[i]))  # longest first: shorter total time
        futures = {pool.submit(run_case, cases[i], ctx): i for i in order}
        for fut in concurrent.futures.as_completed(futures):
            r = fut.result()
            results[futures[fut]] = r
            if progress:
                progress(r)
    return [results[i] for i in range(len(cases))]


def _cost(case: Case) -> float:
    """A rough guess of a case's seconds, for scheduling only."""
    command = case.name.split()[0]
    if re.fullmatch(r"\w+ --[\w-]+ \S+", case.name) or case.argv_is_python:
        return 2  # refused by argparse, before Paddle is imported
    if command in ("train", "export", "demo"):
        return 30 if 0 in case.exit else 12
    return 12 if command in ("eval", "predict", "bench") or case.needs else 4


def _uses_good(case: Case) -> bool:
    return callable(case.argv) or case.setup is not None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="only the fast subset (for tests)")
    parser.add_argument(
        "--only",
        type=int,
        action="append",
        default=[],
        choices=sorted(ITEMS),
        metavar="ITEM",
        help="only the cases of this item of issue 11 (repeatable)",
    )
    parser.add_argument(
        "--case", action="append", default=[], help="only cases whose name contains this text (repeatable)"
    )
    parser.add_argument(
        "--shared",
        type=Path,
        default=REPO.parent / "shared",
        help="real data for the cases that need it (default ../shared)",
    )
    parser.add_argument(
        "--alt-pillow", type=Path, default=None, help="a `pip install --target` folder holding Pillow 13"
    )
    parser.add_argument("--jobs", type=int, default=2, help="cases run at a time (default 2)")
    parser.add_argument(
        "--output", type=Path, default=REPO / "docs" / "reliability.md", help="the Markdown table"
    )
    parser.add_argument("--no-write", action="store_true", help="print the table instead of writing --output")
    parser.add_argument(
        "--keep-temp", action="store_true", help="keep the temporary folder (its path is printed)"
    )
    parser.add_argument("--list", action="store_true", help="list the selected cases and exit")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs {args.jobs}: must be at least 1")
    cases = select(all_cases(), args.quick, args.only, args.case)
    if args.list:
        for c in cases:
            print(f"{c.item}  {c.name}")
        return 0
    started = datetime.datetime.now(datetime.timezone.utc)
    t0 = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="shunted-reliability-"))
    try:
        ctx = Context(root, args.shared, args.alt_pillow, sys.executable)

        def progress(r: Result) -> None:
            why = "" if r.status == "PASS" else ": " + "; ".join(r.reasons)[:200]
            print(f"{r.status:4}  {r.seconds:5.1f} s  [{r.case.item}] {r.case.name}{why}", flush=True)

        results = run_all(cases, ctx, args.jobs, progress)
        seconds = time.monotonic() - t0
        shown = [a for a in argv if a not in ("--no-write", "--keep-temp")]
        text = render(results, shown, started, seconds, ctx, args.jobs)
        if args.no_write:
            print(text)
        else:
            write_atomic(args.output, text)
            print(f"wrote {args.output}")
    finally:
        if args.keep_temp:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    passed = sum(r.status == "PASS" for r in results)
    failed = sum(r.status == "FAIL" for r in results)
    print(f"{passed} passed, {failed} failed, {len(results) - passed - failed} skipped in {seconds:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
