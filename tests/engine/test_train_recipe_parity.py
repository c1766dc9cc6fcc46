"""Step parity of ``shunted train`` with the official recipe, measured against an independent reference.

The port runs its own code path — ``Trainer.train_epoch`` (schedule stepping, train/eval mode, Mixup, loss,
AdamW groups, clipping, EMA), or the whole ``shunted train`` command in the slow test — on real CIFAR-10 images
from ``../shared`` with every random augmentation off (whole-image crop, no flip, no RandAugment, no erasing), one
full-batch step per epoch, starting from the demo checkpoint. The reference is ``shunted/runtime/torch_reference.py``
(the model) driven by ``reference/official_recipe_torch.py`` (timm's scheduler, ``add_weight_decay`` +
``torch.optim.AdamW``, the losses, Mixup, ``clip_grad_norm_``, ``ModelEma``, ``main.py``'s loop), fed with images
it decodes itself and weights it reads with ``torch.load``. The only things taken from the port's run are the
batch order (each captured row is matched to the reference's own image of that file) and the state of the
Mixup generator (the reference draws λ, the CutMix box and the switch from a generator in the same state).

Measures (float64): ``params`` = max over tensors of ‖Δport − Δref‖ / ‖Δref‖ where Δ is the change from the
initial weights (the update itself, not the much larger weights); ``logits`` = ‖port − ref‖ / ‖ref‖ of the
trained models' eval-mode logits on the batch. Mutations of the port (the schedule one epoch early as before
issue 12, decay on every parameter, smoothing dropped) must push them far above the float-noise tolerance.
"""

from __future__ import annotations

import contextlib
import copy
import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import paddle  # noqa: E402

from shunted.convert.mapping import torch_to_paddle  # noqa: E402
from shunted.engine.train import loop as train_engine  # noqa: E402
from shunted.engine.train import optim as train_optim  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:When training, we now always track:UserWarning")

NUM_CLASSES = 10
PARAMS_TOL = 1e-4  # trained weights, worst tensor
UPDATE_TOL = 1e-3  # the whole update
LOGITS_TOL = 1e-4  # trained models' logits


@dataclass
class Setup:
    """One parity experiment: the recipe knobs shared by the port's config and the reference's arguments."""

    epochs: int = 4
    warmup_epochs: int = 2
    images: int = 4
    img_size: int = 32
    seed: int = 0
    lr: float = 2e-3
    warmup_lr: float = 1e-6
    min_lr: float = 1e-5
    weight_decay: float = 0.5  # (official 0.05; larger here so a decay of 1-D parameters shows clearly)
    smoothing: float = 0.1
    finetune: bool = True  # eval-mode fine-tuning (official with --finetune); False: train mode, drop path 0
    clip_grad: float | None = None
    ema_decay: float | None = None
    mixup: dict = field(default_factory=lambda: {"prob": 0.0})


@pytest.fixture(scope="module")
def demo_weights(shared_dir) -> Path:
    return shared_dir / "demo" / "ckpt_T_cifar10_fp16.pth"


@pytest.fixture(scope="module")
def cifar_train(shared_dir) -> Path:
    return shared_dir / "data" / "cifar10" / "train-5k"


