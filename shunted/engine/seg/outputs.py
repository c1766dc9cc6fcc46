"""Output folders of ``seg-eval --save-masks`` and ``seg-predict --output-dir``: never touch what we did not write.

The rule is ``shunted export``'s (shunted/engine/export.py): the folder must be new, empty, or a previous output of
these commands — a folder holding only a ``seg_outputs.json`` manifest of ours and the files it lists, each as we
wrote it (the manifest records every file's size and SHA-256: a file changed since, e.g. a mask the user edited,
is refused by name before any work, never replaced or deleted). Anything else is refused before any work, naming
what is there.

A run writes its files into ``DIR/.shunted-partial/`` (every file atomically, shunted/fileio.py); ``finish``
then moves them into ``DIR`` (one rename each, Ctrl-C deferred until done), writes the new manifest, and removes
the previous run's files this run did not rewrite, by name. Until then ``DIR`` holds the previous run whole,
manifest included: a run that fails or is interrupted calls ``abort()``, which removes the partial folder (and the
folders this run made); a run killed outright leaves the partial folder, which the next run removes. Nothing else
is ever deleted. Several processes (``world``): rank 0 makes the partial folder, every rank writes its files into
it, rank 0 finishes.

``check_predict_outputs`` and ``write_predictions``: the checks before, and the run into the folder, that
``seg-predict`` and ``det-predict`` share.
"""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path

from ...errors import ShuntedError
from ...fileio import (
    InputError,
    OutputError,
    atomic_path,
    check_output_dir,
    check_outputs,
    read_input_text,
    sha256_file,
    write_json_atomic,
)

MANIFEST = "seg_outputs.json"
PARTIAL = ".shunted-partial"
WRITERS = ("shunted seg-eval", "shunted seg-predict", "shunted det-predict")


def _previous(folder: Path, manifest: str = MANIFEST) -> dict | None:
    """The manifest of a previous output of ours in ``folder`` (its ``files`` checked), or None."""
    path = folder / manifest
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
    return record


def _is_our_temporary(name: str, ours: set[str]) -> bool:
    """``.NAME.XXXXXXXX.tmp`` left by an interrupted atomic write of one of our files (shunted/fileio.py)."""
    m = re.fullmatch(r"\.(.+)\.[A-Za-z0-9_]+\.tmp", name)
    return bool(m) and m.group(1) in ours


def _regular(path: Path) -> bool:
    return path.is_file() and not path.is_symlink()


