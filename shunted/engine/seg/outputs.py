"""Output folders of ``seg-eval --save-masks`` and ``seg-predict --output-dir``: never touch what we did not write.

The rule is ``shunted export``'s (shunted/engine/export.py): the folder must be new, empty, or a previous output of
these commands — a folder holding only a ``seg_outputs.json`` manifest of ours and the files it lists. Anything else
is refused before any work, naming what is there. Every file is written atomically (shunted/fileio.py). The
manifest is written first listing the files of the previous run and of this one (so a run killed midway leaves a
folder the next run still recognises), and again at the end listing exactly this run's files; the previous run's
files that this run did not rewrite are then removed by name. A run that fails or is interrupted (Ctrl-C) calls
``abort()``: the files it added and the folders it made are removed, a previous run's files stay. Nothing else is
ever deleted.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from pathlib import Path

from ...errors import ShuntedError
from ...fileio import (
    InputError,
    OutputError,
    atomic_path,
    check_output_dir,
    read_input_text,
    write_json_atomic,
)

MANIFEST = "seg_outputs.json"
WRITERS = ("shunted seg-eval", "shunted seg-predict")


def _previous_files(folder: Path) -> set[str] | None:
    """The files a previous output of ours in ``folder`` lists, or None when ``folder`` holds no such manifest."""
    path = folder / MANIFEST
    if not path.is_file() or path.is_symlink():
        return None
    try:
        record = json.loads(read_input_text(path, "record"))
    except (OSError, InputError, UnicodeDecodeError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("written_by") not in WRITERS:
        return None
    files = record.get("files")
    if not isinstance(files, list) or not all(isinstance(f, str) and f and "/" not in f for f in files):
        return None
    return set(files)


def _is_our_temporary(name: str, ours: set[str]) -> bool:
    """``.NAME.XXXXXXXX.tmp`` left by an interrupted atomic write of one of our files (shunted/fileio.py)."""
    m = re.fullmatch(r"\.(.+)\.[A-Za-z0-9_]+\.tmp", name)
    return bool(m) and m.group(1) in ours


class OutputFolder:
    """One output folder of a segmentation command (see the module docstring).

    ``check()`` before the work; ``begin(names)`` once the file names are known; ``path(name)`` for each file
    (write it with ``atomic_path``); ``finish(record)`` at the end.
    """

    def __init__(self, folder: str | os.PathLike, flag: str, command: str):
        self.given = str(folder)
        self.folder = Path(folder)
        self.flag = flag
        self.command = command
        self.previous: set[str] = set()
        self.names: list[str] = []
        self.made: list[Path] = []  # the folders this run creates (missing at check()), deepest first

    def _shown(self) -> str:
        return f"{self.flag} {self.given}"

    def check(self) -> None:
        """Raise (one line) unless the folder is new, empty or a previous output of ours, and writable."""
        folder = self.folder
        if os.path.lexists(folder) and not folder.is_dir():
            raise OutputError(f"{self._shown()}: exists and is not a folder")
        if folder.is_dir():
            ours = _previous_files(folder)
            names = sorted(os.listdir(folder))
            allowed = (ours or set()) | ({MANIFEST} if ours is not None else set())
            foreign = [
                n
                for n in names
                if not (
                    (n in allowed and (folder / n).is_file() and not (folder / n).is_symlink())
                    or _is_our_temporary(n, allowed)
                )
            ]
            if foreign:
                shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
                raise ShuntedError(
                    f"{self._shown()}: holds files that shunted seg-eval / seg-predict did not write ({shown}); "
                    "nothing was changed: give a new or empty folder"
                )
            self.previous = ours or set()
        check_output_dir(folder)
        made, parent = [], folder
        while not os.path.lexists(parent) and parent != parent.parent:
            made.append(parent)
            parent = parent.parent
        self.made = made

    def begin(self, names: Iterable[str]) -> None:
        """Record this run's file names (and the previous run's) in the manifest before writing any of them."""
        self.names = list(names)
        self._write_manifest(sorted(self.previous | set(self.names)), {"complete": False})

    def path(self, name: str) -> Path:
        return self.folder / name

    def write_image(self, name: str, image, **save_args) -> None:
        """``image`` (PIL) saved atomically as ``name`` in the folder (format from the name's extension)."""
        fmt = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}[Path(name).suffix.lower()]
        with atomic_path(self.folder / name) as tmp:
            image.save(tmp, format=fmt, **save_args)

    def finish(self, record: dict) -> None:
        """The final manifest (this run's files + ``record``), then the previous run's leftovers removed by name."""
        self._write_manifest(sorted(self.names), {"complete": True, **record})
        keep = set(self.names) | {MANIFEST}
        for name in sorted(os.listdir(self.folder)):
            path = self.folder / name
            stale = (name in self.previous and name not in keep) or _is_our_temporary(
                name, self.previous | keep
            )
            if stale and path.is_file() and not path.is_symlink():
                path.unlink()

    def abort(self) -> None:
        """After a failure or Ctrl-C between ``begin`` and ``finish``: remove the files of this run that no previous
        run listed (with the manifest, when there was no previous run) and the folders this run created, so a
        failed run leaves no partial output. A previous run's files stay listed. Never raises."""
        fresh = not self.previous
        ours = set(self.names) | {MANIFEST}
        try:
            for name in sorted(os.listdir(self.folder)):
                path = self.folder / name
                mine = (name in ours and name not in self.previous and (fresh or name != MANIFEST)) or (
                    _is_our_temporary(name, ours)
                )
                if mine and path.is_file() and not path.is_symlink():
                    path.unlink()
            for folder in self.made:  # deepest first; only while empty
                folder.rmdir()
        except OSError:
            pass

    def _write_manifest(self, files: list[str], extra: dict) -> None:
        write_json_atomic(self.folder / MANIFEST, {"written_by": self.command, "files": files, **extra})


def output_names(paths: list[Path], names_of, flag: str) -> list[list[str]]:
    """Per input path, the file names ``names_of(path)`` it writes; an output name that two inputs would write
    (``a/x.jpg`` and ``b/x.png``, or ``x.jpg``'s ``x_color.png`` and ``x_color.jpg``'s ``x_color.png``) is an
    error naming both inputs."""
    owner: dict[str, Path] = {}
    out = []
    for p in paths:
        names = list(names_of(p))
        for name in names:
            if name == MANIFEST:
                raise ShuntedError(f"{p}: its output {name} would replace the folder's manifest")
            if name in owner and owner[name] != p:
                raise ShuntedError(
                    f"{flag}: {owner[name]} and {p} would both write {name}: give images with different file names"
                )
            owner[name] = p
        out.append(names)
    return out
