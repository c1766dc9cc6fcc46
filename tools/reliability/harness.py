"""What every case uses: the shared inputs (Context), the Case and Result records, and small builders of inputs,
argument lists and checks."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pickle
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent.parent
ASSETS = REPO / "shunted" / "assets"
DEMO_PTH = ASSETS / "demo" / "ckpt_T_cifar10_fp16.pth"
CIFAR = ASSETS / "cifar10-demo"
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
MAX_TIMEOUT = 60.0
MAX_MESSAGE = 400  # characters: a longer "one line" is a dump, not a message
CONVERT_RSS_MB = 700  # Paddle imported + the 11.5 M-parameter model twice + small crafted files ≈ 400 MB
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
# Shared inputs


class Context:
    """What every case can use: the prepared weights, image folders, the alternative Pillow, the shared data."""

    def __init__(
        self, root: Path, shared: Path | None, alt_pillow: Path | None, python: str, repo: Path = REPO
    ):
        self.root = root
        self.repo = (
            repo  # the checkout whose ``shunted`` the cases run (--repo: an older one, to see them fail)
        )
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
        self.seg = self.prep / "seg_t_11.pdparams"  # shunted_t_fpn, 11 classes, random weights (seed 0)
        self.seg_error = ""
        self.det = self.prep / "det_t_3.pdparams"  # shunted_t_retinanet, 3 classes, random weights (seed 0)
        self.det_error = ""
        self.unshare_ok = False
        self._state: dict | None = None
        shutil.copyfile(DEMO_PTH, self.demo_pth)
        self.images = {c: sorted((CIFAR / c).glob("*.jpg")) for c in CLASSES}

    def prepare(
        self, need_weights: bool, need_unshare: bool, need_seg: bool = False, need_det: bool = False
    ) -> None:
        if need_seg:
            self.seg_error = self._random_weights("shunted_t_fpn", 11, self.seg, "segmentation")
        if need_det:
            self.det_error = self._random_weights("shunted_t_retinanet", 3, self.det, "detection")
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

    def _random_weights(self, model: str, classes: int, path: Path, task: str) -> str:
        """Write ``model``'s random weights (seed 0) to ``path``; the error line, or "" when done."""
        code = (
            "import paddle, shunted, sys; paddle.seed(0); "
            f"m = shunted.create_model({model!r}, num_classes={classes}); paddle.save(m.state_dict(), sys.argv[1])"
        )
        proc = subprocess.run(
            [self.python, "-c", code, str(path)],
            cwd=self.prep,
            env=child_env(self),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=180,
        )
        if proc.returncode == 0 and path.is_file():
            return ""
        err = proc.stderr.decode(errors="replace").strip().splitlines()
        return f"making the {task} weights failed: {err[-1] if err else proc.returncode}"

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
    env["PYTHONPATH"] = str(ctx.repo)
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
    needs: tuple[str, ...] = ()  # "weights", "seg", "det", "shared", "unshare", "alt_pillow"
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


def run_shunted(d: Path, ctx: Context, argv: list[str]) -> None:
    """``shunted ARGV`` of the checkout under test, in the case folder, before the case (a setup step)."""
    subprocess.run(
        [ctx.python, "-m", "shunted", *argv],
        cwd=d,
        env=child_env(ctx),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        check=True,
        timeout=120,
    )


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


# -- builders of weights, names and runs ---------------------------------------------------------------------


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
