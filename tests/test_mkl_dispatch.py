"""MKL_DEBUG_CPU_TYPE is set for Paddle's MKL on AMD CPUs only, and never over the user's own value."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from shunted.mkl_dispatch import VARIABLE, cpu_vendor, use_avx2_kernels_on_amd

CPUINFO = "processor\t: 0\nvendor_id\t: {vendor}\ncpu family\t: 25\n\nprocessor\t: 1\nvendor_id\t: {vendor}\n"


@pytest.mark.parametrize(("vendor", "expected"), [("AuthenticAMD", "5"), ("GenuineIntel", None)])
def test_only_amd_gets_the_avx2_switch(vendor, expected, tmp_path, monkeypatch):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(CPUINFO.format(vendor=vendor))
    monkeypatch.delenv(VARIABLE, raising=False)
    assert cpu_vendor(cpuinfo) == vendor
    assert use_avx2_kernels_on_amd(cpuinfo) == (expected is not None)
    assert os.environ.get(VARIABLE) == expected


def test_user_setting_wins_and_missing_cpuinfo_changes_nothing(tmp_path, monkeypatch):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(CPUINFO.format(vendor="AuthenticAMD"))
    monkeypatch.setenv(VARIABLE, "0")
    assert not use_avx2_kernels_on_amd(cpuinfo)
    assert os.environ[VARIABLE] == "0"
    monkeypatch.delenv(VARIABLE)
    assert cpu_vendor(tmp_path / "absent") is None
    assert not use_avx2_kernels_on_amd(tmp_path / "absent")
    assert VARIABLE not in os.environ


def test_importing_the_package_sets_it_on_this_machine():
    env = {k: v for k, v in os.environ.items() if k != VARIABLE}
    code = f"import os, shunted; print(os.environ.get({VARIABLE!r}))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    expected = "5" if cpu_vendor() == "AuthenticAMD" else "None"
    assert out.stdout.split()[-1] == expected