def write_label_list(root: Path, n: int, out: Path) -> list[tuple[Path, int]]:
    """n images, class after class (image i of class i mod 10); a 'relative/path label' file."""
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    items = []
    for i in range(n):
        cls = i % len(classes)
        items.append((sorted((root / classes[cls]).iterdir())[i // len(classes)], cls))
    out.write_text("".join(f"{p.relative_to(root).as_posix()} {label}\n" for p, label in items))
    return items


def train_argv(s: Setup, data: Path, labels: Path, weights: Path, out: Path) -> list[str]:
    """``shunted train`` arguments for this experiment, as a user would type them."""
    argv = ["train", "--model", "shunted_t", "--data", str(data), "--labels", str(labels)]
    argv += ["--output", str(out), "--pretrained", str(weights), "--num-classes", str(NUM_CLASSES)]
    argv += ["--epochs", str(s.epochs), "--batch-size", str(s.images), "--lr", repr(s.lr)]
    argv += ["--img-size", str(s.img_size), "--workers", "0", "--seed", str(s.seed)]
    mix = {"mixup_alpha": 0.8, "cutmix_alpha": 1.0, "switch_prob": 0.5, **s.mixup}
    overrides = {
        "Arch.drop_path_rate": 0.0,
        "Arch.finetune_eval_mode": s.finetune,
        "Loss.label_smoothing": s.smoothing,
        "Optimizer.weight_decay": s.weight_decay,
        "Optimizer.grad_clip": s.clip_grad,
        "Optimizer.lr.warmup_epoch": s.warmup_epochs,
        "Optimizer.lr.warmup_start_lr": s.warmup_lr,
        "Optimizer.lr.eta_min": s.min_lr,
        "EMA.enabled": s.ema_decay is not None,
        "EMA.decay": s.ema_decay or 0.0,
        "DataLoader.Train.sampler.repeated_aug": 1,
        # every random augmentation off: the whole (square) image, resized; no flip, RandAugment, erasing
        "DataLoader.Train.transform.scale": [1.0, 1.0],
        "DataLoader.Train.transform.ratio": [1.0, 1.0],
        "DataLoader.Train.transform.hflip": 0.0,
        "DataLoader.Train.transform.auto_augment": None,
        "DataLoader.Train.transform.color_jitter": None,
        "DataLoader.Train.transform.re_prob": 0.0,
        **{f"DataLoader.Train.mixup.{k}": v for k, v in mix.items()},
    }
    for key, value in overrides.items():
        text = "null" if value is None else str(value).lower() if isinstance(value, bool) else repr(value)
        argv += ["-o", f"{key}={text}"]
    return argv


def port_config(s: Setup, data: Path, labels: Path, weights: Path, out: Path) -> dict:
    """The configuration ``shunted train`` resolves from :func:`train_argv` (its own parser and resolver)."""
    from shunted.cli import build_parser
    from shunted.engine.train.config import resolve_config

    return resolve_config(build_parser().parse_args(train_argv(s, data, labels, weights, out)))


@dataclass
class PortRun:
    steps: list  # (epoch, x, y, Mixup generator state) per optimiser step
    rows: list  # per-epoch metrics rows
    model: paddle.nn.Layer  # the trained model
    ema: dict | None = None  # the EMA state (Paddle names → numpy)


@contextlib.contextmanager
def spy_on_train_step():
    """Record every ``Trainer.train_step`` call's batch and Mixup generator state (the call itself runs)."""
    steps: list = []
    original = train_engine.Trainer.train_step

    def spy(self, batch, rng):
        x, y = batch[0], batch[1]
        steps.append(
            (self._spy_epoch, x.numpy().copy(), y.numpy().copy(), copy.deepcopy(rng.bit_generator.state))
        )
        return original(self, batch, rng)

    original_epoch = train_engine.Trainer.train_epoch

    def epoch_spy(self, epoch):
        self._spy_epoch = epoch
        return original_epoch(self, epoch)

    train_engine.Trainer.train_step = spy
    train_engine.Trainer.train_epoch = epoch_spy
    try:
        yield steps
    finally:
        train_engine.Trainer.train_step = original
        train_engine.Trainer.train_epoch = original_epoch


def run_port(cfg: dict) -> PortRun:
    """``Trainer.train_epoch`` for every epoch (the command minus validation and file writing)."""
    with spy_on_train_step() as steps:
        trainer = train_engine.Trainer(cfg)
        rows = [trainer.train_epoch(epoch) for epoch in range(trainer.epochs)]
    ema = {k: v.numpy() for k, v in trainer.ema.state.items()} if trainer.ema else None
    return PortRun(steps, rows, trainer.model, ema)


@contextlib.contextmanager
def torch_threads(n: int = 1):
    """One torch thread: on a busy 2-core machine torch's 2-thread kernels run ~10x slower, not faster."""
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def reference_inputs(items, img_size: int):
    from reference import official_recipe_torch as R

    images = torch.stack([R.eval_free_train_input(p, img_size) for p, _ in items])
    labels = torch.tensor([label for _, label in items])
    return images, labels


def official_state(weights: Path) -> dict:
    """The checkpoint as the official code loads it: ``torch.load``, the ``model`` entry, float32."""
    ckpt = torch.load(weights, map_location="cpu", weights_only=True)
    return {k: v.float() if v.is_floating_point() else v for k, v in ckpt.get("model", ckpt).items()}


def run_reference(s: Setup, port: PortRun, images, labels, weights: Path):
    """The official loop on the port's batches (matched to the reference's own decoded images)."""
    from reference import official_recipe_torch as R

    from shunted.runtime import torch_reference as st

    model = st.build("shunted_t", NUM_CLASSES)
    missing, unexpected = model.load_state_dict(official_state(weights), strict=False)
    assert not unexpected and all(k.endswith("num_batches_tracked") for k in missing)
    epoch_batches: list[list] = [[] for _ in range(s.epochs)]
    for epoch, x, y, state in port.steps:
        # which of the reference's images is each row of the port's batch (and is it the same image?)
        dist = ((x[:, None].astype(np.float64) - images.numpy()[None]) ** 2).mean(axis=(2, 3, 4))
        order = dist.argmin(axis=1)
        assert len(set(order.tolist())) == len(order)
        assert np.abs(x - images.numpy()[order]).max() < 1e-5, "the training input is not the official one"
        assert np.array_equal(y.astype(np.int64), labels.numpy()[order])
        gen = np.random.Generator(np.random.PCG64())
        gen.bit_generator.state = state
        epoch_batches[epoch].append((images[order].clone(), labels[order].clone(), R.GeneratorDraws(gen)))
    mixup = None
    if s.mixup.get("prob", 0) > 0:
        keys = ("mixup_alpha", "cutmix_alpha", "prob", "switch_prob")
        mixup = R.Mixup(**{k: s.mixup[k] for k in keys}, label_smoothing=s.smoothing, num_classes=NUM_CLASSES)
    with torch_threads(1):
        out = R.run_official(
            model,
            epoch_batches,
            lr=s.lr,
            epochs=s.epochs,
            warmup_epochs=s.warmup_epochs,
            warmup_lr=s.warmup_lr,
            min_lr=s.min_lr,
            weight_decay=s.weight_decay,
            smoothing=s.smoothing,
            mixup=mixup,
            clip_grad=s.clip_grad,
            finetune=s.finetune,
            ema_decay=s.ema_decay,
        )
    return model, out


def _rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def key_bias_half(key: str, value: np.ndarray) -> slice | None:
    """The key half of an attention ``kv*.bias`` ([k | v]): softmax ignores a shift shared by all keys, so its
    gradient is zero up to rounding, and Adam turns that rounding into steps of up to ±lr in either framework."""
    if ".attn.kv" in key and key.endswith(".bias"):
        return slice(0, value.shape[0] // 2)
    return None


def param_errors(
    port_state: dict, ref_state: dict, initial: dict, max_step: float, skip: tuple[str, ...] = ()
) -> tuple[dict[str, float], float]:
    """Per tensor ‖port − ref‖ / ‖ref‖ of the trained weights (Paddle names), and the whole update's
    ‖Δport − Δref‖ / ‖Δref‖ over all tensors (Δ: change from the initial weights). Key-bias halves are left out
    of both and only checked to have moved by at most ``max_step`` (Σ lr over the steps) on either side;
    tensors whose name ends with one of ``skip`` are left out (and measured by the caller)."""
    assert ref_state.keys() == port_state.keys()
    per_tensor = {}
    num = den = 0.0
    for key, value in port_state.items():
        if key.endswith(skip) and skip:
            continue
        start = initial[key].astype(np.float64)
        a, b = np.asarray(value, np.float64).copy(), ref_state[key].astype(np.float64).copy()
        half = key_bias_half(key, a)
        if half is not None:
            for moved in (a[half] - start[half], b[half] - start[half]):
                assert np.abs(moved).max() <= max_step * 1.001 + 1e-7, key
            a[half] = b[half] = start[half]
        per_tensor[key] = _rel(a, b)
        num += float(((a - b) ** 2).sum())
        den += float(((b - start) ** 2).sum())
    return per_tensor, (num / den) ** 0.5


def torch_state_as_paddle(model) -> dict[str, np.ndarray]:
    return torch_to_paddle({k: v.detach().numpy() for k, v in model.state_dict().items()})


def logits_error(port_model: paddle.nn.Layer, ref_model, images) -> float:
    port_model.eval()
    ref_model.eval()
    with torch.no_grad(), torch_threads(1):
        expected = ref_model(images).numpy()
    return _rel(port_model(paddle.to_tensor(images.numpy())).numpy(), expected)


@dataclass
class Parity:
    params: float  # max over tensors of the trained weights' relative error
    update: float  # relative error of the whole update (all tensors)
    logits: float  # relative error of the trained models' eval-mode logits
    worst: str
    port: PortRun
    ref_model: object
    ref_out: dict
    initial: dict
    max_step: float


def measure(s: Setup, port: PortRun, ref_model, ref_out, images, weights: Path, skip=()) -> Parity:
    initial = torch_to_paddle({k: v.numpy() for k, v in official_state(weights).items()})
    port_state = {k: v.numpy() for k, v in port.model.state_dict().items()}
    max_step = sum(r["lr"] for r in port.rows) + s.lr  # (+ lr: generous for a mutated schedule)
    errs, update = param_errors(port_state, torch_state_as_paddle(ref_model), initial, max_step, skip)
    worst = max(errs, key=errs.get)
    logits = logits_error(port.model, ref_model, images)
    return Parity(errs[worst], update, logits, worst, port, ref_model, ref_out, initial, max_step)


def parity(
    s: Setup, tmp_path: Path, cifar_train: Path, weights: Path, reference=None, edit_cfg=None, skip=()
) -> Parity:
    """Run the port's trainer (and, unless given, the reference) and measure their disagreement.

    ``edit_cfg(cfg)`` changes the port's configuration only (a mutation the reference does not share)."""
    items = write_label_list(cifar_train, s.images, tmp_path / "labels.txt")
    cfg = port_config(s, cifar_train, tmp_path / "labels.txt", weights, tmp_path / "run")
    if edit_cfg is not None:
        edit_cfg(cfg)
    port = run_port(cfg)
    images, labels = reference_inputs(items, s.img_size)
    ref_model, ref_out = reference or run_reference(s, port, images, labels, weights)
    return measure(s, port, ref_model, ref_out, images, weights, skip)


def assert_parity(p: Parity) -> None:
    assert p.params < PARAMS_TOL, f"{p.worst}: weights rel err {p.params:.3g}"
    assert p.update < UPDATE_TOL, f"update rel err {p.update:.3g}"
    assert p.logits < LOGITS_TOL, f"logits rel err {p.logits:.3g}"


def official_epoch_lrs(s: Setup) -> list[float]:
    """What ``main.py`` trains each epoch at (the reference scheduler on a dummy optimiser)."""
    from reference import official_recipe_torch as R

    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=s.lr)
    sched = R.CosineLRScheduler(opt, s.epochs, s.min_lr, s.warmup_epochs, s.warmup_lr)
    lrs = []
    for epoch in range(s.epochs):
        lrs.append(opt.param_groups[0]["lr"])
        sched.step(epoch)
    return lrs


# -- the tests -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def finetune_parity(tmp_path_factory, cifar_train, demo_weights) -> Parity:
    """Eval-mode fine-tuning, label smoothing, AdamW groups, 4 epochs with 2 warm-up epochs."""
    return parity(Setup(), tmp_path_factory.mktemp("ft"), cifar_train, demo_weights)


def test_finetune_matches_the_official_recipe_step_for_step(finetune_parity):
    p = finetune_parity
    assert_parity(p)
    print(f"parity: weights {p.params:.3g} ({p.worst}), update {p.update:.3g}, logits {p.logits:.3g}")
    lrs = [r["lr"] for r in p.port.rows]
    assert lrs == pytest.approx(official_epoch_lrs(Setup()), rel=1e-12)
    assert lrs[0] == lrs[1] == 1e-6  # epochs 0 and 1 both at the warm-up start (DeiT steps after the epoch)
    assert [s[0] for s in p.port.steps] == [0, 1, 2, 3]  # full batch: one step per epoch
    ref_lrs = [e["lr"][0] for e in p.ref_out["epochs"]]
    assert ref_lrs == pytest.approx(lrs, rel=1e-12)


def _shifted_schedule(epoch, step=0, steps_per_epoch=1, by_epoch=True):
    return float(epoch)  # epoch e at lr(e): the schedule before issue 12, one epoch early


def _decay_everything(model, trainable=None):
    return {p.name for p in model.parameters() if not p.stop_gradient}


MUTATIONS = {
    "schedule one epoch early": ("schedule_t", _shifted_schedule),
    "weight decay on every parameter": ("decay_param_names", _decay_everything),
    "label smoothing dropped": (None, None),
}


@pytest.mark.slow
@pytest.mark.parametrize("mutation", list(MUTATIONS))
def test_parity_check_catches_recipe_mutations(
    mutation, finetune_parity, tmp_path, cifar_train, demo_weights, monkeypatch
):
    """Each deviation from the official recipe fails the parity assertions by a wide margin."""
    edit = None
    name, fake = MUTATIONS[mutation]
    if name is None:
        edit = lambda cfg: cfg["Loss"].update(label_smoothing=0.0)  # noqa: E731 -- the port only
    else:
        monkeypatch.setattr(train_engine if name == "schedule_t" else train_optim, name, fake)
    reference = (finetune_parity.ref_model, finetune_parity.ref_out)
    p = parity(Setup(), tmp_path, cifar_train, demo_weights, reference=reference, edit_cfg=edit)
    with pytest.raises(AssertionError):
        assert_parity(p)
    print(f"{mutation}: weights {p.params:.3g} ({p.worst}), update {p.update:.3g}, logits {p.logits:.3g}")
    assert p.params > 10 * PARAMS_TOL or p.update > 10 * UPDATE_TOL, (p.params, p.update, p.logits)


TRAIN_MODE = Setup(
    epochs=3,
    warmup_epochs=1,
    seed=1,  # the Mixup generator then picks CutMix, Mixup, CutMix
    finetune=False,
    clip_grad=0.5,
    ema_decay=0.9,
    mixup={"prob": 1.0, "mixup_alpha": 0.8, "cutmix_alpha": 1.0, "switch_prob": 0.5},
)


@pytest.mark.slow
def test_train_mode_with_mixup_cutmix_clipping_and_ema_matches(tmp_path, cifar_train, demo_weights):
    """Training mode (BatchNorm on batch statistics, drop path 0), SoftTargetCrossEntropy on Mixup/CutMix targets
    from the same draws, clipping by global norm, the EMA of the weights."""
    from reference import official_recipe_torch as R

    s = TRAIN_MODE
    p = parity(s, tmp_path, cifar_train, demo_weights, skip=("._variance",))
    assert_parity(p)
    print(f"parity: weights {p.params:.3g} ({p.worst}), update {p.update:.3g}, logits {p.logits:.3g}")
    # every step was clipped, and both Mixup and CutMix were used
    assert all(n > s.clip_grad for e in p.ref_out["epochs"] for n in e["grad_norm"])
    kinds = []
    for _epoch, _x, _y, state in p.port.steps:
        gen = np.random.Generator(np.random.PCG64())
        gen.bit_generator.state = state
        kinds.append(R.Mixup(0.8, 1.0, num_classes=NUM_CLASSES)._params_per_batch(R.GeneratorDraws(gen))[1])
    assert kinds == [True, False, True]
    # BatchNorm running variance: PyTorch updates it with the unbiased batch variance (× n/(n−1)), Paddle with
    # the biased one; n = batch × 16 × 16 positions of the stem here (1.6 M in the official 128 × 112²), so the
    # two differ by O(1/n) — left out above, bounded here
    ref = torch_state_as_paddle(p.ref_model)
    port = {k: v.numpy() for k, v in p.port.model.state_dict().items()}
    for key in (k for k in port if k.endswith("._variance")):
        assert _rel(port[key], ref[key]) < 2e-3, key
    # the EMA, with the same measures
    errs, update = param_errors(
        p.port.ema, torch_state_as_paddle(p.ref_out["ema"]), p.initial, p.max_step, skip=("._variance",)
    )
    assert max(errs.values()) < PARAMS_TOL and update < UPDATE_TOL, (max(errs, key=errs.get), update)


def read_metrics_csv(path: Path) -> list[dict]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


@pytest.mark.slow
def test_shunted_train_on_the_demo_checkpoint_matches_the_official_recipe(
    tmp_path, cifar_train, demo_weights
):
    """The whole command: 20 CIFAR-10 images at 64 px, full-batch steps, 4 epochs with 2 warm-up epochs, the
    official optimiser values (weight decay 0.05, smoothing 0.1), augmentation off."""
    from shunted.cli import main
    from shunted.factory import create_model

    s = Setup(images=20, img_size=64, weight_decay=0.05, lr=1e-3)
    items = write_label_list(cifar_train, s.images, tmp_path / "labels.txt")
    run = tmp_path / "run"
    with spy_on_train_step() as steps:
        assert main(train_argv(s, cifar_train, tmp_path / "labels.txt", demo_weights, run)) == 0
    rows = [{"epoch": int(r["epoch"]), "lr": float(r["lr"])} for r in read_metrics_csv(run / "metrics.csv")]
    assert [r["lr"] for r in rows] == pytest.approx(official_epoch_lrs(s), rel=1e-12)
    model = create_model("shunted_t", pretrained=str(run / "last.pdparams"), num_classes=NUM_CLASSES)
    port = PortRun(steps, rows, model)
    images, labels = reference_inputs(items, s.img_size)
    ref_model, ref_out = run_reference(s, port, images, labels, demo_weights)
    p = measure(s, port, ref_model, ref_out, images, demo_weights)
    assert_parity(p)
    print(f"parity: weights {p.params:.3g} ({p.worst}), update {p.update:.3g}, logits {p.logits:.3g}")
