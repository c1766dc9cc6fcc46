"""Atomic output: write to a temporary file in the destination's folder, then rename over it.

An existing destination is replaced only when the new content is complete; on any error the temporary file is
removed and the destination is left as it was. A failure to write (read-only file system, no permission, full
disk, a file where a folder is expected) is an ``OutputError`` naming the destination the user gave, never the
temporary file.

Long commands call ``check_output_file`` / ``check_output_dir`` on their outputs before the work starts, so a
location that cannot be written fails in a second, not after an hour of evaluation.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import ShuntedError

# Errors of a write whose OSError carries no file name (write(2), fsync(2)): they concern the file being written.
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EROFS}


class OutputError(ShuntedError):
    """An output location cannot be written (named as the user gave it); ``errno`` says why."""

    def __init__(self, message: str, errno_: int | None = None):
        super().__init__(message)
        self.errno = errno_


def output_error(dst: str | os.PathLike, exc: OSError, temporaries: tuple = ()) -> OutputError:
    """``exc`` (raised while writing ``dst``) as one line naming ``dst``; ``temporaries`` are never named."""
    code = exc.errno
    reason = exc.strerror or str(exc)
    where = exc.filename
    if where is not None:
        name = _name(where)
        if name == os.fsdecode(dst) or any(
            name == str(t) or name.startswith(str(t) + os.sep) for t in temporaries
        ):
            where = None
    blocker = _nearest_existing(Path(dst).parent)
    if code == errno.EISDIR:
        text = f"{dst}: is a folder; give a file name"
    elif code in (errno.EEXIST, errno.ENOTDIR) and not blocker.is_dir():
        text = f"{dst}: cannot create its folder: {blocker} is a file, not a folder"
    elif code == errno.ENOSPC:
        text = f"{dst}: cannot write: no space left on the device"
    else:
        text = f"{dst}: cannot write: {reason}" + (f" ({where})" if where is not None else "")
    return OutputError(text, code)


def _temporary(dst: Path) -> Path:
    """A new empty file beside ``dst`` (``.NAME.XXXXXXXX.tmp``; engine/train/state.py recognises the pattern)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    os.close(fd)
    return Path(tmp)


