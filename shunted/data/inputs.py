"""The one input walker of the commands that take image files, folders and lists (predict, seg-predict).

- **Folders** (``iter_folder``) are walked lazily in the order of their images' sorted relative paths
  (``a/10.png`` < ``a/2.png`` < ``b/1.jpg``, as ``sorted(rglob)`` would give), holding one sorted directory
  listing per level; symbolic links to folders are followed once: not when they lead back to a folder being
  walked (``loop -> ..``). Only regular files are images: an entry named like an image that is a FIFO, a device
  or a socket is an ``(path, error)`` item (recorded as unreadable; never opened — opening a FIFO blocks).
- **Lists** (``iter_list``, ``read_list_lines``): one path per line, relative to the list's folder or absolute;
  blank lines are skipped; a UTF-8 byte-order mark (Windows editors) is not part of the first path.
- Images are opened only through ``data/transforms.py:open_regular``, which refuses anything but a regular file
  on the opened descriptor, so a FIFO given in a list or on the command line is an unreadable image too.

Items are ``(path, error)``: ``error`` None for a file to read, else the one-line reason it cannot be.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..errors import DataError
from ..fileio import IMAGE_EXTENSIONS, not_regular, open_input

BOM = "\ufeff"


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def iter_folder(root: str | os.PathLike) -> Iterator[tuple[str, str | None]]:
    """``(path, None)`` per image file under ``root`` in sorted relative-path order, lazily; a sub-folder that
    cannot be listed, or an image name that is not a regular file, is one ``(path, error)`` item."""
    base = Path(root)
    try:
        st = base.stat()
    except OSError as exc:
        raise DataError(f"{base}: cannot list this folder ({exc.strerror})") from None
    yield from _walk(str(base), {(st.st_dev, st.st_ino)})


def _walk(folder: str, ancestors: set[tuple[int, int]]) -> Iterator[tuple[str, str | None]]:
    entries: list[tuple[str, str, bool, bool]] = []
    try:
        with os.scandir(folder) as it:
            for e in it:
                try:
                    is_dir = e.is_dir()  # follows symbolic links
                    regular = not is_dir and e.is_file()  # follows symbolic links
                except OSError:
                    is_dir, regular = False, False
                # a folder sorts as "name/": its images then sit where their relative paths sort
                entries.append((e.name + "/" if is_dir else e.name, e.name, is_dir, regular))
    except OSError as exc:
        yield folder, f"{folder}: cannot list this folder ({exc.strerror or exc})"
        return
    entries.sort()
    for _, name, is_dir, regular in entries:
        path = os.path.join(folder, name)
        if is_dir:
            try:
                st = os.stat(path)
            except OSError as exc:
                yield path, f"{path}: cannot list this folder ({exc.strerror or exc})"
                continue
            key = (st.st_dev, st.st_ino)
            if key in ancestors:  # a link back up the tree (loop -> ..)
                continue
            ancestors.add(key)
            yield from _walk(path, ancestors)
            ancestors.discard(key)
        elif is_image_file(Path(name)):
            yield path, None if regular else _not_regular(path)


def _not_regular(path: str) -> str:
    """The walker's error item for an image name that is not a regular file, worded as ``open_regular`` words it
    (shunted/fileio.py ``not_regular``: "is a named pipe (FIFO), not a regular file")."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:  # a broken link
        return f"{path}: cannot read image ({exc.strerror or exc})"
    reason = not_regular("", mode).split(": ", 1)[-1].split(";")[0]
    return f"{path}: cannot read image ({reason})"


def read_list_lines(list_file: str | os.PathLike, flag: str = "--list") -> Iterator[tuple[int, str]]:
    """``(line number, stripped line)`` per non-blank line of ``list_file``, lazily, the UTF-8 BOM removed; a
    list that cannot be opened is a one-line DataError naming ``flag``. The one reader of list files: the place
    regular files only (shunted/fileio.py ``open_input``)."""
    list_file = Path(list_file)
    try:  # the one input opener: a FIFO or a device is refused at once (read line by line: no size bound)
        raw = open_input(list_file, flag)
    except OSError as exc:
        raise DataError(f"{flag} {list_file}: cannot read ({exc.strerror or exc})") from None
    with io.TextIOWrapper(raw, encoding="utf-8", errors="surrogateescape", newline=None) as fh:
        for number, line in enumerate(fh, start=1):
            if number == 1 and line.startswith(BOM):
                line = line[1:]
            name = line.strip()
            if name:
                yield number, name


def iter_list(list_file: str | os.PathLike) -> Iterator[tuple[str, str | None]]:
    """``(path, None)`` per non-blank line of ``list_file`` (relative to its folder, or absolute), lazily."""
    base = Path(list_file).parent
    for _, name in read_list_lines(list_file):
        yield (name if os.path.isabs(name) else str(base / name)), None


def check_inputs(inputs: Iterable[str | os.PathLike] = (), lists: Iterable[str | os.PathLike] = ()) -> None:
    """Fail now, in one line, on a missing input, a folder without images or an unreadable list."""
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            if next((path for path, err in iter_folder(p) if err is None), None) is None:
                raise DataError(f"{p}: no image files in this folder")
        elif not os.path.lexists(p):
            raise DataError(f"{p}: no such file or folder")
    for lst in lists:
        if not os.path.lexists(lst):
            raise DataError(f"--list {lst}: no such file")
        try:
            with open_input(lst, "--list") as fh:  # a FIFO or a device: refused by what it is
                fh.read(1)
        except OSError as exc:
            raise DataError(f"--list {lst}: cannot read ({exc.strerror or exc})") from None


def iter_inputs(
    inputs: Iterable[str | os.PathLike] = (), lists: Iterable[str | os.PathLike] = ()
) -> Iterator[tuple[str, str | None]]:
    """The image stream: ``(path, error)`` items, positional inputs first, then each list (module docstring)."""
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            yield from iter_folder(p)
        else:
            yield str(p), None
    for lst in lists:
        yield from iter_list(lst)


def count_inputs(
    inputs: Iterable[str | os.PathLike] = (), lists: Iterable[str | os.PathLike] = ()
) -> int | None:
    """How many items the stream has, when that is cheap (files and lists; None when a folder is given)."""
    inputs = list(inputs)
    if any(Path(p).is_dir() for p in inputs):
        return None
    return len(inputs) + sum(1 for lst in lists for _ in iter_list(lst))


def expand_inputs(inputs: list[str | os.PathLike]) -> list[Path]:
    """Files as given, folders as their image files (the walk above); a missing path or a folder without images
    is an error. The whole list in memory: for small inputs (``iter_inputs`` streams)."""
    check_inputs(inputs)
    return [Path(p) for p, _ in iter_inputs(inputs)]
