"""An independent PyTorch transcription of the official training recipe (test-only).

The official Shunted Transformer training (its ``main.py`` / ``engine.py``, a DeiT fork) calls into timm 0.4.x.
timm is not a dependency of this project, so the pieces the recipe uses are restated here from their documented
behaviour, written for these tests (never importing the package's training code):

- ``CosineLRScheduler`` as ``create_scheduler`` builds it (``t_in_epochs=True``, ``warmup_prefix=False``,
  ``cycle_limit=1``): the optimiser starts at ``warmup_lr_init`` (the base rate without warm-up) and
  ``step(epoch)`` sets lr(epoch); ``main.py`` calls it *after* each epoch (:func:`run_official`);
- ``create_optimizer`` for ``adamw``: ``add_weight_decay`` groups (no decay on 1-D parameters, ``*.bias`` and
  ``model.no_weight_decay()``), then ``torch.optim.AdamW``;
- ``LabelSmoothingCrossEntropy`` (no mixing) and ``SoftTargetCrossEntropy`` (Mixup/CutMix targets);
- ``Mixup`` in ``batch`` mode with ``mixup_target`` / ``rand_bbox`` / ``cutmix_bbox_and_lam``;
- ``NativeScaler`` without AMP: backward, optional ``clip_grad_norm_`` by global norm, optimiser step;
- ``ModelEma``: ema ← decay · ema + (1 − decay) · value for every floating state entry;
- ``train_one_epoch``: ``model.train(set_training_mode)`` (eval mode when fine-tuning), mixup, loss, step, EMA;
- ``RandomErasing``, RandomResizedCrop's ``get_params`` and the RandAugment ops / level arguments / string parser.

Randomness is injected: every function that draws takes a ``draws`` object with the calls timm makes
(``rand``, ``beta``, ``randint`` (numpy, exclusive), ``py_randint`` (Python, inclusive), ``uniform``, ``normal``).
:class:`GeneratorDraws` answers them from a ``numpy.random.Generator``, so a test can hand the port and this
reference generators in the same state: identical results then mean the port consumes the same draws, in the
same order, for the same purpose as timm.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Sequence

import numpy as np
import torch
from PIL import Image, ImageEnhance, ImageOps
from torch import nn
from torch.nn import functional as F

IMAGENET_DEFAULT_MEAN = (0.485, 0.456, 0.406)
IMAGENET_DEFAULT_STD = (0.229, 0.224, 0.225)


class GeneratorDraws:
    """timm's random calls answered by a numpy Generator (one call here = one call there)."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng

    def rand(self) -> float:  # np.random.rand() / random.random() / torch.rand(1)
        return float(self.rng.random())

    def beta(self, a: float, b: float) -> float:  # np.random.beta
        return float(self.rng.beta(a, b))

    def randint(self, low: int, high: int) -> int:  # np.random.randint: [low, high)
        return int(self.rng.integers(low, high))

    def py_randint(self, a: int, b: int) -> int:  # random.randint: [a, b]
        return int(self.rng.integers(a, b + 1))

    def uniform(self, a: float, b: float) -> float:  # random.uniform
        return float(self.rng.uniform(a, b))

    def normal(self, shape: Sequence[int]) -> torch.Tensor:  # torch.empty(shape).normal_()
        return torch.from_numpy(self.rng.standard_normal(tuple(shape))).float()


