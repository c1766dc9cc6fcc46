"""Issue 20 (trust, second pass), the parts of helper ``trust``: no hangs on pipes and devices, text inputs bounded
(items 8), memory and threads bounded by the work (9), one writer per output and only our outputs replaced (10),
signals and messages (11). ``20#N`` in a case's name is the finding of issue 20 it reproduces; each failed on
4e151b2 (``--repo`` of an older checkout shows it)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from .harness import Case, Context, data_setup, eval_args, predict_args, run_shunted, seq, train_args

NOT_REGULAR = "not a regular file"


def fifo(name: str):
    def setup(d: Path, ctx: Context) -> None:
        os.mkfifo(d / name)

    return setup


def image(name: str = "img.jpg"):
    def setup(d: Path, ctx: Context) -> None:
        (d / name).write_bytes(ctx.images["cat"][0].read_bytes())

    return setup


def images(folder: str, n: int):
    def setup(d: Path, ctx: Context) -> None:
        (d / folder).mkdir()
        for i in range(n):
            (d / folder / f"{i:04}.jpg").write_bytes(
                ctx.images[("cat", "dog", "ship")[i % 3]][i // 3].read_bytes()
            )

    return setup


def seg_data(d: Path, ctx: Context) -> None:
    """cv/images + cv/labels: four 64×48 frames (CIFAR images) with 11-class index labels."""
    import numpy as np
    from PIL import Image

    (d / "cv" / "images").mkdir(parents=True)
    (d / "cv" / "labels").mkdir()
    rng = np.random.default_rng(0)
    for i, cls in enumerate(("cat", "dog", "ship", "frog")):
        Image.open(ctx.images[cls][0]).convert("RGB").resize((64, 48)).save(d / "cv" / "images" / f"f{i}.png")
        label = np.repeat(np.repeat(rng.integers(0, 11, (6, 8)), 8, 0), 8, 1).astype(np.uint8)
        Image.fromarray(label, "L").save(d / "cv" / "labels" / f"f{i}.png")


def seg_eval_args(*extra: str):
    def argv(d: Path, ctx: Context) -> list[str]:
        return ["seg-eval", "--backend=dygraph", "--model", "shunted_t_fpn", "--weights", str(ctx.seg)] + [
            "--data",
            "cv",
            "--num-classes",
            "11",
            "--workers",
            "0",
            "--no-progress",
            *extra,
        ]

    return argv


SEG_TRAIN = [
    "seg-train",
    "--model",
    "shunted_t_fpn",
    "--data",
    "cv",
    "--num-classes",
    "11",
    "--ignore-index",
    "11",
]
SEG_TRAIN += ["--epochs", "1", "--max-steps", "1", "--workers", "0", "--batch-size", "2", "--output", "run"]


def photo(name: str, width: int, height: int):
    """A smooth photo-like JPEG of width × height."""

    def setup(d: Path, ctx: Context) -> None:
        import numpy as np
        from PIL import Image

        y, x = np.mgrid[0:height, 0:width]
        rgb = np.stack([x * 255 // width, y * 255 // height, ((x // 97 + y // 61) % 2) * 200], -1)
        Image.fromarray(rgb.astype(np.uint8)).save(d / name, quality=90)

    return setup


# A process that holds the output lock of ``s.jsonl`` by the package's protocol (flock on .s.jsonl.lock, its pid
# inside) for 45 s: what a first predict run does while it writes. Started by the setup, killed by the check.
HOLDER = textwrap.dedent(
    """
    import fcntl, os, sys, time
    fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.write(fd, f"{os.getpid()}\\n".encode())
    print("locked", flush=True)
    time.sleep(45)
    """
)


def hold_lock(output: str):
    def setup(d: Path, ctx: Context) -> None:
        proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(d / f".{output}.lock")],
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        assert proc.stdout.readline().strip() == "locked"
        (d / "holder.pid").write_text(str(proc.pid))

    return setup


def release_lock(d: Path, ctx: Context, r) -> str | None:
    pid = int((d / "holder.pid").read_text())
    with_pid = f"(pid {pid})"
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return None if with_pid in r.message else f"the message does not name the holder {with_pid}"


def first_run(*inputs: str, output: str = "p.jsonl", keep_lines: int = 2):
    """Run predict once (this checkout's), then keep only ``keep_lines`` lines: a run killed part-way."""

    def setup(d: Path, ctx: Context) -> None:
        run_shunted(d, ctx, predict_args(*inputs, extra=("--output", output))(d, ctx))
        lines = (d / output).read_text().splitlines(keepends=True)
        (d / output).write_text("".join(lines[:keep_lines]))

    return setup


SIGTERM_AFTER_PADDLE = textwrap.dedent(
    """
    import os, signal, sys, time
    from shunted import cli
    from shunted.commands import info

    def run(args):
        import paddle  # installs Paddle's own SIGTERM handler
        print("working", flush=True)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)

    info.run = run
    sys.exit(cli.main(["info"]))  # shunted info, terminated while it works
    """
)


def one_terminated_line(d: Path, ctx: Context, r) -> str | None:
    lines = [
        ln for ln in r.stderr.splitlines() if ln.strip() and "ccache" not in ln and "warnings.warn" not in ln
    ]
    if lines != ["shunted info: terminated (SIGTERM)"]:
        return f"stderr is {len(lines)} lines: {lines[0][:80] if lines else ''!r}"
    return None


# tools/launch.py with 2 processes predicting 3,000 images; kill -9 of the launcher's process group once both
# shards are being written; exit 0 when no process of the run is left writing 10 s later.
LAUNCHER_KILL = textwrap.dedent(
    """
    import os, signal, subprocess, sys, time
    from pathlib import Path
    repo, weights, img = sys.argv[1], sys.argv[2], sys.argv[3]
    os.makedirs("imgs", exist_ok=True)
    for i in range(3000):
        os.link(img, f"imgs/{i:04}.jpg") if not os.path.exists(f"imgs/{i:04}.jpg") else None
    cmd = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2", "--log_dir", "log",
           f"{repo}/tools/launch.py", "predict", "--backend=dygraph", "--model", "shunted_t", "--weights", weights, "--img-size", "32",
           "--workers", "0", "--batch-size", "1", "--threads", "1", "--output", "p.jsonl", "imgs"]
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}  # "" sends the launcher to GPUs
    launcher = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env=env)
    shards = [Path("p.rank0.jsonl"), Path("p.rank1.jsonl")]
    deadline = time.monotonic() + 40
    while not all(s.exists() and s.stat().st_size for s in shards):
        if launcher.poll() is not None or time.monotonic() > deadline:
            sys.exit("the run did not start writing")
        time.sleep(0.3)
    os.killpg(launcher.pid, signal.SIGKILL)
    launcher.wait()
    time.sleep(3)
    sizes = [s.stat().st_size for s in shards]
    time.sleep(5)
    grown = [s.name for s, n in zip(shards, sizes) if s.stat().st_size != n]
    if grown:
        sys.exit(f"the launcher's processes outlived it and go on writing {', '.join(grown)}")
    print("no process of the run is left writing")
    """
)


def cases() -> list[Case]:
    cases: list[Case] = []
    add = cases.append

    # ---- 8. no hangs: pipes and devices are refused by what they are, text inputs are bounded ----
    add(
        Case(
            "predict --labels is a FIFO (20#2)",
            8,
            predict_args("img.jpg", extra=("--labels", "fifo.txt")),
            seq(image(), fifo("fifo.txt")),
            mentions=("fifo.txt", NOT_REGULAR),
            needs=("weights",),
            timeout=40,
        )
    )
    add(
        Case(
            "eval --class-names is a FIFO (20#2)",
            8,
            eval_args("--class-names", "fifo.txt"),
            seq(data_setup(1), fifo("fifo.txt")),
            mentions=("fifo.txt", NOT_REGULAR),
            needs=("weights",),
            timeout=40,
        )
    )
    add(
        Case(
            "seg-eval --class-names is a FIFO (20#2)",
            8,
            seg_eval_args("--class-names", "fifo"),
            seq(seg_data, fifo("fifo")),
            mentions=("fifo", NOT_REGULAR),
            needs=("seg",),
            timeout=40,
        )
    )
    add(
        Case(
            "seg-train -c is a FIFO (20#2)",
            8,
            [*SEG_TRAIN, "-c", "fifo.yaml"],
            seq(seg_data, fifo("fifo.yaml")),
            mentions=("fifo.yaml", NOT_REGULAR),
            absent=("run",),
            timeout=40,
        )
    )
    add(
        Case(
            "predict --list is a FIFO: named as a pipe, not 'no such file' (20#19)",
            8,
            predict_args(extra=("--list", "fifo.txt")),
            fifo("fifo.txt"),
            mentions=("fifo.txt", NOT_REGULAR),
            needs=("weights",),
            timeout=40,
        )
    )
    add(
        Case(
            "seg-eval --list is a FIFO: named as a pipe, not 'no such list file' (20#19)",
            8,
            seg_eval_args("--list", "fifo.txt"),
            seq(seg_data, fifo("fifo.txt")),
            mentions=("fifo.txt", NOT_REGULAR),
            needs=("seg",),
            timeout=40,
        )
    )
    for flag, device, argv in (
        ("--labels", "/dev/zero", lambda dev: eval_args("--labels", dev)),
        ("--class-names", "/dev/zero", lambda dev: eval_args("--class-names", dev)),
        ("--labels", "/dev/urandom", lambda dev: predict_args("img.jpg", extra=("--labels", dev))),
    ):
        command = "eval" if device == "/dev/zero" else "predict"
        add(
            Case(
                f"{command} {flag} {device} (20#3)",
                8,
                argv(device),
                seq(data_setup(1), image()),
                mentions=(device, NOT_REGULAR),
                needs=("weights",),
                timeout=40,
            )
        )
    add(
        Case(
            "train -c /dev/zero (20#3)",
            8,
            train_args("-c", "/dev/zero"),
            data_setup(1, ("cat", "dog")),
            mentions=("/dev/zero", NOT_REGULAR),
            absent=("run",),
            timeout=40,
        )
    )

    # ---- 9. memory and threads bounded by the work ----
    add(
        Case(
            "seg-predict a 1280×960 photo (4.2 GB whole) under ulimit -v 4 GB, defaults: slides (20#4)",
            9,
            lambda d, ctx: (
                ["seg-predict", "--backend=dygraph", "--model", "shunted_t_fpn", "--weights", str(ctx.seg)]
                + ["photo.jpg"]
                + ["--output-dir", "out", "--no-progress"]
            ),
            photo("photo.jpg", 1280, 960),
            exit=(0,),
            check=lambda d, ctx, r: None if (d / "out" / "photo.png").is_file() else "no mask written",
            max_rss_mb=4096,
            needs=("seg",),
            timeout=60,
        )
    )
    add(
        Case(
            "predict --threads 1000 (20#6)",
            9,
            predict_args("img.jpg", extra=("--threads", "1000")),
            image(),
            mentions=("--threads",),
            needs=("weights",),
        )
    )

    # ---- 10. one writer per output; only our own outputs are replaced ----
    add(
        Case(
            "predict into a s.jsonl another run is writing (20#11)",
            10,
            predict_args("img.jpg", extra=("--output", "s.jsonl")),
            seq(image(), hold_lock("s.jsonl")),
            mentions=("s.jsonl", "another shunted process"),
            absent=("s.jsonl",),
            check=release_lock,
            needs=("weights",),
        )
    )
    add(
        Case(
            "kill -9 of the launcher's process group leaves no writer (20#12)",
            10,
            lambda d, ctx: ["-c", LAUNCHER_KILL, str(ctx.repo), str(ctx.good), str(ctx.images["cat"][0])],
            exit=(0,),
            needs=("weights",),
            timeout=60,
            mem_limit_mb=8192,
        )
    )
    add(
        Case(
            "predict --output notes.json (a user's file) (20#16)",
            10,
            predict_args("img.jpg", extra=("--output", "notes.json")),
            seq(image(), lambda d, ctx: (d / "notes.json").write_text('{"my": "notes"}\n')),
            mentions=("notes.json", "not an earlier prediction output"),
            keep=("notes.json",),
            needs=("weights",),
        )
    )
    add(
        Case(
            "predict --output run.jsonl (a user's log): not 'already holds predictions' (20#19)",
            10,
            predict_args("img.jpg", extra=("--output", "run.jsonl")),
            seq(image(), lambda d, ctx: (d / "run.jsonl").write_text('{"level": "info"}\n')),
            mentions=("run.jsonl", "is not a prediction stream"),
            keep=("run.jsonl",),
            needs=("weights",),
        )
    )
    add(
        Case(
            "predict --resume with the absolute path of imgs: not 'the inputs changed' (20#19)",
            10,
            lambda d, ctx: predict_args(str(d / "imgs"), extra=("--output", "p.jsonl", "--resume"))(d, ctx),
            seq(images("imgs", 4), first_run("imgs")),
            exit=(0,),
            check=lambda d, ctx, r: (
                None
                if len((d / "p.jsonl").read_text().splitlines()) == 4
                else "the resumed output does not hold 4 lines"
            ),
            needs=("weights",),
            timeout=45,
        )
    )

    # ---- 11. signals, silent wrong results and messages ----
    add(
        Case(
            "SIGTERM while a command works: one line, exit 143 (20#20)",
            11,
            ["-c", SIGTERM_AFTER_PADDLE],
            exit=(143,),
            check=one_terminated_line,
        )
    )
    add(
        Case(
            "predict a 144 MP image: one line, no DecompressionBombWarning (20#20)",
            11,
            predict_args("big.ppm"),
            lambda d, ctx: (d / "big.ppm").write_bytes(b"P5\n12000 12000\n255\n" + bytes(64)),
            mentions=("big.ppm", "exceeds limit"),
            needs=("weights",),
        )
    )
    add(
        Case(
            "seg-eval --ignore-index 3 (a real class) (20#7)",
            11,
            seg_eval_args("--ignore-index", "3", "--output", "r.json"),
            seg_data,
            mentions=("--ignore-index 3", "is one of the 11 classes"),
            absent=("r.json",),
            needs=("seg",),
            timeout=45,
        )
    )
    return cases
