"""User-facing errors: one line that names the file, key or flag and what is wrong."""


class ShuntedError(Exception):
    """An error the command line prints as one line (no traceback unless --debug / SHUNTED_DEBUG=1)."""


class WeightsError(ShuntedError):
    """A checkpoint does not fit the model: missing, unexpected or mis-shaped keys, non-finite values."""


class CheckpointFormatError(ShuntedError):
    """A file is not a readable checkpoint (empty, truncated, random bytes, unsupported layout)."""


class UnsafeCheckpointError(CheckpointFormatError):
    """A pickle names a global outside the allow-list; nothing from it was executed."""


class DataError(ShuntedError):
    """An image or label file cannot be used (unreadable image, bad label line, label out of range)."""
