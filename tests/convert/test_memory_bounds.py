"""Crafted checkpoints that ask for far more memory or time than their size justifies (issue 11, item 2).

Each file is a few bytes to a few MB, yet an unguarded reader allocates gigabytes, copies one region per tensor,
overflows the C stack, hangs or prints a multi-megabyte error. ``shunted convert`` runs in a child process
whose peak RSS (its ``VmHWM``) is measured: it must end with exit 2 and one short line naming the file, and stay
under :data:`PEAK_MB`. The child's address space is capped (:data:`AS_LIMIT`) only as a safety net for the
machine; every case stays far below it when it fails the old way (so the peak shows), and far below PEAK_MB now.
"""

from __future__ import annotations

import os
import pickle
import resource
import struct
import subprocess
import sys
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from convert_helpers import Ops, legacy_container, zip_container

from shunted.errors import CheckpointFormatError

PEAK_MB = 250  # the CLI importing numpy and the converter peaks near 40 MB
AS_LIMIT = 8 << 30
TIMEOUT = 60
GB = 1 << 30

# The child reports its own peak (VmHWM of its process image: ru_maxrss would include the forked pytest's pages).
RUNNER = """
import sys
def peak():
    with open("/proc/self/status") as status:
        kb = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    with open(sys.argv[3], "w") as out:
        out.write(kb)
try:
    from shunted.cli import main
    code = main(["convert", sys.argv[1], sys.argv[2]])
finally:
    peak()
sys.exit(code)
"""


def _limit():  # runs in the child before exec
    resource.setrlimit(resource.RLIMIT_AS, (AS_LIMIT, AS_LIMIT))


def run_convert(src, dst, stdin=None, stdin_data: bytes | None = None) -> tuple[int, str, int, float]:
    """(exit code, stderr, peak RSS in MB or -1, seconds) of ``shunted convert SRC DST`` in a child process."""
    err_path = Path(dst).with_name("stderr.txt")
    peak_path = Path(dst).with_name("peak_kb.txt")
    start = time.monotonic()
    with open(err_path, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", RUNNER, str(src), str(dst), str(peak_path)],
            stdin=stdin if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            preexec_fn=_limit,
        )
        if stdin_data is not None:
            proc.stdin.write(stdin_data)
            proc.stdin.close()
        while True:
            pid, status, _ = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() - start > TIMEOUT:
                proc.kill()
                _, status, _ = os.wait4(proc.pid, 0)
                break
            time.sleep(0.05)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.monotonic() - start
    peak_mb = int(peak_path.read_text()) // 1024 if peak_path.exists() else -1
    return proc.returncode, err_path.read_text(errors="replace"), peak_mb, seconds


# ---------------------------------------------------------------------------------------------------------------
# The crafted files (built opcode by opcode / byte by byte, independently of the package's reader)


def pdparams_bytearray_size(tmp: Path) -> Path:
    """The issue's 39 bytes: {'acb': builtins.bytearray(0x35940000)} (protocol 2)."""
    path = tmp / "b.pdparams"
    path.write_bytes(b"\x80\x02}X\x01\x00\x00\x00acbuiltins\nbytearray\n\x8a\x04\x00\x94\x35\x77\x85Rs.")
    return path


def pdparams_memo_index(tmp: Path) -> Path:
    """LONG_BINPUT with index 2**27: CPython's unpickler sizes its memo table to 2 × the index (2 GB)."""
    path = tmp / "memo.pdparams"
    path.write_bytes(b"\x80\x02}r" + struct.pack("<I", 1 << 27) + b".")
    return path


