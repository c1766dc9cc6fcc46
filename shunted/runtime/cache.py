"""The start-up cache: exports (and OpenVINO's compiled blobs) kept between runs, so a process pays them once.

Layout: ``$XDG_CACHE_HOME/shunted`` (``~/.cache/shunted`` when unset or not absolute) holds ``exports/KEY/``, one
folder per entry, where KEY is the SHA-256 of the entry's key (a JSON object: the weights' SHA-256, the model,
the input size, the format, the exporter's and runtimes' versions, a digest of the code that builds the graph;
``shunted/engine/session.py`` makes it). An entry holds the files its builder wrote and ``entry.json``: the key
itself and the size and SHA-256 of every file. OpenVINO writes its compiled blobs into the entry's ``openvino/``
folder (its ``CACHE_DIR``; OpenVINO keys and checks them itself and recompiles a blob it cannot read). A second
kind of entry, a *shortcut* (``opened.json``), records which export a weights file (by its SHA-256) opens to and
what the opened model is (classes, preprocessing), so that a warm start neither builds the model nor imports
Paddle (``session.py``); it is checked like any entry, and the export it names is checked again when it is used.

Trust: an entry is used only when its ``entry.json`` holds exactly the key asked for (else it is *foreign*: a hash
collision, a hand-made folder) and every listed file has its recorded size and SHA-256 (else it is *corrupt*: a
torn write, a disk error, an edit). Either is rebuilt, never used. Writes are atomic: an entry is built in a
temporary sibling folder and renamed into place in one step, so a reader sees no entry or a whole one; when two
processes build the same entry at once, the first rename wins and the other's copy is discarded (both are equal).
A failed build leaves nothing behind. Only folders this module names (``exports/…``, ``.tmp-…``) are ever removed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from ..fileio import sha256_file

ENTRY_FILE = "entry.json"
OPENVINO_DIR = "openvino"  # OpenVINO's CACHE_DIR inside an entry (not listed: OpenVINO checks its own blobs)
FORMAT = 1  # of entry.json


def cache_root() -> Path:
    """``$XDG_CACHE_HOME/shunted``, or ``~/.cache/shunted`` (the XDG rule: a relative XDG_CACHE_HOME is ignored)."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):
        base = os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "shunted"


def key_digest(key: dict) -> str:
    """The entry folder name of ``key``: SHA-256 of its canonical JSON."""
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def entry_problem(folder: Path, key: dict) -> str | None:
    """Why the entry ``folder`` cannot be used for ``key`` (missing, foreign, corrupt), or None when it can."""
    try:
        meta = json.loads((folder / ENTRY_FILE).read_text())
    except FileNotFoundError:
        return "missing"
    except (OSError, ValueError):
        return "corrupt (unreadable entry.json)"
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("key") != key:
        return "foreign (its key differs)"
    files = meta.get("files")
    if not isinstance(files, dict) or not files:
        return "corrupt (no file list)"
    for name, recorded in files.items():
        if not (isinstance(recorded, list) and len(recorded) == 2):
            return "corrupt (a malformed file record)"
        size, sha = recorded
        path = folder / name
        if "/" in name or name in ("", ".", "..") or path.is_symlink() or not path.is_file():
            return f"corrupt ({name} is missing)"
        if path.stat().st_size != size or sha256_file(path) != sha:
            return f"corrupt ({name} differs from what was written)"
    return None


def _write_entry_file(folder: Path, key: dict) -> None:
    files = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.name != ENTRY_FILE:
            files[path.name] = [path.stat().st_size, sha256_file(path)]
            with open(path, "rb") as f:
                os.fsync(f.fileno())
    text = json.dumps({"format": FORMAT, "key": key, "files": files}, indent=1, sort_keys=True) + "\n"
    with open(folder / ENTRY_FILE, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def _entry_folder(key: dict, root: Path | None) -> Path:
    """Where the entry of ``key`` lives (whether or not it is there)."""
    return (root or cache_root()) / "exports" / key_digest(key)


def found_folder(key: dict, root: Path | None = None) -> Path | None:
    """The entry folder of ``key`` when it is there and good (never built here), else None."""
    folder = _entry_folder(key, root)
    return folder if entry_problem(folder, key) is None else None


def cached_folder(
    key: dict,
    build: Callable[[Path], None],
    root: Path | None = None,
    log: Callable[[str], None] | None = None,
) -> tuple[Path, bool]:
    """(the entry folder of ``key``, whether it was found) — built with ``build(folder)`` when missing or bad.

    ``build`` writes the entry's files into the (empty, temporary) folder it is given; any exception it raises
    propagates and nothing is kept. ``log`` hears why an existing entry was rebuilt.
    """
    folder = _entry_folder(key, root)
    exports = folder.parent
    problem = entry_problem(folder, key)
    if problem is None:
        return folder, True
    if problem != "missing" and log is not None:
        log(f"cache entry {folder} is {problem}: rebuilding it")
    exports.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=exports))
    try:
        build(tmp)
        _write_entry_file(tmp, key)
        _install(tmp, folder, key)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return folder, False


def _install(tmp: Path, folder: Path, key: dict) -> None:
    """Rename ``tmp`` to ``folder``; a bad entry there is moved aside first, a good one (a concurrent writer's) kept."""
    for _ in range(3):
        try:
            os.rename(tmp, folder)  # atomic; fails when a non-empty folder is there
            return
        except OSError:
            if entry_problem(folder, key) is None:
                return  # another process installed the same entry meanwhile: ours is discarded
        # a bad entry: move it aside (atomic), then delete it; our rename is retried
        aside = Path(tempfile.mkdtemp(prefix=".tmp-", dir=folder.parent))
        try:
            os.rename(folder, aside / "old")
        except OSError:
            pass  # someone else moved or replaced it meanwhile
        shutil.rmtree(aside, ignore_errors=True)
    raise OSError(f"cannot install the cache entry {folder}")


def openvino_cache_dir(folder: Path) -> Path:
    """OpenVINO's ``CACHE_DIR`` for the compiled blobs of the export in the entry ``folder``."""
    return folder / OPENVINO_DIR
