"""``shunted seg-eval`` and ``shunted seg-predict`` on a tiny real CamVid subset with a randomly initialised
shunted_t_fpn: the JSON against the confusion matrix counted here from the saved masks and labels, absent classes,
mask sizes (label's / input's, never the network's padded size), the sliding window against whole-image inference,
the resize against Paddle's ``interpolate``, the output folder rules, and one-line errors."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from shunted.cli import main
from shunted.engine.seg.evaluate import (
    batch_logits,
    open_seg_model,
    resize_logits,
    slide_inference,
    windows,
)
from shunted.engine.seg.metrics import ConfusionMatrix
from shunted.engine.seg.outputs import MANIFEST
from shunted.engine.seg.palette import CAMVID_CLASSES, CAMVID_COLORS, voc_palette
from shunted.engine.seg.predict import SegPredictConfig, segment_images

K, IGNORE, ABSENT = 11, 11, 10  # CamVid: 11 classes, 11 = unlabelled; class 10 (Bicyclist) made absent below
SIZE = (120, 90)  # (w, h) of the subset: a quarter of CamVid's 480×360, not a multiple of 32


@pytest.fixture(scope="module")
def seg_weights(tmp_path_factory) -> Path:
    """A random shunted_t_fpn (11 classes) whose class ABSENT can never win the argmax (bias −1e4)."""
    import paddle

    from shunted.factory import create_model

    paddle.seed(7)
    model = create_model("shunted_t_fpn", num_classes=K)
    state = model.state_dict()
    bias = state["decode_head.conv_seg.bias"].numpy()
    bias[ABSENT] = -1e4
    state["decode_head.conv_seg.bias"].set_value(bias)
    path = tmp_path_factory.mktemp("seg_weights") / "seg_t.pdparams"
    paddle.save(state, str(path))
    return path


@pytest.fixture(scope="module")
def opened(seg_weights):
    return open_seg_model("shunted_t_fpn", seg_weights)


@pytest.fixture(scope="module")
def camvid_subset(shared_dir, tmp_path_factory) -> Path:
    """3 CamVid val frames at 120×90 (image bilinear, label nearest), class ABSENT's pixels relabelled IGNORE,
    listed in PaddleSeg's format (val.txt)."""
    src = shared_dir / "data" / "camvid"
    root = tmp_path_factory.mktemp("camvid_tiny")
    (root / "img").mkdir()
    (root / "ann").mkdir()
    lines = []
    for line in (src / "val.txt").read_text().splitlines()[:3]:
        image, label = line.split()
        name = Path(image).stem
        Image.open(src / image).convert("RGB").resize(SIZE, Image.Resampling.BILINEAR).save(
            root / "img" / f"{name}.jpg"
        )
        lab = np.array(Image.open(src / label).resize(SIZE, Image.Resampling.NEAREST))
        lab[lab == ABSENT] = IGNORE
        Image.fromarray(lab, "L").save(root / "ann" / f"{name}.png")
        lines.append(f"img/{name}.jpg ann/{name}.png")
    (root / "val.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture
def reuse_model(monkeypatch, opened):
    """The commands get the module's opened model instead of building it again (3 s per command here)."""
    import shunted.engine.seg.evaluate as ev

    def reuse(model, weights, backend="dygraph", threads=None, expect_num_classes=None, cache=True):
        assert (model, Path(weights), backend) == ("shunted_t_fpn", Path(opened.weights), "dygraph")
        assert expect_num_classes in (None, opened.num_classes)
        return opened

    monkeypatch.setattr(ev, "open_seg_model", reuse)


def run(argv, capsys) -> tuple[int, str]:
    """(exit code, stderr) of ``shunted ARGV`` in-process (argparse errors exit through SystemExit)."""
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


def eval_argv(weights, root, *extra) -> list[str]:
    return [
        "seg-eval", "--backend=dygraph", "--model", "shunted_t_fpn", "--weights", str(weights), "--data", str(root),
        "--list", "val.txt", "--num-classes", str(K), "--ignore-index", str(IGNORE), "--workers", "0",
        "--no-progress", *map(str, extra),
    ]  # fmt: skip


def model_labels(opened, image: Image.Image, scale: float | None, size) -> np.ndarray:
    """The model's argmax at ``size`` (H, W) computed here: Paddle's own bilinear interpolate, not ours."""
    import paddle
    import paddle.nn.functional as F

    from shunted.data.seg_transforms import SegEvalTransform

    cfg = opened.pretrained_cfg
    x = SegEvalTransform(mean=cfg.mean, std=cfg.std, scale=scale)(image)
    opened.model.eval()
    with paddle.no_grad():
        logits = opened.model(paddle.to_tensor(x[None]))
        logits = F.interpolate(logits, size=list(size), mode="bilinear", align_corners=False)
    return logits.numpy()[0].argmax(0)


def test_seg_eval_json_is_the_confusion_of_the_saved_masks(
    seg_weights, opened, camvid_subset, tmp_path, capsys, reuse_model
):
    out, masks, names = tmp_path / "r.json", tmp_path / "masks", tmp_path / "camvid.txt"
    names.write_text("\n".join(CAMVID_CLASSES) + "\n")
    argv = eval_argv(seg_weights, camvid_subset, "--output", out, "--save-masks", masks, "--scale", 0.5)
    code, err = run([*argv, "--class-names", str(names)], capsys)
    assert code == 0, err
    r = json.loads(out.read_text())
    lines = (camvid_subset / "val.txt").read_text().split("\n")[:3]

    cm, counted = ConfusionMatrix(K, IGNORE), np.zeros((K, K), np.int64)
    for n, line in enumerate(lines):
        image, label = line.split()
        mask_file = masks / (Path(image).stem + ".png")
        with Image.open(mask_file) as m:
            assert m.mode == "L" and m.size == SIZE  # the label's size, not the scaled input's 60×45
            mask = np.array(m)
        label = np.array(Image.open(camvid_subset / label))
        cm.update(mask, label)
        keep = label != IGNORE  # and once more by hand
        np.add.at(counted, (label[keep].astype(int), mask[keep].astype(int)), 1)
        if n:
            continue
        # the saved mask is the model's prediction, resized back with Paddle's interpolate
        expected = model_labels(opened, Image.open(camvid_subset / image).convert("RGB"), 0.5, label.shape)
        assert (expected == mask).mean() > 0.999

    assert r["confusion"] == cm.matrix.tolist() == counted.tolist()
    assert r["images"] == 3 and r["pixels"] == int(counted.sum())
    tp, rows, cols = np.diag(counted), counted.sum(1), counted.sum(0)
    iou = [None if u == 0 else 100 * t / u for t, u in zip(tp, rows + cols - tp, strict=True)]
    assert iou[ABSENT] is None and r["class_iou"][ABSENT] is None and ABSENT in r["absent_classes"]
    assert r["class_accuracy"][ABSENT] is None
    defined = [v for v in iou if v is not None]
    assert len(defined) == K - 1
    assert r["miou"] == pytest.approx(np.mean(defined), abs=1e-4)  # mmseg: the absent class is left out
    assert r["miou_counting_absent_as_zero"] == pytest.approx(sum(defined) / K, abs=1e-4)  # PaddleSeg
    assert "mmseg" in r["mean_over"]
    assert r["pixel_accuracy"] == pytest.approx(100 * tp.sum() / counted.sum(), abs=1e-4)
    for got, want in zip(r["class_iou"], iou, strict=True):
        assert (got is None) == (want is None) and (want is None or got == pytest.approx(want, abs=1e-4))
    assert r["weights"]["sha256"] == hashlib.sha256(seg_weights.read_bytes()).hexdigest()
    assert r["model"] == "shunted_t_fpn" and r["evaluation"]["scale"] == 0.5
    assert r["class_names"] == list(CAMVID_CLASSES)
    assert {"paddle", "numpy", "shunted"} <= set(r["versions"])
    manifest = json.loads((masks / MANIFEST).read_text())
    assert manifest["complete"] and sorted(manifest["files"]) == sorted(p.name for p in masks.glob("*.png"))


def test_resize_logits_is_paddles_bilinear_interpolate():
    import paddle
    import paddle.nn.functional as F

    rng = np.random.default_rng(0)
    for src, dst in [((23, 31), (90, 120)), ((90, 120), (45, 60)), ((7, 5), (7, 13)), ((16, 16), (16, 16))]:
        x = rng.standard_normal((3, *src)).astype(np.float32)
        want = F.interpolate(paddle.to_tensor(x[None]), size=list(dst), mode="bilinear", align_corners=False)
        np.testing.assert_allclose(resize_logits(x, dst), want.numpy()[0], rtol=0, atol=1e-5)


def test_windows_follow_mmseg_slide_inference():
    # CamVid's 360×480 with crop 256, stride 171: 2 rows × 3 columns, the last of each moved back inside
    assert windows(360, 480, (256, 256), (171, 171)) == [
        (0, 256, 0, 256), (0, 256, 171, 427), (0, 256, 224, 480),
        (104, 360, 0, 256), (104, 360, 171, 427), (104, 360, 224, 480),
    ]  # fmt: skip
    assert windows(90, 120, (128, 128), (85, 85)) == [(0, 90, 0, 120)]  # crop ≥ image: the whole image


def test_slide_equals_whole_when_the_crop_covers_the_image_and_averages_windows_otherwise(opened):
    rng = np.random.default_rng(1)
    image = rng.standard_normal((3, 50, 70)).astype(np.float32)
    whole = batch_logits(opened.predictor, image[None], K)[0]
    assert whole.shape == (K, 50, 70)  # the network's padded 64×96 cropped back
    np.testing.assert_array_equal(slide_inference(opened.predictor, image, (64, 96), (48, 48), K), whole)

    slid = slide_inference(opened.predictor, image, (32, 32), (16, 16), K, batch_size=12)
    assert slid.shape == whole.shape and np.isfinite(slid).all()
    assert not np.allclose(slid, whole)  # windows see less context: different logits
    # pixels that only the first window covers hold exactly that window's logits
    count = np.zeros((50, 70), int)
    for y1, y2, x1, x2 in windows(50, 70, (32, 32), (16, 16)):
        count[y1:y2, x1:x2] += 1
    only_first = np.zeros_like(count, bool)
    only_first[:32, :32] = count[:32, :32] == 1
    assert count.min() >= 1 and only_first.sum() >= 16
    first = np.zeros((K, 50, 70), np.float32)
    first[:, :32, :32] = opened.predictor(np.ascontiguousarray(image[None, :, :32, :32]))[0]
    np.testing.assert_allclose(slid[:, only_first], first[:, only_first], rtol=0, atol=1e-5)

    # overlapping windows are averaged: a "model" answering each pixel's row inside its window gives, per pixel,
    # the mean of those rows over the windows covering it
    def local_row(x):
        return np.broadcast_to(
            np.arange(x.shape[2], dtype=np.float32)[None, None, :, None], (len(x), K, *x.shape[2:])
        )

    total, cover = np.zeros((50, 70)), np.zeros((50, 70))
    for y1, y2, x1, x2 in windows(50, 70, (32, 32), (16, 16)):
        total[y1:y2, x1:x2] += np.arange(y2 - y1)[:, None]
        cover[y1:y2, x1:x2] += 1
    got = slide_inference(local_row, image, (32, 32), (16, 16), K, batch_size=5)
    np.testing.assert_allclose(got, np.broadcast_to(total / cover, got.shape), rtol=0, atol=1e-5)
    assert cover.max() >= 4  # some pixels are averaged over several windows
    # and a pointwise "model" gives the same logits as on the whole image
    pointwise = lambda x: np.repeat(x.sum(1, keepdims=True), K, 1) * np.arange(1, K + 1)[None, :, None, None]  # noqa: E731
    np.testing.assert_allclose(
        slide_inference(pointwise, image, (48, 40), (20, 17), K),
        pointwise(image[None])[0],
        rtol=1e-5,
        atol=1e-5,
    )


def test_seg_eval_slide_with_a_covering_crop_gives_the_whole_image_result(
    seg_weights, camvid_subset, tmp_path, capsys, reuse_model
):
    whole, slide = tmp_path / "w.json", tmp_path / "s.json"
    assert run(eval_argv(seg_weights, camvid_subset, "--output", whole, "--limit", 1), capsys)[0] == 0
    argv = eval_argv(
        seg_weights,
        camvid_subset,
        "--output",
        slide,
        "--limit",
        1,
        "--mode",
        "slide",
        "--crop-size",
        "96x128",
    )
    assert run(argv, capsys)[0] == 0
    w, s = json.loads(whole.read_text()), json.loads(slide.read_text())
    assert s["confusion"] == w["confusion"] and s["evaluation"]["crop_size"] == [96, 128]


def make_inputs(shared_dir, folder: Path) -> list[Path]:
    """A CamVid frame as a 100×70 PNG (the network pads it to 128×96) and a 120×90 JPEG."""
    folder.mkdir(parents=True, exist_ok=True)
    frame = Image.open(shared_dir / "data" / "camvid" / "val" / "0016E5_07959.jpg").convert("RGB")
    png, jpg = folder / "odd.png", folder / "street.jpg"
    frame.resize((100, 70), Image.Resampling.BILINEAR).save(png)
    frame.resize(SIZE, Image.Resampling.BILINEAR).save(jpg, quality=95)
    return [png, jpg]


def test_seg_predict_files_have_the_input_size(
    seg_weights, opened, shared_dir, tmp_path, capsys, reuse_model
):
    inputs = make_inputs(shared_dir, tmp_path / "in")
    out = tmp_path / "pred"
    argv = ["seg-predict", "--backend=dygraph", "--model", "shunted_t_fpn", "--weights", str(seg_weights), str(tmp_path / "in"),
            "--output-dir", str(out), "--palette", "camvid", "--no-progress"]  # fmt: skip
    code, err = run(argv, capsys)
    assert code == 0, err
    palette = np.asarray(CAMVID_COLORS[:K], np.uint8)
    for path, overlay_name in zip(inputs, ["odd_overlay.png", "street_overlay.jpg"], strict=True):
        image = Image.open(path).convert("RGB")
        w, h = image.size
        with Image.open(out / f"{path.stem}.png") as m:
            assert m.mode == "L" and m.size == (w, h)  # not the padded 128×96
            mask = np.array(m)
        assert (mask == model_labels(opened, image, None, (h, w))).mean() > 0.999
        with Image.open(out / f"{path.stem}_color.png") as c:
            colour = np.array(c.convert("RGB"))
        assert colour.shape[1] == w and colour.shape[0] > h  # the legend strip below the mask
        np.testing.assert_array_equal(colour[:h], palette[mask])
        with Image.open(out / overlay_name) as o:
            assert o.size == (w, h)
            blended = np.asarray(Image.blend(image, Image.fromarray(palette[mask]), 0.5), np.int16)
            limit = 0 if overlay_name.endswith(".png") else 4  # mean absolute difference; JPEG is lossy
            assert np.abs(np.asarray(o.convert("RGB"), np.int16) - blended).mean() <= limit
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["class_names"][3] == "Road" and manifest["num_classes"] == K  # inferred from the weights
    assert [r["mask"] for r in manifest["images"]] == ["odd.png", "street.png"]
    assert "Bicyclist" not in json.dumps([r["classes"] for r in manifest["images"]])  # never predicted


def _segment(inputs, out, model, weights, opened):
    return segment_images(SegPredictConfig(inputs, out, model, weights, progress=False), opened=opened)


def test_seg_predict_output_folder_rules(opened, seg_weights, shared_dir, tmp_path):
    from shunted.errors import ShuntedError

    inputs = make_inputs(shared_dir, tmp_path / "in")
    out = tmp_path / "pred"
    kwargs = dict(model="shunted_t_fpn", weights=seg_weights, opened=opened)
    _segment(inputs, out, **kwargs)
    assert len(list(out.iterdir())) == 7
    # a previous output of ours is replaced; files of the previous run not written again are removed by name
    _segment(inputs[:1], out, **kwargs)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [MANIFEST, "odd.png", "odd_color.png", "odd_overlay.png"]
    )
    # a file we did not write: refused before any work, nothing changed
    (out / "notes.txt").write_text("mine")
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    with pytest.raises(ShuntedError, match=r"notes\.txt.*nothing was changed"):
        _segment(inputs, out, **kwargs)
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    # two inputs writing one name
    (tmp_path / "b").mkdir()
    shutil.copy(inputs[0], tmp_path / "b" / "odd.jpg")
    with pytest.raises(ShuntedError, match=r"would both write odd\.png"):
        _segment([inputs[0], tmp_path / "b" / "odd.jpg"], tmp_path / "new", **kwargs)
    shutil.copy(inputs[0], tmp_path / "b" / "odd_color.png")  # odd.png's colour mask is odd_color.png's mask
    with pytest.raises(ShuntedError, match=r"would both write odd_color\.png"):
        _segment([inputs[0], tmp_path / "b" / "odd_color.png"], tmp_path / "new", **kwargs)
    assert not (tmp_path / "new").exists()
    # the output folder inside an input folder (its files would be read as images next time)
    with pytest.raises(ShuntedError, match="inside the input folder"):
        _segment([tmp_path / "in"], tmp_path / "in" / "pred", **kwargs)


