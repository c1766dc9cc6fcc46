"""Data loaders that never raise inside: a sample that fails is marked, and the main process says why in one line.

Paddle's loader thread (``num_workers=0``) hangs the main process for good on an exception in a dataset, and a
worker process's exception surfaces as a traceback or an opaque "Blocking queue is killed". So every loader of
the engines reads through ``MarkFailures``: any exception of a sample (MemoryError too) becomes a placeholder
item the consumer recognises, and the consumer asks ``failure_of`` for the error, found by reading the sample
again in its own process (it stops the run, or is recorded under ``--skip-bad``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..errors import DataError


class LoaderOnlyFailure(DataError):
    """A sample that failed in a loader but reads fine when read again: worth stopping for, never skipped."""


class MarkFailures:
    """``dataset[key]``, or ``placeholder(index)`` when that raises anything.

    indices: the samples to serve, in order (item i is ``dataset[indices[i]]``); default all of them. Keys may be
    an index or an ``(index, ...)`` tuple (repeated augmentation); the placeholder gets the sample's index.
    """

    def __init__(self, dataset, placeholder: Callable[[int], object], indices: Sequence[int] | None = None):
        self.dataset = dataset
        self.placeholder = placeholder
        self.indices = indices

    def __len__(self) -> int:
        return len(self.dataset) if self.indices is None else len(self.indices)

    def __getitem__(self, key):
        if self.indices is not None:
            key = self.indices[int(key)]
        try:
            return self.dataset[key]
        except Exception:  # noqa: BLE001 — reported by failure_of in the main process
            return self.placeholder(int(key[0]) if isinstance(key, tuple | list) else int(key))


def failure_of(path, read: Callable[[], object]) -> DataError:
    """The one-line error of the sample at ``path`` that a loader marked: ``read()`` it again here and describe
    what it raises (a LoaderOnlyFailure if it now reads fine)."""
    try:
        read()
    except DataError as exc:
        return exc
    except MemoryError:
        return DataError(f"{path}: out of memory while preprocessing this image")
    except Exception as exc:  # noqa: BLE001 — a decoder or transform failure other than a DataError
        return DataError(f"{path}: cannot read image ({type(exc).__name__}: {exc})")
    return LoaderOnlyFailure(f"{path}: could not be read in a loader worker")
