"""``shunted det-train`` (shunted/engine/det/train.py) on the one training loop: the 1x schedule against mmcv's
formula, frozen stages, gradient checkpointing equal to the plain backward, config errors as one line; whole runs
(the run folder, resume bit-identical, det-eval and det-predict of the result, two processes) in the slow stage.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import paddle
import pytest

import shunted
from shunted.cli import main
from shunted.engine.det.train import det_lr, enable_recompute, freeze_stages, scaled_steps
from shunted.models.retinanet import retina_loss
from tests.data.test_det_data import OBJECTS, _voc

pytestmark = pytest.mark.filterwarnings("ignore:When training, we now always track:UserWarning")

BOXES = [np.array([b for _, b in OBJECTS], np.float32) / 2]  # on a 100 × 75 image padded to 128 × 96
LABELS = [np.array([c for c, _ in OBJECTS])]


def test_schedule_is_mmcvs_linear_warmup_then_steps():
    peak = 1e-4
    steps = scaled_steps([8, 11], 12, 12)
    assert (
        steps == [8, 11]
        and scaled_steps([8, 11], 12, 24) == [16, 22]
        and scaled_steps([8, 11], 12, 3) == [2, 3]
    )
    lr = lambda it, epoch: det_lr(it, epoch, peak, steps, 0.1, 500, 0.001)  # noqa: E731
    # mmcv: warmup_lr = regular × (1 − k), k = (1 − it / 500)(1 − 0.001)
    assert lr(0, 0) == pytest.approx(1e-7)
    assert lr(250, 0) == pytest.approx(peak * (1 - 0.5 * 0.999))
    assert lr(500, 0) == lr(10_000, 7) == pytest.approx(peak)
    assert lr(10_000, 8) == pytest.approx(1e-5) and lr(20_000, 11) == pytest.approx(1e-6)
    assert lr(100, 8) == pytest.approx(1e-5 * (1 - 0.8 * 0.999))  # warm-up multiplies the stepped rate


def _grads(model, x):
    model.clear_gradients(set_to_zero=False)
    out = model(x)
    loss = retina_loss(out, (96, 128), BOXES, LABELS, [(96, 128)])
    (loss["loss_cls"] + loss["loss_box"]).backward()
    return {n: p.grad.numpy().copy() for n, p in model.named_parameters() if p.grad is not None}


def test_recompute_gives_the_plain_gradients_and_frozen_stages_get_none():
    paddle.seed(0)
    model = shunted.create_model("shunted_t_retinanet", num_classes=3)
    model.train()
    x = paddle.to_tensor(np.random.default_rng(0).normal(0, 1, (1, 3, 96, 128)).astype(np.float32))
    plain = _grads(model, x)
    enable_recompute(model.backbone)
    again = _grads(model, x)
    assert plain.keys() == again.keys() and any(k.startswith("backbone.block3") for k in plain)
    worst = max(float(np.abs(plain[k] - again[k]).max() / (np.abs(plain[k]).max() + 1e-12)) for k in plain)
    assert worst < 1e-4
    model.clear_gradients(set_to_zero=False)  # before freezing: clear_gradients skips parameters that stop
    frozen = freeze_stages(model.backbone, 2)
    grads = _grads(model, x)
    assert not any(
        k.startswith(("backbone.patch_embed1", "backbone.block2.", "backbone.norm2")) for k in grads
    )
    assert any(k.startswith("backbone.block3.") for k in grads) and len(frozen) == 6
    from shunted.engine.det.config import det_train_defaults
    from shunted.engine.train.optim import optimizer_from_section

    opt = optimizer_from_section(model, 1e-2, det_train_defaults()["Optimizer"])
    before = {n: p.numpy().copy() for n, p in model.named_parameters()}
    opt.step()  # AdamW's decoupled weight decay must not touch the frozen stages either
    after = {n: p.numpy() for n, p in model.named_parameters()}
    moved = {n for n in before if not np.array_equal(before[n], after[n])}
    assert moved and not any(
        n.startswith(("backbone.patch_embed1", "backbone.block2.", "backbone.norm2")) for n in moved
    )


def test_bad_config_is_one_line(tmp_path, capsys):
    root = _voc(tmp_path / "voc")
    base = ["det-train", "--model", "shunted_t_retinanet", "--data", str(root), "--list", "train.txt"]
    assert main([*base, "--output", str(tmp_path / "r"), "-o", "Optimizer.lr.warmup_iter=3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        len(err) == 1
        and "unknown key Optimizer.lr.warmup_iter (did you mean Optimizer.lr.warmup_iters?)" in err[0]
    )
    assert main(base) == 2 and "--output: required" in capsys.readouterr().err
    assert main([*base, "--output", str(tmp_path / "r"), "-o", "Arch.freeze_stages=7"]) == 2
    assert "Arch.freeze_stages: 7 out of range 0..4" in capsys.readouterr().err


# -- whole runs (slow) -----------------------------------------------------------------------------------------------
TINY = ["--img-scale", "100", "75", "--batch-size", "1", "--workers", "0", "--max-steps", "2", "-o",
        "Optimizer.lr.warmup_iters=2"]  # fmt: skip


def _argv(root: Path, out: Path, *extra: str) -> list[str]:
    data = ["--data", str(root), "--list", "train.txt", "--val-list", "train.txt"]
    return ["det-train", "--model", "shunted_t_retinanet", *data, "--output", str(out), *TINY, *extra]


def _pdparams(path: Path) -> dict[str, np.ndarray]:
    return {k: np.asarray(v) for k, v in paddle.load(str(path)).items()}


@pytest.mark.slow  # integration (whole runs): the marked stage, make test-slow
def test_run_folder_resume_and_the_commands_on_its_weights(tmp_path, monkeypatch, caplog):
    from shunted.engine.train import loop as train_loop
    from shunted.engine.train.state import load_checkpoint

    root = _voc(tmp_path / "voc")
    full, stopped = tmp_path / "full", tmp_path / "stopped"
    extra = [
        "--epochs",
        "2",
        "--backbone-pretrained",
        shunted.__path__[0] + "/assets/demo/ckpt_T_cifar10_fp16.pth",
    ]
    assert main(_argv(root, full, *extra)) == 0
    summary = json.loads((full / "summary.json").read_text())
    assert summary["task"] == "detection" and summary["class_names"] == ["cat", "dog", "bird"]
    assert summary["train_data"]["boxes_dropped"] == {"outside the image": 1, "zero-area": 1}
    assert summary["lr_steps"] == [1, 2] and summary["last_val"]["epoch"] == 2
    # said once per list (the same file is the training and the validation list here)
    assert sum("2 box(es) dropped" in r.getMessage() for r in caplog.records) == 2

    original = train_loop.Trainer.train_epoch

    def interrupt_second_epoch(self, epoch):
        if epoch == 1:
            raise KeyboardInterrupt
        return original(self, epoch)

    monkeypatch.setattr(train_loop.Trainer, "train_epoch", interrupt_second_epoch)
    assert main(_argv(root, stopped, *extra)) == 130
    monkeypatch.setattr(train_loop.Trainer, "train_epoch", original)
    assert main(_argv(root, stopped, *extra, "--resume")) == 0
    a, b = _pdparams(full / "last.pdparams"), _pdparams(stopped / "last.pdparams")
    assert [k for k in a if not np.array_equal(a[k], b[k])] == []
    ra, rb = load_checkpoint(full / "last.pdckpt"), load_checkpoint(stopped / "last.pdckpt")
    for key in ("lr", "train_loss", "val_ap", "val_ap50"):
        assert [r[key] for r in ra["metrics"]] == [r[key] for r in rb["metrics"]]

    weights = str(full / "best.pdparams")
    common = ["--model", "shunted_t_retinanet", "--weights", weights, "--img-scale", "100", "75"]
    assert main(["det-eval", *common, "--data", str(root), "--list", "train.txt", "--output", str(tmp_path / "r.json"),
                 "--workers", "0", "--no-progress"]) == 0  # fmt: skip
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["images"] == 3 and set(result["class_ap"]) == {"cat", "dog", "bird"}
    assert main(["det-predict", *common, str(root / "JPEGImages"), "--output-dir", str(tmp_path / "pred"),
                 "--class-names", str(root / "label_list.txt"), "--no-progress"]) == 0  # fmt: skip
    assert sorted(p.name for p in (tmp_path / "pred").iterdir()) == [
        "a_det.jpg",
        "b_det.jpg",
        "c_det.jpg",
        "det_outputs.json",
    ]


@pytest.mark.slow  # integration (subprocess launcher): the marked stage, make test-slow
def test_det_eval_with_two_processes_equals_one(tmp_path):
    from rank_spy import spy_launch

    root = _voc(tmp_path / "voc", extra={f"x{i}": [("cat", (5 + i, 5, 60, 70))] for i in range(3)})
    model = shunted.create_model("shunted_t_retinanet", num_classes=3)
    paddle.nn.initializer.Constant(1.0)(model.bbox_head.retina_cls.bias)  # scores above 0.05: detections
    from shunted.convert.writer import write_pdparams
    from shunted.models.weights import state_dict_numpy

    write_pdparams(tmp_path / "w.pdparams", state_dict_numpy(model))
    argv = [
        "det-eval",
        "--model",
        "shunted_t_retinanet",
        "--weights",
        str(tmp_path / "w.pdparams"),
        "--data",
        str(root),
        "--list",
        "train.txt",
        "--img-scale",
        "100",
        "75",
        "--batch-size",
        "2",
        "--workers",
        "0",
        "--no-progress",
        "--threads",
        "1",
    ]  # fmt: skip  (one thread in both runs: oneDNN sums otherwise)
    assert (
        main(
            [*argv, "--output", str(tmp_path / "one.json"), "--save-detections", str(tmp_path / "one_d.json")]
        )
        == 0
    )
    script, env, _ = spy_launch(tmp_path)
    launch = [
        sys.executable,
        "-m",
        "paddle.distributed.launch",
        "--log_dir",
        str(tmp_path / "log"),
        "--nproc_per_node",
        "2",
    ]
    two = [*argv, "--output", str(tmp_path / "two.json"), "--save-detections", str(tmp_path / "two_d.json")]
    done = subprocess.run([*launch, *script, *two], env=env, capture_output=True)
    assert done.returncode == 0, (tmp_path / "log" / "workerlog.0").read_text()[-2000:]
    one, two = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("one", "two"))
    assert two["world_size"] == 2 and one["world_size"] == 1
    for key in ("ap", "ap50", "ap75", "ar100", "class_ap", "images", "detections_count"):
        assert one[key] == two[key]
    assert json.loads((tmp_path / "one_d.json").read_text()) == json.loads(
        (tmp_path / "two_d.json").read_text()
    )