def test_voc_palette_is_the_pascal_colour_map():
    import argparse

    from shunted.commands import seg_predict
    from shunted.engine.seg.palette import PALETTES

    parser = argparse.ArgumentParser()
    seg_predict.add_arguments(parser)
    assert next(a.choices for a in parser._actions if a.dest == "palette") == PALETTES

    p = voc_palette(256)
    assert p[:4].tolist() == [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0]]
    assert p[15].tolist() == [192, 128, 128] and p[255].tolist() == [224, 224, 192]
    assert len({tuple(c) for c in p}) == 256


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--mode", "slide"], "--mode slide needs --crop-size"),
        (
            ["--mode", "slide", "--crop-size", "64", "--stride", "65"],
            "--stride 65x65: larger than --crop-size",
        ),
        (["--mode", "whole", "--crop-size", "64"], "--crop-size and --stride are for --mode slide"),
        (["--scale", "0"], "argument --scale: 0 must be a factor in (0, 4]"),
        (["--scale", "nan"], "argument --scale: nan must be a factor"),
        (["--ignore-index", "300"], "argument --ignore-index: 300 must be between 0 and 255"),
        (
            ["--crop-size", "12x64", "--mode", "slide"],
            "argument --crop-size: '12x64': each side must be between",
        ),
        (["--list", "nope.txt"], "nope.txt: no such list file"),
        (["--save-masks", "{root}"], "--save-masks {root}: holds the input"),
        (["--save-masks", "{root}/img/masks"], "is inside the data folder"),
        (["--output", "{weights}"], "is the same file as the input --weights"),
    ],
)
def test_seg_eval_bad_flags_are_one_line_before_loading(
    seg_weights, camvid_subset, extra, message, capsys, monkeypatch
):
    import shunted.engine.seg.evaluate as ev

    def no_model(*a, **k):
        raise AssertionError("the model was opened before the flags were checked")

    monkeypatch.setattr(ev, "open_seg_model", no_model)
    extra = [e.format(root=camvid_subset, weights=seg_weights) for e in extra]
    argv = eval_argv(seg_weights, camvid_subset, *extra)
    code, err = run(argv, capsys)
    assert code == 2
    assert err.startswith("shunted seg-eval: error: ") and err.count("\n") == 1, err
    assert message.format(root=camvid_subset) in err


