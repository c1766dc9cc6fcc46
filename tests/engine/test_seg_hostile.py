"""``shunted seg-eval`` / ``seg-predict`` against the mistakes users make: a list file saved with a BOM, ``--output``
naming the list file found under ``--data``, a bad image, a bad label or Ctrl-C midway (no partial output, nothing of
the user's removed), and EXIF-rotated photos (outputs displayed like the input).

The model is a stand-in with the runtime's interface (``predictor``: N×3×H×W -> N×K×H×W logits): these tests are
about files and folders, not the network (tests/engine/test_seg_eval_predict.py runs the real one)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from shunted.cli import main
from shunted.data.seg_datasets import list_seg_samples
from shunted.engine.seg.evaluate import SegEvalConfig, evaluate_seg_checkpoint
from shunted.engine.seg.outputs import MANIFEST
from shunted.engine.seg.predict import SegPredictConfig, segment_images
from shunted.errors import DataError, ShuntedError

K = 4
SIZE = (40, 30)  # (w, h)


class Predictor:
    """Logits whose argmax is the image's red channel quantised to K classes; ``interrupt_at``: the call (1-based)
    that raises KeyboardInterrupt, as Ctrl-C does in the middle of a run."""

    def __init__(self, interrupt_at: int | None = None):
        self.calls = 0
        self.interrupt_at = interrupt_at

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.calls += 1
        if self.calls == self.interrupt_at:
            raise KeyboardInterrupt
        red = np.clip(((x[:, 0] + 2.2) / 4.9 * K).astype(np.int64), 0, K - 1)
        return (np.arange(K)[None, :, None, None] == red[:, None]).astype(np.float32)


def fake_opened(interrupt_at: int | None = None, weights: str = "w.pdparams"):
    return SimpleNamespace(
        predictor=Predictor(interrupt_at),
        num_classes=K,
        pretrained_cfg=SimpleNamespace(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)),
        model_name="shunted_t_fpn",
        weights=weights,
        weights_sha256="0" * 64,
        backend="dygraph",
    )


def photo(path: Path, seed: int, **save_args) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (SIZE[1], SIZE[0], 3), dtype=np.uint8)).save(path, **save_args)
    return path


@pytest.fixture
def dataset(tmp_path) -> Path:
    """3 image/label pairs under ROOT (img/, ann/) listed in ROOT/val.txt; the third label has a value ≥ K."""
    root = tmp_path / "data"
    (root / "img").mkdir(parents=True)
    (root / "ann").mkdir()
    lines = []
    for i in range(3):
        photo(root / "img" / f"f{i}.jpg", i)
        label = np.random.default_rng(10 + i).integers(0, K, (SIZE[1], SIZE[0]), dtype=np.uint8)
        if i == 2:
            label[0, 0] = K + 3
        Image.fromarray(label, "L").save(root / "ann" / f"f{i}.png")
        lines.append(f"img/f{i}.jpg ann/f{i}.png")
    (root / "val.txt").write_text("\n".join(lines) + "\n")
    return root


def test_list_file_with_bom_and_crlf(dataset, tmp_path):
    """Notepad saves 'UTF-8 with BOM' and CRLF: the BOM was read as part of the first image's name."""
    text = (dataset / "val.txt").read_text()
    bom = tmp_path / "bom.txt"
    bom.write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode())
    samples = list_seg_samples(dataset, bom)
    assert samples.images == list_seg_samples(dataset, "val.txt").images
    assert samples.images[0] == dataset / "img" / "f0.jpg"


def test_output_naming_the_list_under_data_is_refused(dataset, tmp_path, monkeypatch, capsys):
    """``--list val.txt`` is found under --data; ``--output DATA/val.txt`` then overwrote it with the JSON."""
    monkeypatch.chdir(tmp_path)  # val.txt is not in the current folder: only under --data
    weights = tmp_path / "w.pdparams"
    weights.write_bytes(b"not read: the outputs are checked first")
    before = (dataset / "val.txt").read_bytes()
    code = main(
        ["seg-eval", "--backend=dygraph", "--model", "shunted_t_fpn", "--weights", str(weights), "--data", str(dataset),
         "--list", "val.txt", "--output", str(dataset / "val.txt"), "--workers", "0", "--no-progress"]
    )  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("shunted seg-eval: error: --output ")
    assert "--list" in err[0] and "same file" in err[0]
    assert (dataset / "val.txt").read_bytes() == before