# -- schedule --------------------------------------------------------------------------------------------------
class CosineLRScheduler:
    """timm's cosine schedule with linear warm-up, as DeiT's ``create_scheduler`` configures it."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        t_initial: int,
        lr_min: float = 0.0,
        warmup_t: int = 0,
        warmup_lr_init: float = 0.0,
        cycle_limit: int = 1,
    ) -> None:
        self.optimizer = optimizer
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self.base_values = [group["initial_lr"] for group in optimizer.param_groups]
        self.t_initial, self.lr_min, self.cycle_limit = t_initial, lr_min, cycle_limit
        self.warmup_t, self.warmup_lr_init = warmup_t, warmup_lr_init
        self._update_groups(self.base_values)
        if warmup_t:
            self.warmup_steps = [(v - warmup_lr_init) / warmup_t for v in self.base_values]
            self._update_groups([warmup_lr_init] * len(self.base_values))
        else:
            self.warmup_steps = [1 for _ in self.base_values]

    def _update_groups(self, values: list[float]) -> None:
        for group, value in zip(self.optimizer.param_groups, values, strict=True):
            group["lr"] = value

    def get_lr(self, t: float) -> list[float]:
        if t < self.warmup_t:
            return [self.warmup_lr_init + t * s for s in self.warmup_steps]
        i = t // self.t_initial  # warmup_prefix=False: t is not shifted by the warm-up
        t_curr = t - self.t_initial * i
        if self.cycle_limit == 0 or i < self.cycle_limit:
            return [
                self.lr_min + 0.5 * (v - self.lr_min) * (1 + math.cos(math.pi * t_curr / self.t_initial))
                for v in self.base_values
            ]
        return [self.lr_min for _ in self.base_values]

    def step(self, epoch: int) -> None:
        self._update_groups(self.get_lr(epoch))


# -- optimiser -------------------------------------------------------------------------------------------------
def add_weight_decay(model: nn.Module, weight_decay: float, skip_list: Iterable[str] = ()) -> list[dict]:
    decay, no_decay = [], []
    skip = set(skip_list)
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if len(param.shape) == 1 or name.endswith(".bias") or name in skip:
            no_decay.append(param)
        else:
            decay.append(param)
    return [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": weight_decay}]


def create_optimizer(
    model: nn.Module, lr: float, weight_decay: float = 0.05, eps: float = 1e-8, betas=(0.9, 0.999)
) -> torch.optim.AdamW:
    """timm ``create_optimizer`` with ``opt='adamw'`` and ``filter_bias_and_bn=True``."""
    skip = model.no_weight_decay() if hasattr(model, "no_weight_decay") else ()
    groups = add_weight_decay(model, weight_decay, skip)
    return torch.optim.AdamW(groups, lr=lr, weight_decay=0.0, eps=eps, betas=betas)


# -- losses ----------------------------------------------------------------------------------------------------
class LabelSmoothingCrossEntropy(nn.Module):
    def __init__(self, smoothing: float = 0.1) -> None:
        super().__init__()
        self.smoothing, self.confidence = smoothing, 1.0 - smoothing

    def forward(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logprobs = F.log_softmax(x, dim=-1)
        nll = -logprobs.gather(dim=-1, index=target.unsqueeze(1)).squeeze(1)
        smooth = -logprobs.mean(dim=-1)
        return (self.confidence * nll + self.smoothing * smooth).mean()


class SoftTargetCrossEntropy(nn.Module):
    def forward(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return torch.sum(-target * F.log_softmax(x, dim=-1), dim=-1).mean()


# -- Mixup / CutMix --------------------------------------------------------------------------------------------
def one_hot(x: torch.Tensor, num_classes: int, on_value: float = 1.0, off_value: float = 0.0) -> torch.Tensor:
    x = x.long().view(-1, 1)
    return torch.full((x.size(0), num_classes), off_value).scatter_(1, x, on_value)


def mixup_target(target: torch.Tensor, num_classes: int, lam: float = 1.0, smoothing: float = 0.0):
    off_value = smoothing / num_classes
    on_value = 1.0 - smoothing + off_value
    y1 = one_hot(target, num_classes, on_value, off_value)
    y2 = one_hot(target.flip(0), num_classes, on_value, off_value)
    return y1 * lam + y2 * (1.0 - lam)


def rand_bbox(img_shape, lam: float, draws, margin: float = 0.0):
    ratio = np.sqrt(1 - lam)
    img_h, img_w = img_shape[-2:]
    cut_h, cut_w = int(img_h * ratio), int(img_w * ratio)
    margin_y, margin_x = int(margin * cut_h), int(margin * cut_w)
    cy = draws.randint(0 + margin_y, img_h - margin_y)
    cx = draws.randint(0 + margin_x, img_w - margin_x)
    yl = int(np.clip(cy - cut_h // 2, 0, img_h))
    yh = int(np.clip(cy + cut_h // 2, 0, img_h))
    xl = int(np.clip(cx - cut_w // 2, 0, img_w))
    xh = int(np.clip(cx + cut_w // 2, 0, img_w))
    return yl, yh, xl, xh


def cutmix_bbox_and_lam(img_shape, lam: float, draws, correct_lam: bool = True):
    yl, yu, xl, xu = rand_bbox(img_shape, lam, draws)
    if correct_lam:
        lam = 1.0 - (yu - yl) * (xu - xl) / float(img_shape[-2] * img_shape[-1])
    return (yl, yu, xl, xu), lam


class Mixup:
    """timm ``Mixup`` in ``batch`` mode (``correct_lam=True``, no ``cutmix_minmax``)."""

    def __init__(
        self,
        mixup_alpha: float = 1.0,
        cutmix_alpha: float = 0.0,
        prob: float = 1.0,
        switch_prob: float = 0.5,
        label_smoothing: float = 0.1,
        num_classes: int = 1000,
    ) -> None:
        self.mixup_alpha, self.cutmix_alpha = mixup_alpha, cutmix_alpha
        self.mix_prob, self.switch_prob = prob, switch_prob
        self.label_smoothing, self.num_classes = label_smoothing, num_classes
        self.mixup_enabled = True
        self.last = None  # (lam, use_cutmix, box) of the last batch, for the tests

    def _params_per_batch(self, draws) -> tuple[float, bool]:
        lam, use_cutmix = 1.0, False
        if self.mixup_enabled and draws.rand() < self.mix_prob:
            if self.mixup_alpha > 0.0 and self.cutmix_alpha > 0.0:
                use_cutmix = draws.rand() < self.switch_prob
                alpha = self.cutmix_alpha if use_cutmix else self.mixup_alpha
                lam_mix = draws.beta(alpha, alpha)
            elif self.mixup_alpha > 0.0:
                lam_mix = draws.beta(self.mixup_alpha, self.mixup_alpha)
            elif self.cutmix_alpha > 0.0:
                use_cutmix = True
                lam_mix = draws.beta(self.cutmix_alpha, self.cutmix_alpha)
            else:
                raise AssertionError("mixup enabled without an alpha")
            lam = float(lam_mix)
        return lam, use_cutmix

    def _mix_batch(self, x: torch.Tensor, draws) -> float:
        lam, use_cutmix = self._params_per_batch(draws)
        self.last = (lam, use_cutmix, None)
        if lam == 1.0:
            return 1.0
        if use_cutmix:
            (yl, yh, xl, xh), lam = cutmix_bbox_and_lam(x.shape, lam, draws)
            x[:, :, yl:yh, xl:xh] = x.flip(0)[:, :, yl:yh, xl:xh]
            self.last = (lam, True, (yl, yh, xl, xh))
        else:
            x_flipped = x.flip(0).mul_(1.0 - lam)
            x.mul_(lam).add_(x_flipped)
        return lam

    def __call__(self, x: torch.Tensor, target: torch.Tensor, draws):
        assert len(x) % 2 == 0, "Batch size should be even when using this"
        lam = self._mix_batch(x, draws)
        return x, mixup_target(target, self.num_classes, lam, self.label_smoothing)


# -- the training loop -----------------------------------------------------------------------------------------
class ModelEma:
    """timm ``ModelEma`` (v1): a deep copy updated after every optimiser step."""

    def __init__(self, model: nn.Module, decay: float = 0.9999) -> None:
        self.ema = copy.deepcopy(model).eval()
        self.decay = decay
        for p in self.ema.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        msd = model.state_dict()
        for k, ema_v in self.ema.state_dict().items():
            model_v = msd[k].detach()
            ema_v.copy_(ema_v * self.decay + (1.0 - self.decay) * model_v)


def native_scaler_step(loss, optimizer, clip_grad: float | None, parameters) -> float | None:
    """timm ``NativeScaler.__call__`` with the GradScaler disabled (CPU, float32). Returns the global norm."""
    loss.backward()
    norm = None
    if clip_grad is not None:
        norm = float(torch.nn.utils.clip_grad_norm_(list(parameters), clip_grad, norm_type=2.0))
    optimizer.step()
    return norm


def train_one_epoch(
    model: nn.Module,
    criterion: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor, object]],
    optimizer: torch.optim.Optimizer,
    max_norm: float | None = None,
    model_ema: ModelEma | None = None,
    mixup_fn: Mixup | None = None,
    set_training_mode: bool = True,
) -> dict:
    """``engine.train_one_epoch``; ``batches`` yields (samples, targets, draws for Mixup)."""
    model.train(set_training_mode)
    lrs, norms, losses = [], [], []
    for samples, targets, draws in batches:
        if mixup_fn is not None:
            samples, targets = mixup_fn(samples.clone(), targets, draws)
        outputs = model(samples)
        loss = criterion(outputs, targets)
        optimizer.zero_grad()
        norms.append(native_scaler_step(loss, optimizer, max_norm, model.parameters()))
        if model_ema is not None:
            model_ema.update(model)
        losses.append(loss.item())
        lrs.append(optimizer.param_groups[0]["lr"])
    return {"lr": lrs, "grad_norm": norms, "loss": losses}


def run_official(
    model: nn.Module,
    epoch_batches: Sequence[Sequence[tuple[torch.Tensor, torch.Tensor, object]]],
    *,
    lr: float,
    epochs: int,
    warmup_epochs: int = 5,
    warmup_lr: float = 1e-6,
    min_lr: float = 1e-5,
    weight_decay: float = 0.05,
    smoothing: float = 0.1,
    mixup: Mixup | None = None,
    clip_grad: float | None = None,
    finetune: bool = True,
    ema_decay: float | None = None,
) -> dict:
    """``main.py``'s loop over ``len(epoch_batches)`` epochs: ``lr`` is the already linearly scaled peak.

    Criterion as ``main.py`` picks it: SoftTargetCrossEntropy with Mixup, else LabelSmoothingCrossEntropy when
    smoothing > 0, else CrossEntropyLoss. Returns per-epoch stats and the EMA model (or None).
    """
    optimizer = create_optimizer(model, lr, weight_decay)
    scheduler = CosineLRScheduler(optimizer, epochs, min_lr, warmup_epochs, warmup_lr, cycle_limit=1)
    if mixup is not None:
        criterion: nn.Module = SoftTargetCrossEntropy()
    elif smoothing:
        criterion = LabelSmoothingCrossEntropy(smoothing)
    else:
        criterion = nn.CrossEntropyLoss()
    ema = ModelEma(model, ema_decay) if ema_decay is not None else None
    stats = []
    for epoch, batches in enumerate(epoch_batches):
        stats.append(
            train_one_epoch(model, criterion, batches, optimizer, clip_grad, ema, mixup, not finetune)
        )
        scheduler.step(epoch)
    return {"epochs": stats, "ema": ema.ema if ema else None}


# -- image transforms ------------------------------------------------------------------------------------------
def eval_free_train_input(path, img_size: int, mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD):
    """timm's training transform with every random part off: RandomResizedCrop(scale=(1, 1), ratio=(1, 1)) of
    a square image is the whole image resized (PIL bicubic); ToTensor; Normalize. → (3, H, W) float32."""
    with Image.open(path) as im:
        img = im.convert("RGB")
    assert img.width == img.height, "the whole-image crop needs a square image"
    img = img.resize((img_size, img_size), Image.Resampling.BICUBIC)
    x = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).float().div(255)
    mean_t = torch.tensor(mean).view(3, 1, 1)
    std_t = torch.tensor(std).view(3, 1, 1)
    return (x - mean_t) / std_t


def rrc_get_params(width: int, height: int, scale, ratio, draws) -> tuple[int, int, int, int]:
    """``RandomResizedCropAndInterpolation.get_params``: (i, j, h, w)."""
    area = width * height
    for _ in range(10):
        target_area = draws.uniform(*scale) * area
        log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
        aspect_ratio = math.exp(draws.uniform(*log_ratio))
        w = int(round(math.sqrt(target_area * aspect_ratio)))
        h = int(round(math.sqrt(target_area / aspect_ratio)))
        if w <= width and h <= height:
            i = draws.py_randint(0, height - h)
            j = draws.py_randint(0, width - w)
            return i, j, h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w = width
        h = int(round(w / min(ratio)))
    elif in_ratio > max(ratio):
        h = height
        w = int(round(h * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


class RandomErasing:
    """timm ``RandomErasing`` as ``create_transform`` builds it: ``RandomErasing(re_prob, mode=re_mode,
    max_count=re_count)`` (min_count 1), on a normalised CHW tensor."""

    def __init__(
        self,
        probability: float = 0.5,
        min_area: float = 0.02,
        max_area: float = 1 / 3,
        min_aspect: float = 0.3,
        mode: str = "const",
        min_count: int = 1,
        max_count: int | None = None,
    ) -> None:
        self.probability, self.min_area, self.max_area = probability, min_area, max_area
        self.log_aspect_ratio = (math.log(min_aspect), math.log(1 / min_aspect))
        self.min_count, self.max_count = min_count, max_count or min_count
        self.per_pixel, self.rand_color = mode == "pixel", mode == "rand"

    def _pixels(self, shape, draws) -> torch.Tensor:
        if self.per_pixel:
            return draws.normal(shape)
        if self.rand_color:
            return draws.normal((shape[0], 1, 1))
        return torch.zeros((shape[0], 1, 1))

    def __call__(self, img: torch.Tensor, draws) -> torch.Tensor:
        if draws.rand() > self.probability:
            return img
        chan, img_h, img_w = img.shape
        area = img_h * img_w
        count = (
            self.min_count
            if self.min_count == self.max_count
            else draws.py_randint(self.min_count, self.max_count)
        )
        for _ in range(count):
            for _attempt in range(10):
                target_area = draws.uniform(self.min_area, self.max_area) * area / count
                aspect_ratio = math.exp(draws.uniform(*self.log_aspect_ratio))
                h = int(round(math.sqrt(target_area * aspect_ratio)))
                w = int(round(math.sqrt(target_area / aspect_ratio)))
                if w < img_w and h < img_h:
                    top = draws.py_randint(0, img_h - h)
                    left = draws.py_randint(0, img_w - w)
                    img[:, top : top + h, left : left + w] = self._pixels((chan, h, w), draws)
                    break
        return img


# -- RandAugment (timm auto_augment.py, increasing / default op sets) -------------------------------------------
MAX_LEVEL = 10.0
RAND_TRANSFORMS = [
    "AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize", "SolarizeAdd", "Color", "Contrast",
    "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel",
]  # fmt: skip
RAND_INCREASING_TRANSFORMS = [
    "AutoContrast", "Equalize", "Invert", "Rotate", "PosterizeIncreasing", "SolarizeIncreasing", "SolarizeAdd",
    "ColorIncreasing", "ContrastIncreasing", "BrightnessIncreasing", "SharpnessIncreasing", "ShearX", "ShearY",
    "TranslateXRel", "TranslateYRel",
]  # fmt: skip


def _negate(v: float, negate: bool) -> float:
    return -v if negate else v  # timm: -v if random.random() > 0.5


def level_to_arg(name: str, level: float, negate: bool, hparams: dict) -> tuple:
    if name in ("AutoContrast", "Equalize", "Invert"):
        return ()
    if name == "Rotate":
        return (_negate(level / MAX_LEVEL * 30.0, negate),)
    if name in ("ShearX", "ShearY"):
        return (_negate(level / MAX_LEVEL * 0.3, negate),)
    if name in ("TranslateXRel", "TranslateYRel"):
        return (_negate(level / MAX_LEVEL * hparams.get("translate_pct", 0.45), negate),)
    if name in ("Color", "Contrast", "Brightness", "Sharpness"):
        return (level / MAX_LEVEL * 1.8 + 0.1,)
    if name.endswith("Increasing") and name[: -len("Increasing")] in (
        "Color",
        "Contrast",
        "Brightness",
        "Sharpness",
    ):
        return (1.0 + _negate(level / MAX_LEVEL * 0.9, negate),)
    if name == "Posterize":
        return (int(level / MAX_LEVEL * 4),)
    if name == "PosterizeIncreasing":
        return (4 - int(level / MAX_LEVEL * 4),)
    if name == "Solarize":
        return (int(level / MAX_LEVEL * 256),)
    if name == "SolarizeIncreasing":
        return (256 - int(level / MAX_LEVEL * 256),)
    if name == "SolarizeAdd":
        return (int(level / MAX_LEVEL * 110),)
    raise KeyError(name)


def _solarize_add(img, add, thresh=128, **_):
    lut = [min(255, i + add) if i < thresh else i for i in range(256)]
    return img.point(lut * 3 if img.mode == "RGB" else lut)


def _posterize(img, bits, **_):
    if bits >= 8:
        return img
    # ImageOps.posterize keeps value & ~(2**(8 - bits) - 1); Pillow ≤ 12 (what timm ran on) accepted 0 bits
    # (a black image), Pillow 13 refuses it, so the mask is applied here
    mask = ~(2 ** (8 - bits) - 1) & 0xFF
    return img.point([i & mask for i in range(256)] * len(img.getbands()))


def _affine(matrix_of):
    return lambda img, v, **kw: img.transform(img.size, Image.Transform.AFFINE, matrix_of(img, v), **kw)


NAME_TO_OP = {
    "AutoContrast": lambda img, **_: ImageOps.autocontrast(img),
    "Equalize": lambda img, **_: ImageOps.equalize(img),
    "Invert": lambda img, **_: ImageOps.invert(img),
    "Rotate": lambda img, degrees, **kw: img.rotate(degrees, **kw),
    "Posterize": _posterize,
    "PosterizeIncreasing": _posterize,
    "Solarize": lambda img, thresh, **_: ImageOps.solarize(img, thresh),
    "SolarizeIncreasing": lambda img, thresh, **_: ImageOps.solarize(img, thresh),
    "SolarizeAdd": _solarize_add,
    "ShearX": _affine(lambda img, f: (1, f, 0, 0, 1, 0)),
    "ShearY": _affine(lambda img, f: (1, 0, 0, f, 1, 0)),
    "TranslateXRel": _affine(lambda img, p: (1, 0, p * img.size[0], 0, 1, 0)),
    "TranslateYRel": _affine(lambda img, p: (1, 0, 0, 0, 1, p * img.size[1])),
}
for _kind, _enh in (
    ("Color", ImageEnhance.Color),
    ("Contrast", ImageEnhance.Contrast),
    ("Brightness", ImageEnhance.Brightness),
    ("Sharpness", ImageEnhance.Sharpness),
):
    NAME_TO_OP[_kind] = NAME_TO_OP[f"{_kind}Increasing"] = (
        lambda enh: lambda img, factor, **_: enh(img).enhance(factor)
    )(_enh)


def aa_hparams(mean=IMAGENET_DEFAULT_MEAN, interpolation: str = "bicubic", img_size: int = 224) -> dict:
    """What ``transforms_imagenet_train`` passes to ``rand_augment_transform``."""
    resample = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}[interpolation]
    return {
        "translate_const": int(img_size * 0.45),
        "img_mean": tuple(min(255, round(255 * x)) for x in mean),
        "interpolation": resample,
    }


def apply_op(img: Image.Image, name: str, magnitude: float, negate: bool, hparams: dict) -> Image.Image:
    """``AugmentOp.__call__`` once the probability, magnitude noise and sign have been drawn."""
    magnitude = max(0.0, min(MAX_LEVEL, magnitude))
    kwargs = {"fillcolor": hparams["img_mean"], "resample": hparams["interpolation"]}
    return NAME_TO_OP[name](img, *level_to_arg(name, magnitude, negate, hparams), **kwargs)


def rand_augment_params(config_str: str) -> dict:
    """``rand_augment_transform``'s parsing (timm 0.4.12): magnitude, ops per image, std, op set, op prob."""
    import re

    out = {"magnitude": MAX_LEVEL, "num_layers": 2, "magnitude_std": 0.0, "ops": RAND_TRANSFORMS, "prob": 0.5}
    parts = config_str.split("-")
    assert parts[0] == "rand"
    for c in parts[1:]:
        cs = re.split(r"(\d.*)", c)
        if len(cs) < 2:
            continue
        key, val = cs[:2]
        if key == "mstd":
            out["magnitude_std"] = float(val)
        elif key == "inc":
            if bool(int(val)):  # (timm 0.4.12 tests bool(val) of the string, so "inc0" also selects it)
                out["ops"] = RAND_INCREASING_TRANSFORMS
        elif key == "m":
            out["magnitude"] = float(val)
        elif key == "n":
            out["num_layers"] = int(val)
        else:
            raise AssertionError(f"unknown RandAugment config section {c!r}")
    return out