def test_seg_eval_data_errors_are_one_line(seg_weights, camvid_subset, tmp_path, capsys, reuse_model):
    # CamVid's labels hold 11 (unlabelled): with --ignore-index 255 that is out of range
    code, err = run(eval_argv(seg_weights, camvid_subset, "--ignore-index", 255), capsys)  # the last one wins
    assert code == 2 and err.count("\n") == 1 and "label value 11 is outside 0..10" in err, err
    bad = tmp_path / "bad"
    shutil.copytree(camvid_subset, bad)
    first = Path((bad / "val.txt").read_text().split()[0])
    (bad / first).write_bytes(b"not a jpeg")
    code, err = run(eval_argv(seg_weights, bad), capsys)
    assert code == 2 and err.count("\n") == 1 and f"{bad / first}: cannot read" in err, err


def test_the_model_and_its_class_count_are_checked_in_one_line(seg_weights, camvid_subset, capsys):
    code, err = run(eval_argv(seg_weights, camvid_subset, "--num-classes", 5), capsys)
    assert code == 2 and err.count("\n") == 1 and "has 11 classes, but --num-classes is 5" in err, err
    code, err = run(eval_argv(seg_weights, camvid_subset, "--model", "shunted_t"), capsys)
    assert code == 2 and err.count("\n") == 1, err  # the config schema's check names the flag and the choices
    assert (
        "'shunted_t' is not implemented; choose shunted_t_fpn, shunted_s_fpn, shunted_b_fpn (--model)" in err
    )