def pdparams_repeated_encode(tmp: Path) -> Path:
    """One 1 MB string, memoised, passed 1500 times to _codecs.encode (protocol-2 bytes): 1.5 GB of copies."""
    ops = Ops().raw(pickle.EMPTY_DICT).s("w").raw(pickle.EMPTY_LIST + pickle.MARK)
    ops.glob("_codecs", "encode").raw(pickle.MARK).s("x" * (1 << 20)).raw(pickle.BINPUT + b"\x01").s("latin1")
    ops.raw(pickle.TUPLE + pickle.REDUCE)
    for _ in range(1499):
        ops.glob("_codecs", "encode").raw(pickle.BINGET + b"\x01").s("latin1").raw(
            pickle.TUPLE2 + pickle.REDUCE
        )
    path = tmp / "encode.pdparams"
    path.write_bytes(ops.raw(pickle.APPENDS + pickle.SETITEM).stop())
    return path


def pdparams_deep_tuple_key(tmp: Path) -> Path:
    """A dict key that is a tuple nested 200 000 deep: hashing it overflows the C stack (segfault)."""
    path = tmp / "deep.pdparams"
    path.write_bytes(b"\x80\x02}" + b")" + b"\x85" * 200_000 + b"Ns.")
    return path


def pth_huge_size_list(tmp: Path) -> Path:
    """A tensor whose size is a list of a million ints: the old error quoted it whole (a 3 MB line)."""
    ops = Ops().raw(pickle.EMPTY_DICT).s("w").glob("torch._utils", "_rebuild_tensor_v2").raw(pickle.MARK)
    ops.raw(pickle.MARK).s("storage").glob("torch", "FloatStorage").s("0").s("cpu").i(4)
    ops.raw(pickle.TUPLE + pickle.BINPERSID).i(0)
    ops.raw(
        pickle.EMPTY_LIST + pickle.MARK + pickle.BININT1 + b"\x01" + pickle.DUP * 1_000_000 + pickle.APPENDS
    )
    ops.tup(1).raw(pickle.NEWFALSE + pickle.NONE + pickle.TUPLE + pickle.REDUCE + pickle.SETITEM)
    return zip_container(tmp / "sizes.pth", ops.stop(), {"0": np.zeros(4, np.float32).tobytes()})


def pth_repr_of_persistent_id(tmp: Path) -> Path:
    """A persistent id holding a list of 20 000 references to one 100 kB string: its repr is 2 GB."""
    ops = Ops().raw(pickle.EMPTY_DICT).s("w").raw(pickle.MARK).s("x" * 100_000).raw(pickle.BINPUT + b"\x01")
    ops.raw(pickle.EMPTY_LIST + pickle.MARK + (pickle.BINGET + b"\x01") * 20_000 + pickle.APPENDS)
    ops.raw(pickle.TUPLE + pickle.BINPERSID + pickle.SETITEM)
    return zip_container(tmp / "pid.pth", ops.stop(), {})


def _tensor_dict(
    keys: list[str], numel: int, shape: tuple[int, ...], legacy: bool, same: bool = False
) -> bytes:
    """{key: tensor on storage "0"} for each key; ``same``: every key is one memoised tensor (BINGET)."""
    ops = Ops().raw(pickle.EMPTY_DICT + pickle.MARK)
    for i, key in enumerate(keys):
        ops.s(key)
        if same and i:
            ops.raw(pickle.BINGET + b"\x02")
        else:
            ops.tensor("0", numel, shape, legacy)
            if same:
                ops.raw(pickle.BINPUT + b"\x02")
    return ops.raw(pickle.SETITEMS).stop()


def legacy_storage_larger_than_file(tmp: Path) -> Path:
    """A legacy .pth whose storage claims 2**28 floats (1 GB) but holds 16 bytes."""
    data = _tensor_dict(["w"], 1 << 28, (1 << 14, 1 << 14), legacy=True)
    return legacy_container(tmp / "legacy.pth", data, {"0": (1 << 28, np.zeros(4, np.float32).tobytes())})


def zip_storage_larger_than_file(tmp: Path) -> Path:
    """A zip .pth whose central directory says data/0 has 1 GB; the archive holds 16 bytes of it."""
    data = _tensor_dict(["w"], 1 << 28, (1 << 14, 1 << 14), legacy=False)
    path = zip_container(tmp / "zipsize.pth", data, {"0": np.zeros(4, np.float32).tobytes()})
    raw = bytearray(path.read_bytes())
    name = b"archive/data/0"
    at = raw.rfind(b"PK\x01\x02", 0, raw.rfind(name))  # its central directory record
    raw[at + 20 : at + 28] = struct.pack("<II", 1 << 30, 1 << 30)  # compressed and uncompressed sizes
    path.write_bytes(bytes(raw))
    return path


