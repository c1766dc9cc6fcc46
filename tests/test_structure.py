"""Issue 19's structural limits, checked on the source: commands stay thin, engine entry points take few parameters.

A command parses, builds the config, calls one engine function and prints: no function in ``shunted/commands/``
longer than 80 lines. An engine entry point (a public function or method of ``shunted/engine/``) takes at most 8
parameters (besides ``self``); more means a config object is missing.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "shunted"
MAX_COMMAND_LINES = 80
MAX_ENGINE_PARAMETERS = 8


def _functions(folder: Path):
    for path in sorted(folder.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield path.relative_to(folder), node


def _parameters(node: ast.FunctionDef) -> int:
    args = node.args
    names = [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs]
    return len([n for n in names if n not in ("self", "cls")])


def long_command_functions(folder: Path = PACKAGE / "commands") -> list[str]:
    return [
        f"{path}:{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for path, node in _functions(folder)
        if node.end_lineno - node.lineno + 1 > MAX_COMMAND_LINES
    ]


def wide_engine_entry_points(folder: Path = PACKAGE / "engine") -> list[str]:
    return [
        f"{path}:{node.name} ({_parameters(node)} parameters)"
        for path, node in _functions(folder)
        if not node.name.startswith("_") and _parameters(node) > MAX_ENGINE_PARAMETERS
    ]


def test_commands_are_thin():
    assert long_command_functions() == []


def test_engine_entry_points_take_few_parameters():
    assert wide_engine_entry_points() == []


@pytest.mark.parametrize(
    "source, finder",
    [
        ("def run(args):\n" + "    x = 1\n" * 85, long_command_functions),
        ("def evaluate(a, b, c, d, e, f, g, h, i):\n    pass\n", wide_engine_entry_points),
    ],
)
def test_the_checks_catch_a_violation(tmp_path, source, finder):
    # the mutation: a 86-line command function, a 9-parameter entry point
    (tmp_path / "m.py").write_text(source)
    assert len(finder(tmp_path)) == 1