def test_seg_config_keys_reach_the_engine(tmp_path, monkeypatch, capsys):
    """-c / -o / flags resolved into SegEvalConfig and SegPredictConfig (the engine call captured, no model)."""
    import shunted.engine.seg.evaluate as ev
    import shunted.engine.seg.predict as pr

    got = {}
    monkeypatch.setattr(
        ev, "evaluate_seg_checkpoint", lambda cfg, world=None: got.setdefault("eval", cfg) and None
    )
    monkeypatch.setattr(pr, "segment_images", lambda cfg, world=None: got.setdefault("predict", cfg) and None)
    cfg = tmp_path / "seg.yaml"
    cfg.write_text(
        "Arch: {name: shunted_t_fpn, class_num: 11, ignore_index: 11}\nGlobal: {pretrained_model: w.pdparams}\n"
        "DataLoader: {Eval: {dataset: {image_root: data, list: val.txt}, loader: {num_workers: 0}}}\n"
        "Infer: {mode: slide, crop_size: [64, 96]}\n"
    )
    assert main(["seg-eval", "-c", str(cfg), "-o", "Infer.stride=[32,48]", "--ignore-index", "255"]) == 0
    e = got["eval"]
    assert (e.model, e.weights, e.data, e.list_file, e.num_classes, e.workers) == (
        "shunted_t_fpn", "w.pdparams", "data", "val.txt", 11, 0)  # fmt: skip
    assert e.ignore_index == 255  # the flag wins over the config
    assert (e.inference.mode, e.inference.crop_size, e.inference.stride) == ("slide", (64, 96), (32, 48))
    assert main(["seg-predict", "-c", str(cfg), "-o", "Infer.mode=whole", "-o", "Infer.crop_size=null", "x.jpg",
                 "--output-dir", "o"]) == 0  # fmt: skip
    p = got["predict"]
    assert (p.model, p.num_classes, p.inference.mode, p.inputs) == ("shunted_t_fpn", 11, "whole", ["x.jpg"])
    code, err = run(["seg-eval", "-c", str(cfg), "-o", "Infer.mode=sliding"], capsys)
    assert code == 2 and err.count("\n") == 1 and "Infer.mode" in err, err
    code, err = run(["seg-eval", "--data", "d"], capsys)
    assert code == 2 and "--model is required (or set Arch.name in the -c config)" in err, err


