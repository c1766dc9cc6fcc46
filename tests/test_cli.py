"""The command line: every subcommand is reachable, works without torch, and errors are one line."""

import subprocess
import sys

import pytest

from shunted.cli import COMMANDS, main


def _run(args, env):
    return subprocess.run(
        [sys.executable, "-m", "shunted", *args], env=env, capture_output=True, text=True, timeout=300
    )


def test_help_lists_every_subcommand_without_torch(no_torch_env):
    probe = subprocess.run(
        [sys.executable, "-c", "import torch"], env=no_torch_env, capture_output=True, text=True
    )
    assert probe.returncode != 0
    run = _run(["--help"], no_torch_env)
    assert run.returncode == 0, run.stderr
    for name in COMMANDS:
        assert f"    {name} " in run.stdout
    assert run.stderr == ""  # Paddle's ccache warning is filtered by the package


def test_package_never_imports_torch(no_torch_env):
    """Import every module of the package (torch absent) and build/run a model."""
    code = (
        "import importlib, pkgutil, shunted, sys\n"
        "for m in pkgutil.walk_packages(shunted.__path__, 'shunted.'):\n"
        "    if not m.name.endswith('__main__'):\n"
        "        importlib.import_module(m.name)\n"
        "import paddle\n"
        "out = shunted.create_model('shunted_t', num_classes=3)(paddle.zeros([1, 3, 64, 64]))\n"
        "assert out.shape == [1, 3] and 'torch' not in sys.modules\n"
        "print('ok')\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], env=no_torch_env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr


@pytest.mark.parametrize("name", COMMANDS)
def test_every_subcommand_has_help(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([name, "--help"])
    assert exit_info.value.code == 0
    assert "usage: shunted " + name in capsys.readouterr().out


def test_user_errors_are_one_line_without_traceback(tmp_path, repo_root):
    missing = tmp_path / "nope.pth"
    image = repo_root / "shunted" / "assets" / "cifar10-demo" / "cat" / "0000.jpg"
    run = _run(["predict", "--model", "shunted_t", "--weights", str(missing), str(image)], None)
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and str(missing) in lines[0] and "Traceback" not in run.stderr
    debug = _run(
        ["--debug", "predict", "--model", "shunted_t", "--weights", str(missing), str(tmp_path)], None
    )
    assert debug.returncode == 2 and "Traceback" in debug.stderr
