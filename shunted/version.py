"""The package version (one place; the root package and the records written by commands read it), and the
installed versions of the libraries the records and the start-up cache's keys name."""

__version__ = "0.1.0"
PADDLE_DISTRIBUTIONS = ("paddlepaddle", "paddlepaddle-gpu")  # Paddle's CPU and GPU wheels: one is installed


def installed_version(*distributions: str) -> str | None:
    """The version of the first of ``distributions`` that is installed, read from its metadata without importing
    it; None when none is."""
    from importlib import metadata

    for name in distributions:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None