@pytest.mark.slow  # three seg-eval runs and a seg-predict on the real network
def test_seg_eval_and_seg_predict_take_the_config_file_and_overrides(
    seg_weights, camvid_subset, shared_dir, tmp_path, capsys, reuse_model
):
    """-c FILE / -o key=value as eval takes them (the one schema's keys); a flag wins over the config."""
    cfg = tmp_path / "seg.yaml"
    cfg.write_text(
        f"Arch: {{name: shunted_t_fpn, class_num: {K}, ignore_index: {IGNORE}}}\n"
        f"Global: {{pretrained_model: {seg_weights}}}\n"
        f"DataLoader: {{Eval: {{dataset: {{image_root: {camvid_subset}, list: val.txt}}, loader: {{num_workers: 0}}}}}}\n"
    )
    assert (
        main(
            [
                "seg-eval",
                "--backend=dygraph",
                "-c",
                str(cfg),
                "--no-progress",
                "--output",
                str(tmp_path / "c.json"),
            ]
        )
        == 0
    )
    assert main([*eval_argv(seg_weights, camvid_subset), "--output", str(tmp_path / "f.json")]) == 0
    by_config, by_flags = (json.loads((tmp_path / n).read_text()) for n in ("c.json", "f.json"))
    assert by_config["confusion"] == by_flags["confusion"] and by_config["ignore_index"] == IGNORE
    slide = ["-o", "Infer.mode=slide", "-o", "Infer.crop_size=[64,64]", "--output", str(tmp_path / "s.json")]
    assert main(["seg-eval", "--backend=dygraph", "-c", str(cfg), "--no-progress", *slide]) == 0
    assert json.loads((tmp_path / "s.json").read_text())["evaluation"]["stride"] == [42, 42]
    code, err = run(["seg-eval", "-c", str(cfg), "-o", "Infer.mode=sliding"], capsys)
    assert code == 2 and err.count("\n") == 1 and "Infer.mode" in err, err
    inputs = make_inputs(shared_dir, tmp_path / "in")
    argv = [
        "seg-predict",
        "--backend=dygraph",  # the stand-in model (reuse_model) is the dygraph one
        "-c",
        str(cfg),
        *map(str, inputs),
        "--output-dir",
        str(tmp_path / "p"),
        "--no-progress",
    ]
    assert main(argv) == 0
    assert json.loads((tmp_path / "p" / MANIFEST).read_text())["num_classes"] == K