@contextlib.contextmanager
def atomic_path(dst: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``dst``; on success it is renamed to ``dst`` (fsync'd first).

    OSErrors about the temporary (or the destination, or without a file name such as ENOSPC from a write) are
    raised as ``OutputError`` naming ``dst``. Missing parent folders are created. A symbolic link is kept: the
    file it points to is replaced. A destination that is not a regular file (``/dev/stdout``, ``/dev/null``, a
    pipe; anything under /dev or /proc) is written in place, never replaced.
    """
    shown = Path(dst)
    if _in_place(shown):
        try:
            yield shown
        except OSError as exc:
            if _about(exc, shown):
                raise output_error(shown, exc) from exc
            raise
        return
    dst = _target(shown)
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise output_error(shown, exc) from None
    try:
        tmp_path = _temporary(dst)
    except OSError as exc:
        raise output_error(shown, exc, (exc.filename,) if exc.filename else ()) from None
    try:
        try:
            os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual permissions
            yield tmp_path
            with open(tmp_path, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp_path, dst)
        except OSError as exc:
            if _about(exc, dst, tmp_path, shown):
                raise output_error(shown, exc, (tmp_path, dst)) from exc
            raise
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _about(exc: OSError, *paths: Path) -> bool:
    """Whether ``exc`` concerns the output: it names one of ``paths``, or names no file and is a write error."""
    if exc.filename is None:
        return exc.errno in _WRITE_ERRNOS
    return _name(exc.filename) in {str(p) for p in paths}


def _name(filename: Any) -> str:
    return os.fsdecode(filename) if isinstance(filename, (str, bytes)) else str(filename)


def _in_place(dst: Path) -> bool:
    """Whether ``dst`` exists and must be written in place: a device, pipe or socket, or a path under /dev or
    /proc (``/dev/stdout`` links to the caller's stdout, which may be a regular file: replacing it would cut
    the link)."""
    if not os.path.lexists(dst):
        return False
    path = os.path.abspath(dst)
    for _ in range(40):  # the path and every link it goes through (a link to /dev/stdout counts)
        if path.startswith(("/dev/", "/proc/")):
            return True
        if not os.path.islink(path):
            break
        path = os.path.abspath(os.path.join(os.path.dirname(path), os.readlink(path)))
    try:
        mode = os.stat(dst).st_mode
    except OSError:  # a dangling link: its target is created
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def _target(dst: Path) -> Path:
    """The path to replace: ``dst``, or the file a symbolic link ``dst`` points to (the link is kept)."""
    return Path(os.path.realpath(dst)) if dst.is_symlink() else dst


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _nearest_existing(path: Path) -> Path:
    path = Path(os.path.abspath(path))
    while not os.path.lexists(path) and path != path.parent:
        path = path.parent
    return path


def _check_folder_writable(folder: Path, dst: Path) -> None:
    """``folder`` (the nearest existing ancestor of where ``dst`` goes) can hold new files, or OutputError."""
    if not folder.is_dir():
        raise OutputError(f"{dst}: cannot create its folder: {folder} is a file, not a folder", errno.ENOTDIR)
    if not os.access(folder, os.W_OK | os.X_OK):
        read_only = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
        code = errno.EROFS if read_only else errno.EACCES
        own = Path(os.path.abspath(dst))
        where = "" if folder in (own, own.parent) else f" ({folder})"
        raise OutputError(f"{dst}: cannot write: {os.strerror(code)}{where}", code)
    st = os.statvfs(folder)
    if st.f_blocks and (st.f_bfree if os.geteuid() == 0 else st.f_bavail) == 0:  # f_blocks 0: /proc-like
        raise OutputError(f"{dst}: cannot write: no space left on the device", errno.ENOSPC)
    try:  # a real file creation: catches what access(2) cannot see (ACLs, NFS, /proc-like file systems)
        probe = tempfile.mkstemp(prefix=f".{dst.name or 'output'}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        hide = (exc.filename,) if exc.filename else ()  # the probe's own name means nothing to the user
        raise output_error(dst, exc, hide) from None
    os.close(probe[0])
    os.unlink(probe[1])


def disk_full(path: str | os.PathLike, margin: int = 1 << 20) -> bool:
    """Whether the file system holding ``path`` has less than ``margin`` bytes left (False if unknown)."""
    try:
        st = os.statvfs(_nearest_existing(Path(path)))
    except OSError:
        return False
    free = st.f_bfree if os.geteuid() == 0 else st.f_bavail
    return bool(st.f_blocks) and free * st.f_frsize < margin


def check_output_file(dst: str | os.PathLike) -> None:
    """Raise ``OutputError`` naming ``dst`` now if ``atomic_path(dst)`` could not write it later.

    Nothing is created: a missing parent folder is checked through its nearest existing ancestor.
    """
    dst = Path(dst)
    if dst.is_dir():
        raise OutputError(f"{dst}: is a folder; give a file name", errno.EISDIR)
    if _in_place(dst):
        if not os.access(dst, os.W_OK):
            raise OutputError(f"{dst}: cannot write: {os.strerror(errno.EACCES)}", errno.EACCES)
        return
    _check_folder_writable(_nearest_existing(_target(dst).parent), dst)


def check_output_dir(dst: str | os.PathLike, beside: bool = False) -> None:
    """Raise ``OutputError`` naming ``dst`` now if the folder ``dst`` could not be created or written into.

    ``beside``: the output is built in a sibling folder and renamed into place (its parent must be writable).
    """
    dst = Path(dst)
    if os.path.lexists(dst) and not dst.is_dir():
        raise OutputError(f"{dst}: exists and is not a folder", errno.ENOTDIR)
    target = dst.parent if beside or not dst.is_dir() else dst
    _check_folder_writable(_nearest_existing(target), dst)


def write_bytes_atomic(dst: str | os.PathLike, data: bytes) -> None:
    with atomic_path(dst) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(dst: str | os.PathLike, text: str) -> None:
    write_bytes_atomic(dst, text.encode("utf-8"))


def finite_json(obj: Any) -> Any:
    """``obj`` with every NaN / ±inf float replaced by None: JSON has no such numbers (json.dumps would write
    the non-standard ``NaN`` / ``Infinity`` tokens that strict readers refuse)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(v) for v in obj]
    return obj


def write_json_atomic(dst: str | os.PathLike, obj: Any) -> None:
    """``obj`` as indented JSON; non-finite floats are written as null (``finite_json``)."""
    write_text_atomic(dst, json.dumps(finite_json(obj), indent=2, sort_keys=False, allow_nan=False) + "\n")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks (checkpoints can be hundreds of MB)."""
    with open(path, "rb") as fh:
        return sha256_stream(fh, chunk)


def sha256_stream(fh, chunk: int = 1 << 20) -> str:
    """Hex sha256 of what is left to read in the binary file object ``fh``, read in chunks."""
    digest = hashlib.sha256()
    while block := fh.read(chunk):
        digest.update(block)
    return digest.hexdigest()


# -- one writer per output ---------------------------------------------------------------------------------------
# A command that writes a result, a prediction stream, a mask folder or a run folder first takes an advisory lock
# (flock) on ``.<name>.lock`` beside it, holding its pid; a second writer of the same output stops at once naming
# that pid. The kernel releases the lock when its holder exits, however it ends (a lock file a killed writer
# leaves is taken over by the next one); the holder removes the file when its command ends (``release_outputs``,
# called by cli.py). Under ``paddle.distributed.launch`` every process locks ``.<name>.rank<R>.lock`` for its rank R,
# so a second launch of the same command stops rank by rank. Outputs are compared as resolved paths: ``./s.jsonl``
# and ``s.jsonl`` are one output.


class OutputLocked(ShuntedError):
    """Another process holds the output's lock."""


_HELD: dict[Path, int] = {}  # lock file -> descriptor holding its flock


def lock_path(output: str | os.PathLike) -> Path:
    """The lock file of ``output`` (a file or a folder): ``.<name>.lock`` beside it (resolved)."""
    real = Path(os.path.realpath(output))
    rank = os.environ.get("PADDLE_TRAINER_ID", "0") if "PADDLE_TRAINERS_NUM" in os.environ else "0"
    return real.parent / (f".{real.name}.lock" if rank in ("", "0") else f".{real.name}.rank{rank}.lock")


def lock_output(output: str | os.PathLike | None, what: str | None = None) -> None:
    """Hold ``output``'s lock until ``release_outputs`` (or the process's end); ``OutputLocked`` naming the
    holder's pid if another process has it. Where no lock file can be made (the folder is missing or read-only)
    the output cannot be written either, and the command's own checks say so: nothing is locked then."""
    if output is None:
        return
    import fcntl

    path = lock_path(output)
    if path in _HELD:
        return
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
        except OSError:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
            os.close(fd)
            raise OutputLocked(
                f"{_shown(what, output)}: another shunted process (pid {holder}) is writing it; wait for it to "
                "end or choose another output"
            ) from None
        except OSError:
            os.close(fd)
            return
        try:
            same = os.fstat(fd).st_ino == os.stat(path, follow_symlinks=False).st_ino
        except OSError:
            same = False
        if same:
            break
        os.close(fd)  # its holder removed it between our open and our lock: lock the new one
    with contextlib.suppress(OSError):  # a full disk: the lock holds without the pid in it
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _HELD[path] = fd


def release_outputs() -> None:
    """Remove and release the lock files this process holds (a command's end)."""
    while _HELD:
        path, fd = _HELD.popitem()
        with contextlib.suppress(OSError):
            os.unlink(path)  # while still locked: a waiting writer finds the file gone and makes its own
        os.close(fd)


# -- inputs ------------------------------------------------------------------------------------------------------
# Every file a command reads that is not an image or weights (label and class-name lists, configs, palettes, image
# lists, our own JSON records) is opened here: regular files only, since a named pipe blocks its reader forever and
# /dev/zero never ends, and text read whole is bounded (a label list of several million lines is ~100 MB).
KiB, MiB = 1 << 10, 1 << 20
TEXT_LIMITS = {  # kind: (bytes, what it is, for the message)
    "config": (4 * MiB, "a YAML config"),
    "names": (16 * MiB, "a class-name list"),  # ImageNet-21k's 21,841 names are 0.4 MB
    "palette": (1 * MiB, "a palette"),
    "list": (512 * MiB, "a label or image list"),  # ~100 bytes a line: 5 million lines
    "record": (64 * MiB, "a JSON record"),  # written by us: sidecars, summaries, manifests, metas
}


class InputError(ShuntedError):
    """A file the user named cannot be read as the input it should be (not a regular file, too large)."""


def _kind_of(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a file"


def not_regular(
    path: str | os.PathLike, mode: int, what: str | None = None, hint: str = "give a file"
) -> str:
    """The one-line refusal of ``path`` (which exists) when it is not a regular file (a folder, a pipe, a device)."""
    if stat.S_ISDIR(mode):
        return f"{_shown(what, path)}: is a folder; {hint}"
    return f"{_shown(what, path)}: is {_kind_of(mode)}, not a regular file; {hint}"


def open_input(path: str | os.PathLike, what: str | None = None, kind: str | None = None):
    """``path`` opened for reading in binary mode, if it is a regular file (of at most ``TEXT_LIMITS[kind]`` bytes;
    no bound for ``kind`` None: a stream read line by line).

    Opened without blocking (a FIFO without writer would block ``open`` itself), then checked on the open file
    (no race between the check and the read). ``what`` is the flag shown before the path (``--labels``). A missing
    or unreadable file raises the OSError (``cli.py`` names its file); the rest is an ``InputError``."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InputError(not_regular(path, st.st_mode, what))
        if kind is not None and st.st_size > TEXT_LIMITS[kind][0]:
            raise InputError(_too_large(path, what, kind, st.st_size))
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_input_text(
    path: str | os.PathLike,
    kind: str,
    what: str | None = None,
    encoding: str = "utf-8",
    errors: str = "strict",
) -> str:
    """The text of ``path`` (``open_input`` rules; ``kind`` is a key of ``TEXT_LIMITS``). UnicodeDecodeError is the
    caller's to word (it knows what the file should hold)."""
    limit = TEXT_LIMITS[kind][0]
    with open_input(path, what, kind) as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:  # grew since it was opened
        raise InputError(_too_large(path, what, kind, len(data)))
    return data.decode(encoding, errors)


def _too_large(path: str | os.PathLike, what: str | None, kind: str, size: int) -> str:
    limit, noun = TEXT_LIMITS[kind]
    return f"{_shown(what, path)}: {_size(size)}, more than {noun} may hold ({_size(limit)})"


def _size(n: int) -> str:
    return f"{n / MiB:,.0f} MB" if n >= MiB else f"{n / KiB:.0f} kB" if n >= KiB else f"{n} bytes"


# The file names read as images: the data lister (shunted/data/datasets.py), the export's check images, and the
# output check below (an output with such a name inside a data folder would be read as data next time).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp", ".gif")


def _same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether ``a`` and ``b`` are one file: the same inode (hard links, symbolic links) or, for a path that
    does not exist yet, the same real path (a dangling link to the other, ``x`` and ``./d/../x``)."""
    try:
        if os.path.samefile(a, b):
            return True
    except OSError:
        pass
    return os.path.realpath(a) == os.path.realpath(b)


def _inside(path: str | os.PathLike, folder: str | os.PathLike) -> bool:
    """Whether ``path`` is in ``folder`` or below it (symbolic links resolved)."""
    real, top = Path(os.path.realpath(path)), Path(os.path.realpath(folder))
    return real != top and top in real.parents


def _shown(what: str | None, path: str | os.PathLike) -> str:
    return f"{what} {os.fsdecode(path)}" if what else os.fsdecode(path)


Named = tuple[str | None, str | os.PathLike | None]


def check_outputs(
    outputs: list[Named],
    inputs: list[Named] = (),
    data: list[Named] = (),
    folders: list[Named] = (),
) -> None:
    """Refuse, before any work, outputs that would replace what the command reads or one another.

    Each argument is a list of ``(what, path)`` pairs (``what`` is the flag the user gave, e.g. ``--output``,
    or None; a None path is skipped). Raises ``OutputError`` with one line naming the user's paths when:

    - an output is the same file as an input (same inode or real path: a hard link, a symbolic link, the
      sidecar ``DST.json`` of ``shunted convert`` being its SRC, ``--output`` being ``--weights``);
    - two outputs are the same file (``--output r.json --save-logits r.json``: one would be lost);
    - an output is, or would go, inside a ``data`` folder as a file the data lister takes for an image (an
      existing image is overwritten; a new one is evaluated next time). Other names there (``r.json`` beside
      the images) are allowed: the lister ignores them (``IMAGE_EXTENSIONS``), and
      ``--output result.json`` in the folder being evaluated is a normal thing to do;
    - an input or a data folder is, or is inside, one of ``folders``: output folders the command replaces as
      a whole (``export --output``).
    """
    outputs = [(w, p) for w, p in outputs if p is not None]
    for i, (what, path) in enumerate(outputs):
        for in_what, in_path in inputs:
            if in_path is not None and _same_file(path, in_path):
                raise OutputError(
                    f"{_shown(what, path)}: is the same file as the input {_shown(in_what, in_path)}; writing it would "
                    "destroy the input: choose another output",
                    errno.EEXIST,
                )
        for other_what, other in outputs[i + 1 :]:
            if _same_file(path, other):
                raise OutputError(
                    f"{_shown(what, path)} and {_shown(other_what, other)} are the same file: one output "
                    "would be lost; give two different files",
                    errno.EEXIST,
                )
        for data_what, folder in data:
            if folder is None or not _inside(path, folder):
                continue
            if Path(path).suffix.lower() in IMAGE_EXTENSIONS:
                existing = "is an image in" if os.path.lexists(path) else "would be an image in"
                raise OutputError(
                    f"{_shown(what, path)}: {existing} the data folder {_shown(data_what, folder)}; "
                    "write it outside the data",
                    errno.EEXIST,
                )
    for what, folder in folders:
        if folder is None:
            continue
        for in_what, in_path in [*inputs, *data]:
            if in_path is not None and (_same_file(in_path, folder) or _inside(in_path, folder)):
                raise OutputError(
                    f"{_shown(what, folder)}: holds the input {_shown(in_what, in_path)}; writing the "
                    "output there could replace it: give another folder",
                    errno.EEXIST,
                )