@contextmanager
def _deferred_interrupts():
    """Ctrl-C / SIGTERM held until the block is done (main thread only), then raised as usual."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    kinds = (signal.SIGINT, signal.SIGTERM)
    old = {k: signal.signal(k, lambda signum, frame: caught.append(signum)) for k in kinds}
    try:
        yield
    finally:
        for k, handler in old.items():
            signal.signal(k, handler)
        if caught:
            signal.raise_signal(caught[0])  # now, with the usual handler


class OutputFolder:
    """One output folder of a segmentation command (see the module docstring).

    ``check()`` before the work; ``begin(names)`` once the file names are known; ``write_image(name, image)`` for
    each file; ``finish(record)`` at the end, or ``abort()`` on failure.
    """

    def __init__(self, folder: str | os.PathLike, flag: str, command: str, manifest: str = MANIFEST):
        self.manifest = manifest  # det-predict's is det_outputs.json
        self.given = str(folder)
        self.folder = Path(folder)
        self.partial = self.folder / PARTIAL
        self.flag = flag
        self.command = command
        self.previous: set[str] = set()
        self.names: list[str] = []
        self.made: list[Path] = []  # the folders this run creates (missing at check()), deepest first

    def _shown(self) -> str:
        return f"{self.flag} {self.given}"

    def check(self) -> None:
        """Raise (one line) unless the folder is new, empty or an unchanged previous output of ours, and
        writable."""
        folder = self.folder
        if os.path.lexists(folder) and not folder.is_dir():
            raise OutputError(f"{self._shown()}: exists and is not a folder")
        if folder.is_dir():
            record = _previous(folder, self.manifest)
            ours = set(record["files"]) if record else set()
            names = sorted(os.listdir(folder))
            allowed = ours | ({self.manifest} if record is not None else set())
            foreign = [
                n
                for n in names
                if not (
                    (n in allowed and _regular(folder / n))
                    or _is_our_temporary(n, allowed)
                    or (n == PARTIAL and self._partial_is_ours())
                )
            ]
            if foreign:
                shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
                raise ShuntedError(
                    f"{self._shown()}: holds files that {self.command} did not write ({shown}); "
                    "nothing was changed: give a new or empty folder"
                )
            self._check_unchanged(record)
            self.previous = ours
        check_output_dir(folder)
        made, parent = [], folder
        while not os.path.lexists(parent) and parent != parent.parent:
            made.append(parent)
            parent = parent.parent
        self.made = made

    def _check_unchanged(self, record: dict | None) -> None:
        """A file of the previous run that is not as it was written (size, SHA-256) is the user's now."""
        sums = (record or {}).get("sha256")
        if not isinstance(sums, dict):
            return  # an output of an earlier release: no checksums recorded
        for name in record["files"]:
            path = self.folder / name
            want = sums.get(name)
            if not isinstance(want, dict) or not path.exists():
                continue
            if path.stat().st_size != want.get("size") or sha256_file(path) != want.get("sha256"):
                raise ShuntedError(
                    f"{self._shown()}: {name} changed since {record['written_by']} wrote it; nothing was changed: "
                    "move it out of the folder (or give a new folder) to keep your edit"
                )

    def _partial_is_ours(self) -> bool:
        """A partial folder left by a killed run holds only files (no folders, no links)."""
        try:
            return (
                self.partial.is_dir()
                and not self.partial.is_symlink()
                and all(_regular(self.partial / n) for n in os.listdir(self.partial))
            )
        except OSError:
            return False

    def begin(self, names: Iterable[str], world=None) -> None:
        """Record this run's file names and make the partial folder (rank 0; the others wait for it)."""
        self.names = list(names)
        if world is None or world.main:
            self._remove_partial()
            self.partial.mkdir(parents=True)
        if world is not None:
            world.barrier()

    def path(self, name: str) -> Path:
        return self.partial / name

    def write_image(self, name: str, image, **save_args) -> None:
        """``image`` (PIL) saved atomically as ``name`` (format from the name's extension)."""
        fmt = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}[Path(name).suffix.lower()]
        with atomic_path(self.partial / name) as tmp:
            image.save(tmp, format=fmt, **save_args)

    def finish(self, record: dict) -> None:
        """Move this run's files in, write the manifest (with every file's size and SHA-256), then remove the
        previous run's files this run did not rewrite, by name. Ctrl-C waits until this is done."""
        sums = {}
        for name in self.names:
            path = self.partial / name
            sums[name] = {"size": path.stat().st_size, "sha256": sha256_file(path)}
        keep = set(self.names) | {self.manifest}
        with _deferred_interrupts():
            for name in self.names:
                os.replace(self.partial / name, self.folder / name)
            self._write_manifest(sorted(self.names), {"complete": True, **record, "sha256": sums})
            for name in sorted(os.listdir(self.folder)):
                path = self.folder / name
                stale = (name in self.previous and name not in keep) or _is_our_temporary(
                    name, self.previous | keep
                )
                if stale and _regular(path):
                    path.unlink()
            self._remove_partial()

    def abort(self) -> None:
        """After a failure or Ctrl-C between ``begin`` and ``finish``: remove the partial folder and the folders
        this run created (the previous run stays whole). Never raises."""
        try:
            self._remove_partial()
            for folder in self.made:  # deepest first; only while empty
                folder.rmdir()
        except OSError:
            pass

    def _remove_partial(self) -> None:
        if not self.partial.is_dir() or self.partial.is_symlink():
            return
        for name in os.listdir(self.partial):
            if _regular(self.partial / name):
                (self.partial / name).unlink()
        self.partial.rmdir()

    def _write_manifest(self, files: list[str], extra: dict) -> None:
        write_json_atomic(self.folder / self.manifest, {"written_by": self.command, "files": files, **extra})