def _deflated_zeros(nbytes: int) -> bytes:
    """A raw deflate stream of ``nbytes`` zeros, built from one compressed 16 MB block repeated (fast)."""
    block = 1 << 24
    assert nbytes % block == 0
    one = zlib.compressobj(9, zlib.DEFLATED, -15)
    piece = one.compress(bytes(block)) + one.flush(zlib.Z_FULL_FLUSH)  # a full flush resets the history
    return piece * (nbytes // block) + one.flush()


def _raw_deflated_entry(zf: zipfile.ZipFile, name: str, payload: bytes, file_size: int) -> None:
    """Append an already-deflated entry (CRC left 0: the sizes alone must make a reader refuse it)."""
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    info.file_size, info.compress_size, info.CRC = file_size, len(payload), 0
    info.header_offset = zf.fp.tell()
    zf.fp.write(info.FileHeader())
    zf.fp.write(payload)
    zf.start_dir = zf.fp.tell()
    zf.filelist.append(info)
    zf.NameToInfo[name] = info
    zf._didModify = True


def zip_compressed_storage(tmp: Path) -> Path:
    """A zip .pth whose data/0 is 512 MB of zeros deflated to 0.5 MB (torch never compresses storages)."""
    numel = 1 << 27
    path = tmp / "bomb.pth"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("archive/data.pkl", _tensor_dict(["w"], numel, (numel,), legacy=False))
        zf.writestr("archive/byteorder", "little")
        _raw_deflated_entry(zf, "archive/data/0", _deflated_zeros(4 * numel), 4 * numel)
    return path


def zip_compressed_pickle(tmp: Path) -> Path:
    """data.pkl itself is a deflate bomb: 512 MB of zeros in a 0.5 MB archive."""
    path = tmp / "pklbomb.pth"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        _raw_deflated_entry(zf, "archive/data.pkl", _deflated_zeros(1 << 29), 1 << 29)
    return path


def zip_one_tensor_many_keys(tmp: Path) -> Path:
    """One 4 MB tensor referenced by 400 keys (memo): a per-key copy is 1.6 GB; and none are Shunted keys."""
    numel = 1 << 20
    data = _tensor_dict([f"k{i}" for i in range(400)], numel, (numel,), legacy=False, same=True)
    return zip_container(tmp / "shared.pth", data, {"0": np.ones(numel, np.float32).tobytes()})


def safetensors_aliased(tmp: Path) -> Path:
    """400 tensors whose data_offsets all name the same 4 MB region: a per-tensor read is 1.6 GB."""
    import json

    numel = 1 << 20
    header = {f"k{i}": {"dtype": "F32", "shape": [numel], "data_offsets": [0, 4 * numel]} for i in range(400)}
    blob = json.dumps(header).encode()
    path = tmp / "aliased.safetensors"
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + np.ones(numel, np.float32).tobytes())
    return path


CASES = {
    "pdparams bytearray(0x35940000) (issue)": pdparams_bytearray_size,
    "pdparams memo index 2**27": pdparams_memo_index,
    "pdparams _codecs.encode of one string x1500": pdparams_repeated_encode,
    "pdparams tuple key nested 200000 deep": pdparams_deep_tuple_key,
    "pth size list of 1M ints": pth_huge_size_list,
    "pth persistent id with a 2 GB repr": pth_repr_of_persistent_id,
    "legacy storage 1 GB declared, 16 B held": legacy_storage_larger_than_file,
    "zip storage 1 GB declared, 16 B held": zip_storage_larger_than_file,
    "zip storage deflate bomb": zip_compressed_storage,
    "zip data.pkl deflate bomb": zip_compressed_pickle,
    "zip one tensor under 400 keys": zip_one_tensor_many_keys,
    "safetensors 400 tensors on one region": safetensors_aliased,
}


