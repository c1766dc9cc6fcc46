"""The package version (one place; the root package and the records written by commands read it)."""

__version__ = "0.1.0"