def output_names(paths: list[Path], names_of, flag: str, manifest: str = MANIFEST) -> list[list[str]]:
    """Per input path, the file names ``names_of(path)`` it writes; an output name that two inputs would write
    (``a/x.jpg`` and ``b/x.png``, or ``x.jpg``'s ``x_color.png`` and ``x_color.jpg``'s ``x_color.png``) is an
    error naming both inputs."""
    owner: dict[str, Path] = {}
    out = []
    for p in paths:
        names = list(names_of(p))
        for name in names:
            if name in (manifest, PARTIAL):
                raise ShuntedError(f"{p}: its output {name} would replace the folder's manifest")
            if name in owner and owner[name] != p:
                raise ShuntedError(
                    f"{flag}: {owner[name]} and {p} would both write {name}: give images with different file names"
                )
            owner[name] = p
        out.append(names)
    return out


def check_predict_outputs(cfg, command: str, names_of, written: str, manifest: str = MANIFEST):
    """Before the work of ``seg-predict`` / ``det-predict`` (``cfg``: its config, with ``inputs``,
    ``output_dir``, ``weights`` and ``class_names``): the inputs listed (a file given twice, itself and its folder,
    once), no input or given file written over, the output folder allowed (not inside an input folder, nothing
    else in it), every output name distinct. ``written``: what the outputs are called in the error ("outputs",
    "pictures"). Returns (image paths, the ``OutputFolder``, per path its file names)."""
    from ...data.inputs import expand_inputs

    paths = list(dict.fromkeys(expand_inputs(cfg.inputs)))
    check_outputs(
        [],
        [("--weights", cfg.weights), ("--class-names", cfg.class_names), *((None, p) for p in cfg.inputs)],
        folders=[("--output-dir", cfg.output_dir)],
    )
    for item in cfg.inputs:
        if os.path.isdir(item) and os.path.realpath(item) in map(
            str, Path(os.path.realpath(cfg.output_dir)).parents
        ):
            raise ShuntedError(
                f"--output-dir {cfg.output_dir}: is inside the input folder {item}; its {written} would be read as "
                "images next time: write them outside"
            )
    folder = OutputFolder(cfg.output_dir, "--output-dir", command, manifest=manifest)
    folder.check()
    return paths, folder, output_names(paths, names_of, "--output-dir", manifest=manifest)


def write_predictions(
    folder: OutputFolder, names, source, acc, opened, world, progress: bool, settings: dict
):
    """The inference loop of ``seg-predict`` / ``det-predict`` into ``folder`` (``names``: per image its files):
    each process runs its share of ``source`` through ``acc`` (which writes the files), rank 0 gathers the
    records, writes the manifest (the model, ``settings``, the records, timing) and returns it (the others None).
    A failure or Ctrl-C leaves the folder as it was."""
    from ..infer import gather_parts, run_inference

    folder.begin([n for group in names for n in group], world)
    start = time.perf_counter()
    try:
        parts = gather_parts(run_inference(source, acc, opened.predictor, progress and world.main), world)
    except BaseException:  # an unreadable image, a full disk, Ctrl-C: no partial output
        folder.abort()
        raise
    if parts is None:
        return None
    records = [r for p in parts for r in p.state]
    wall = time.perf_counter() - start
    manifest = {
        "model": opened.model_name,
        "weights": {"path": opened.weights, "sha256": opened.weights_sha256},
        "backend": opened.backend,
        "num_classes": opened.num_classes,
        **settings,
        "world_size": world.size,
        "images": records,
        "wall_time_s": round(wall, 3),
        "throughput_img_s": round(len(records) / wall, 3) if wall else None,
    }
    try:
        folder.finish(manifest)
    except BaseException:
        folder.abort()
        raise
    return manifest