@pytest.mark.parametrize("name", list(CASES))
def test_crafted_file_is_refused_in_one_line_with_bounded_memory(tmp_path, name):
    src = CASES[name](tmp_path)
    dst = tmp_path / "out.safetensors"
    code, err, peak_mb, seconds = run_convert(src, dst)
    lines = err.strip().splitlines()
    assert code == 2, f"exit {code} after {seconds:.1f}s, peak {peak_mb} MB: {err[-500:]}"
    assert len(lines) == 1 and len(err) < 600 and "Traceback" not in err, err[:600]
    assert str(src) in lines[0] and "error:" in lines[0]
    assert 0 < peak_mb < PEAK_MB, f"peak RSS {peak_mb} MB: {lines[0]}"
    assert not dst.exists() and not (tmp_path / "out.safetensors.json").exists()


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/stdin"])
def test_non_regular_source_is_refused_in_one_line(tmp_path, device):
    """/dev/zero would be hashed forever; /dev/stdin (a pipe) cannot be read twice or seeked."""
    stdin = subprocess.PIPE if device == "/dev/stdin" else None
    code, err, peak_mb, seconds = run_convert(
        device, tmp_path / "out.pdparams", stdin=stdin, stdin_data=b"\x80\x02}." if stdin else None
    )
    assert code == 2 and seconds < TIMEOUT, (code, seconds, err[-400:])
    assert err.strip().count("\n") == 0 and "Traceback" not in err, err[-400:]
    assert device in err and "not a regular file" in err


# ---------------------------------------------------------------------------------------------------------------
# Training checkpoints (.pdckpt) go through the same unpickler; their loader walks the object recursively.


def _pdckpt(tmp: Path, body: bytes) -> Path:
    path = tmp / "last.pdckpt"
    ops = Ops().raw(pickle.EMPTY_DICT + pickle.MARK).s("format").s("shunted-train-state").s("version").i(1)
    path.write_bytes(bytes(ops.b) + body + pickle.SETITEMS + pickle.STOP)
    return path


def test_deeply_nested_training_checkpoint_is_one_error(tmp_path):
    """{'x': [[[…]]]} 50 000 deep: the recursive walk of load_checkpoint hit RecursionError."""
    from shunted.engine.train.state import load_checkpoint

    nested = Ops().s("x").raw(pickle.EMPTY_LIST * 50_000 + pickle.APPEND * 49_999)
    path = _pdckpt(tmp_path, bytes(nested.b[2:]))
    with pytest.raises(CheckpointFormatError, match="nested more than") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value) and len(str(info.value)) < 400


def test_shared_references_cannot_blow_up_the_walk(tmp_path):
    """L[i+1] = [L[i], L[i]] for 40 levels is 400 bytes but 2**40 nodes for a recursive walk (a hang)."""
    body = Ops().s("x").raw(pickle.EMPTY_LIST + pickle.BINPUT + b"\x00")
    for level in range(1, 41):
        get = pickle.BINGET + bytes([level - 1])
        body.raw(pickle.POP + pickle.EMPTY_LIST + pickle.MARK + get + get + pickle.APPENDS)
        body.raw(pickle.BINPUT + bytes([level]))
    path = _pdckpt(tmp_path, bytes(body.b[2:]))
    code = (
        "import sys; from pathlib import Path; from shunted.engine.train.state import load_checkpoint\n"
        "try:\n    load_checkpoint(Path(sys.argv[1]))\nexcept Exception as e:\n"
        "    print(type(e).__name__, str(e)[:300]); sys.exit(2)\n"
    )
    try:
        proc = subprocess.run(
            [sys.executable, "-c", code, str(path)],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            preexec_fn=_limit,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"load_checkpoint still walking after {TIMEOUT}s")
    assert proc.returncode == 2 and "CheckpointFormatError" in proc.stdout, proc.stdout + proc.stderr[-500:]
    assert "out of proportion" in proc.stdout
