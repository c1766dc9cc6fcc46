"""Item 6 of issue 11: one line, not a traceback."""

from __future__ import annotations

import hashlib
import json
import os

from .cases_loaders import BYTEARRAY_39
from .craft import MB
from .harness import (
    CONVERT_RSS_MB,
    DEMO_PTH,
    Case,
    check_eval,
    check_stderr_has,
    check_stdout_lacks,
    checks,
    data_setup,
    eval_args,
    eval_json,
    export_args,
    full,
    predict_args,
    ro,
    seq,
    touch,
    train_args,
    write_file,
)


def cases() -> list[Case]:
    cases: list[Case] = []
    add = cases.append
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
    return cases
