"""Imports cost what they use: the command line's ``--help`` and the PIL/numpy-only modules do not load Paddle.

Loader workers import the transforms; ``shunted --help`` builds every subcommand's parser. Each check runs in a
fresh interpreter, since this test process has Paddle loaded already.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

LIGHT_MODULES = [
    "shunted",
    "shunted.cli",
    "shunted.config",
    "shunted.errors",
    "shunted.fileio",
    "shunted.models",
    "shunted.models.registry",
    "shunted.models.det_boxes",
    "shunted.data",
    "shunted.data.transforms",
    "shunted.data.classnames",
    "shunted.data.randaugment",
    "shunted.data.det_transforms",
]


def _loaded_after(code: str) -> dict:
    probe = (
        code
        + "\nimport json, sys\nprint(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('paddle', 'torch'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("module", LIGHT_MODULES)
def test_light_module_imports_without_paddle(module):
    assert _loaded_after(f"import {module}") == []


def test_help_parser_does_not_load_paddle():
    assert _loaded_after("import shunted.cli\nshunted.cli.build_parser()") == []


def test_create_model_still_reachable_from_the_package():
    """The lazy attribute resolves (and is what loads Paddle)."""
    loaded = _loaded_after("import shunted\nshunted.create_model")
    assert "paddle" in loaded


def test_unknown_attribute_is_an_attribute_error():
    import shunted

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        shunted.nope  # noqa: B018