def test_seg_predict_bad_inputs_are_one_line(seg_weights, shared_dir, tmp_path, capsys, reuse_model):
    inputs = make_inputs(shared_dir, tmp_path / "in")
    names = tmp_path / "names.txt"
    names.write_text("a\nb\n")
    base = [
        "seg-predict",
        "--backend=dygraph",
        "--model",
        "shunted_t_fpn",
        "--weights",
        str(seg_weights),
        "--no-progress",
    ]
    for extra, message in [
        ([str(inputs[0]), "--output-dir", str(tmp_path / "o"), "--class-names", str(names)], "2 names, but the model has 11"),
        ([str(tmp_path / "missing.jpg"), "--output-dir", str(tmp_path / "o")], "missing.jpg: no such file"),
        ([str(inputs[0]), "--output-dir", str(tmp_path / "in")], "holds the input"),
        ([str(inputs[0]), "--output-dir", str(tmp_path / "o"), "--palette", "nope"], "argument --palette: invalid choice"),
    ]:  # fmt: skip
        code, err = run([*base, *extra], capsys)
        assert code == 2 and err.count("\n") == 1 and message in err, (extra, err)
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["inference", "onnxruntime"])
def test_seg_eval_through_an_exported_model_matches_dygraph(
    seg_weights, camvid_subset, tmp_path, backend, capsys
):
    """``--backend`` goes through shunted/engine/session.py (an export with a dynamic size): the same masks."""
    if backend == "onnxruntime":
        pytest.importorskip("onnxruntime")
    results = {}
    for name in ("dygraph", backend):
        out, masks = tmp_path / f"{name}.json", tmp_path / f"{name}_masks"
        argv = eval_argv(
            seg_weights, camvid_subset, "--output", out, "--save-masks", masks, "--backend", name
        )
        code, err = run(argv, capsys)
        assert code == 0, err
        results[name] = (
            json.loads(out.read_text()),
            {p.name: np.array(Image.open(p)) for p in masks.glob("*.png")},
        )
    (ref, ref_masks), (got, got_masks) = results["dygraph"], results[backend]
    assert got["backend"] == backend and got_masks.keys() == ref_masks.keys()
    agree = np.mean([(got_masks[k] == ref_masks[k]).mean() for k in ref_masks])
    assert agree > 0.999  # only near-ties may differ
    assert got["miou"] == pytest.approx(ref["miou"], abs=0.1)


