"""Memory bounded by the work (issue 20 #4): shunted/engine/seg/memory.py estimates the whole-image pass of a
segmentation model; above the budget ``--mode auto`` (the default) slides a window instead, says so in one line,
and gives the whole image's labels whenever the whole image fits.

Before: seg-predict ran every image whole; a 12000×12000 PNG was killed by the kernel at 23.7 GB, a 1600×1200
photo took 7.9 GB.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from shunted.engine.seg import memory
from shunted.engine.seg.evaluate import SegInference, batch_logits
from shunted.errors import ShuntedError

GB = 1 << 30


def test_the_estimate_grows_with_the_square_of_the_pixels():
    for model in memory.CONSTANTS:
        base = memory.whole_image_bytes(model, 32, 32)
        one, two = (memory.whole_image_bytes(model, 960 * k, 1280 * k) - base for k in (1, 2))
        assert (
            3.99 < two / one < 16.01
        )  # between linear (2²) and the attention's square of the pixel count (4²)
    assert memory.padded_pixels(33, 64) == 64 * 64  # the network pads each side to a multiple of 32


def test_plan_keeps_the_whole_image_when_it_fits_and_slides_otherwise():
    model, k = "shunted_t_fpn", 11
    whole = memory.whole_image_bytes(model, 3000, 4000)
    fits = memory.plan(model, 3000, 4000, budget=whole, num_classes=k)
    assert (fits.mode, fits.crop) == ("whole", None)
    big = memory.plan(model, 3000, 4000, budget=4 * GB, num_classes=k)
    assert big.mode == "slide" and big.crop == (512, 512) and big.stride == (341, 341)
    assert big.bytes <= 4 * GB < big.whole_bytes
    small = memory.plan(
        model, 3000, 4000, memory.slide_bytes(model, 3000, 4000, (256, 256), 1, k), num_classes=k
    )
    assert small.crop == (256, 256)  # the largest window that fits
    assert memory.plan(model, 3000, 4000, 1, memory.Window("whole")).mode == "whole"  # asked for: kept
    assert memory.plan(model, 3000, 4000, 4 * GB, memory.Window(crop=(300, 400))).crop == (300, 400)
    assert "more than the 4.0 GB budget (--max-memory); segmenting it by sliding window 512×512" in big.note(
        "big.png", (3000, 4000)
    )


def test_the_budget_is_a_share_of_the_available_memory():
    available = memory.available_bytes()
    assert 0 < available <= os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert abs(memory.default_budget() - memory.SHARE * memory.available_bytes()) < 0.05 * available


@pytest.fixture(scope="module")
def tiny_fpn():
    paddle = pytest.importorskip("paddle")
    import shunted

    paddle.seed(3)
    model = shunted.create_model("shunted_t_fpn", num_classes=3)
    model.eval()

    def run(x: np.ndarray) -> np.ndarray:
        with paddle.no_grad():
            return model(paddle.to_tensor(x)).numpy()

    return run


def test_auto_gives_the_whole_images_labels_when_it_fits_and_the_windows_otherwise(
    tiny_fpn, capsys, monkeypatch
):
    # constants that make a 96×128 image behave as a photo does (the attention's square term dominates)
    monkeypatch.setitem(memory.CONSTANTS, "shunted_t_fpn", (0.0, 1.0, 1.0))
    image = np.random.default_rng(0).standard_normal((1, 3, 96, 128)).astype(np.float32)
    whole = batch_logits(tiny_fpn, image, 3, "whole")
    roomy = SegInference("auto", model="shunted_t_fpn", max_memory=64 * GB)
    np.testing.assert_array_equal(roomy.logits(tiny_fpn, image, 3, "x.png"), whole)
    assert capsys.readouterr().err == ""

    # a budget the whole image (and every window from 512 to 128, which cover it) exceeds: 64-pixel windows
    budget = memory.slide_bytes("shunted_t_fpn", 96, 128, (64, 64), 1, 3)
    assert memory.whole_image_bytes("shunted_t_fpn", 96, 128) > budget
    tight = SegInference("auto", model="shunted_t_fpn", max_memory=budget)
    got = tight.logits(tiny_fpn, image, 3, "x.png")
    np.testing.assert_array_equal(got, batch_logits(tiny_fpn, image, 3, "slide", (64, 64), (42, 42)))
    assert not np.array_equal(got, whole)  # the windows were really used (the mutation "always whole" fails)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("x.png (128×96): the whole-image pass would need about")

    with pytest.raises(
        ShuntedError, match="x.png: the whole-image pass at 128×96 would need about .* --mode auto"
    ):
        SegInference("whole", model="shunted_t_fpn", max_memory=budget).logits(tiny_fpn, image, 3, "x.png")


def _rss_wrapper() -> str:
    """The peak-RSS wrapper of benchmarks/seg_memory.py (forks the command, reports its ru_maxrss)."""
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "seg_memory.py"
    spec = importlib.util.spec_from_file_location("seg_memory_bench", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.WRAPPER


@pytest.mark.slow
def test_seg_predict_of_a_4000x3000_photo_stays_under_4_gb_with_the_defaults(tmp_path):
    """The whole-image pass of this photo would need hundreds of GB; the default plan slides 512-pixel windows.
    Peak RSS of the command, measured in its own process (os.wait4)."""
    from PIL import Image

    weights = tmp_path / "t.pdparams"
    code = (
        "import paddle, shunted, sys; m = shunted.create_model('shunted_t_fpn', num_classes=11); "
        "paddle.save(m.state_dict(), sys.argv[1])"
    )
    subprocess.run([sys.executable, "-c", code, str(weights)], check=True, timeout=300)
    y, x = np.mgrid[0:3000, 0:4000]
    rgb = np.stack([x * 255 // 4000, y * 255 // 3000, ((x // 97 + y // 61) % 2) * 200], -1).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "photo.jpg", quality=90)
    cmd = [sys.executable, "-m", "shunted", "seg-predict", "--model", "shunted_t_fpn", "--weights", str(weights),
           str(tmp_path / "photo.jpg"), "--output-dir", str(tmp_path / "out"), "--no-progress"]  # fmt: skip
    rss = tmp_path / "rss"
    done = subprocess.run(
        [sys.executable, "-c", _rss_wrapper(), str(rss), *cmd], capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "segmenting it by sliding window 512×512" in done.stderr
    peak = int(rss.read_text()) * 1024
    assert peak < 4 * GB, f"peak RSS {peak / GB:.2f} GB"
    mask = np.asarray(Image.open(tmp_path / "out" / "photo.png"))
    assert mask.shape == (3000, 4000)
    Path(rss).unlink()