def _predict(inputs, out, opened, weights):
    cfg = SegPredictConfig([str(p) for p in inputs], out, "shunted_t_fpn", weights, progress=False)
    return segment_images(cfg, opened=opened)


@pytest.fixture
def weights(tmp_path) -> Path:
    path = tmp_path / "w.pdparams"
    path.write_bytes(b"unused")
    return path


def test_seg_predict_bad_image_leaves_no_output(tmp_path, weights):
    """The second input is not an image: the folders made for the run and the first image's files are removed."""
    good = photo(tmp_path / "a.jpg", 0)
    bad = tmp_path / "b.jpg"
    bad.write_text("not an image")
    out = tmp_path / "new" / "seg"
    with pytest.raises(DataError, match="b.jpg"):
        _predict([good, bad], out, fake_opened(), weights)
    assert not (tmp_path / "new").exists()

    empty = tmp_path / "empty"  # a folder the user made: kept, still empty
    empty.mkdir()
    with pytest.raises(DataError, match="b.jpg"):
        _predict([good, bad], empty, fake_opened(), weights)
    assert empty.is_dir() and list(empty.iterdir()) == []


def test_seg_predict_ctrl_c_leaves_no_partial_files(tmp_path, weights):
    inputs = [photo(tmp_path / f"p{i}.jpg", i) for i in range(3)]
    out = tmp_path / "seg"
    with pytest.raises(KeyboardInterrupt):
        _predict(inputs, out, fake_opened(interrupt_at=3), weights)
    assert not out.exists()

    # into a previous output: its files stay (listed in the manifest), this run's new ones are removed
    _predict(inputs[:1], out, fake_opened(), weights)
    kept = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(KeyboardInterrupt):
        _predict(inputs[1:], out, fake_opened(interrupt_at=2), weights)
    assert {p.name for p in out.iterdir()} == set(kept)
    assert all((out / name).read_bytes() == data for name, data in kept.items() if name != MANIFEST)
    listed = set(json.loads((out / MANIFEST).read_text())["files"])
    assert {"p0.png", "p0_color.png", "p0_overlay.jpg"} <= listed
    _predict(inputs[1:], out, fake_opened(), weights)  # the next run still recognises the folder
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [MANIFEST] + [f"p{i}{s}" for i in (1, 2) for s in (".png", "_color.png", "_overlay.jpg")]
    )


def test_seg_eval_bad_label_leaves_no_masks(dataset, tmp_path):
    masks = tmp_path / "masks"
    with pytest.raises(DataError, match="f2.png"):
        evaluate_seg_checkpoint(
            SegEvalConfig("shunted_t_fpn", tmp_path / "w.pdparams", dataset, "val.txt", save_masks=masks,
                          output=tmp_path / "r.json", workers=0, progress=False),
            opened=fake_opened(),
        )  # fmt: skip
    assert not masks.exists() and not (tmp_path / "r.json").exists()