@pytest.mark.slow  # two processes through paddle.distributed.launch: the marked stage
def test_two_processes_give_the_one_process_results(seg_weights, camvid_subset, shared_dir, tmp_path, capsys):
    """seg-eval under the launcher ran the whole split on every rank (and every rank wrote r.json); now each rank
    takes its contiguous share, rank 0 sums the confusion matrices: the one-process numbers, world_size 2.
    seg-predict shares its images the same way: the same files, byte for byte, and one manifest."""
    import subprocess
    import sys

    from rank_spy import spy_launch, written_by_rank0

    inputs = make_inputs(shared_dir, tmp_path / "in") + [camvid_subset / "img" / p.name for p in
                                                         sorted((camvid_subset / "img").iterdir())]  # fmt: skip
    assert main([*eval_argv(seg_weights, camvid_subset), "--output", str(tmp_path / "one.json")]) == 0
    predict = ["seg-predict", "--model", "shunted_t_fpn", "--weights", str(seg_weights), *map(str, inputs),
               "--palette", "camvid", "--no-progress"]  # fmt: skip
    assert main([*predict, "--output-dir", str(tmp_path / "one")]) == 0
    capsys.readouterr()

    def launch(argv, name):
        spy, env, spy_dir = spy_launch(tmp_path / name)
        done = subprocess.run(
            [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2", "--log_dir",
             str(tmp_path / name / "log"), *spy, *argv, "--threads", "1"],
            env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert done.returncode == 0, (tmp_path / name / "log" / "workerlog.0").read_text()[-3000:]
        return spy_dir

    (tmp_path / "ev").mkdir()
    spy_dir = launch([*eval_argv(seg_weights, camvid_subset), "--output", str(tmp_path / "two.json")], "ev")
    assert written_by_rank0(spy_dir) == {"two.json"}
    one, two = (
        json.loads((tmp_path / "one.json").read_text()),
        json.loads((tmp_path / "two.json").read_text()),
    )
    assert two["confusion"] == one["confusion"] and two["images"] == one["images"] == 3
    assert (two["miou"], two["pixel_accuracy"]) == (one["miou"], one["pixel_accuracy"])
    assert (one["world_size"], two["world_size"]) == (1, 2) and len(two["timing"]["per_rank"]) == 2
    assert [r["images"] for r in two["timing"]["per_rank"]] == [2, 1]

    (tmp_path / "pr").mkdir()
    launch([*predict, "--output-dir", str(tmp_path / "two")], "pr")
    files = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "two").iterdir())
    for name in files:
        if name != MANIFEST:
            assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name
    m1, m2 = (json.loads((tmp_path / d / MANIFEST).read_text()) for d in ("one", "two"))
    assert m2["images"] == m1["images"] and m2["world_size"] == 2 and m2["sha256"] == m1["sha256"]
