"""Item 2 of issue 11: safe loaders, memory bounded by the file, validation first (crafted checkpoints)."""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path

from .craft import (
    MB,
    Call,
    G,
    Get,
    Memo,
    deep_dict_pickle,
    deep_list_pickle,
    patch_zip_sizes,
    pickle_bytes,
    storage_pid,
    tensor,
    write_legacy_pth,
    write_safetensors,
    write_zip_pth,
)
from .harness import CONVERT_RSS_MB, Case, data_setup, eval_args, seq, train_args, write_file

# -- crafted checkpoints --------------------------------------------------------------------------------------

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


def cases() -> list[Case]:
    cases: list[Case] = []
    add = cases.append
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
    return cases