def test_seg_predict_exif_rotated_photo(tmp_path, weights):
    """The mask is aligned with the stored pixels (EXIF ignored when decoding, as shunted predict does) and the
    mask and overlay carry the input's Orientation, so a viewer turns them upright with the photo."""
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 40×30, shown 30×40
    rotated = photo(tmp_path / "rot.jpg", 1, exif=exif.tobytes())
    plain = photo(tmp_path / "plain.png", 2)
    out = tmp_path / "seg"
    manifest = _predict([rotated, plain], out, fake_opened(), weights)
    for name in ("rot.png", "rot_overlay.jpg"):
        with Image.open(out / name) as img:
            assert img.size == SIZE
            assert img.getexif().get(0x0112) == 6
    with Image.open(out / "plain.png") as img:
        assert img.getexif().get(0x0112) is None
    assert [r["exif_orientation"] for r in manifest["images"]] == [6, None]
    # the index mask is the model's argmax on the stored pixels
    with Image.open(out / "rot.png") as img:
        mask = np.array(img)
    with Image.open(rotated) as img:
        stored = np.asarray(img.convert("RGB"), np.float32) / 255
    red = (stored[..., 0] - 0.485) / 0.229
    np.testing.assert_array_equal(mask, np.clip(((red + 2.2) / 4.9 * K).astype(np.int64), 0, K - 1))


def test_folder_pairs_with_link_loops(dataset):
    """Folder pairs follow linked folders; a link loop was walked ~40 levels deep, every image counted ~40 times
    (two loops in one folder: 2**40 paths, a hang). Each real folder is now listed once."""
    (dataset / "img" / "a").symlink_to(".")
    (dataset / "ann" / "self").symlink_to(".")
    samples = list_seg_samples(dataset)
    assert [p.name for p in samples.images] == ["f0.jpg", "f1.jpg", "f2.jpg"]
    assert [p.name for p in samples.labels] == ["f0.png", "f1.png", "f2.png"]


def test_label_drawn_on_the_upright_photo_names_exif(dataset, tmp_path):
    """A label drawn on the photo as viewers show it (EXIF applied) is the stored image's size turned: the error
    says the EXIF orientation is ignored (as shunted predict does), instead of only two sizes."""
    from shunted.data.seg_datasets import SegDataset
    from shunted.data.seg_transforms import SegEvalTransform

    exif = Image.Exif()
    exif[0x0112] = 6
    photo(dataset / "img" / "f0.jpg", 0, exif=exif.tobytes())
    upright = np.zeros((SIZE[0], SIZE[1]), np.uint8)  # 30 wide, 40 high
    Image.fromarray(upright, "L").save(dataset / "ann" / "f0.png")
    ds = SegDataset(list_seg_samples(dataset, "val.txt"), SegEvalTransform())
    with pytest.raises(
        DataError, match=r"f0.png: label is 30×40, its image f0.jpg is 40×30 .*EXIF orientation"
    ):
        ds[0]


def test_class_names_file_with_bom(tmp_path):
    """--class-names saved as 'UTF-8 with BOM', CRLF: the BOM was kept in the first name (JSON, legend)."""
    from shunted.engine.seg.palette import read_class_names

    path = tmp_path / "names.txt"
    path.write_bytes(b"\xef\xbb\xbfsky\r\nroad\r\ncar\r\nperson\r\n")
    assert read_class_names(path, K) == ["sky", "road", "car", "person"]


class OutOfMemory(Predictor):
    def __call__(self, x):
        raise MemoryError(
            "(ResourceExhausted) Fail to alloc memory of 3696640000 size"
        )  # as paddle raises it


def test_out_of_memory_names_the_image_and_what_to_do(dataset, tmp_path, weights):
    """A 1600×1200 photo needs a 3.7 GB attention matrix at full resolution: it was a MemoryError traceback."""
    opened = fake_opened()
    opened.predictor = OutOfMemory()
    with pytest.raises(ShuntedError, match=r"a.jpg: out of memory segmenting it at 40×30 .*--mode slide"):
        _predict([photo(tmp_path / "a.jpg", 0)], tmp_path / "seg", opened, weights)
    assert not (tmp_path / "seg").exists()
    with pytest.raises(ShuntedError, match=r"f0.jpg: out of memory .*--mode whole"):
        evaluate_seg_checkpoint(
            SegEvalConfig("shunted_t_fpn", weights, dataset, "val.txt", save_masks=tmp_path / "masks", workers=0,
                          progress=False),
            opened=opened,
        )  # fmt: skip
    assert not (tmp_path / "masks").exists()
