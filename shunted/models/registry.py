"""The one place for the variants and their pretrained/preprocessing configuration.

Every other module (evaluation defaults, converter sidecars, benchmarks, README tables) reads these facts from
here; nothing repeats them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Shared by all variants (docs/model.md "Variants").
EMBED_DIMS = (64, 128, 256, 512)
NUM_HEADS = (2, 4, 8, 16)
MLP_RATIOS = (8, 8, 4, 4)
SR_RATIOS = (8, 4, 2, 1)
STRIDES = (4, 8, 16, 32)


@dataclass(frozen=True)
class PretrainedConfig:
    """Preprocessing and classifier facts that travel with the weights (timm's ``pretrained_cfg``)."""

    input_size: tuple[int, int, int] = (3, 224, 224)
    crop_pct: float = 0.875
    interpolation: str = "bicubic"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    num_classes: int = 1000
    classifier: str = "head"
    first_conv: str = "patch_embed1.conv.0"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> PretrainedConfig:
        """The config ``to_dict`` gave (from JSON: lists back to tuples)."""
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


@dataclass(frozen=True)
class Variant:
    """Architecture hyper-parameters, the official training knobs and the paper's figures for one variant."""

    name: str
    depths: tuple[int, int, int, int]
    num_conv: int
    drop_path_rate: float  # official training value; the default at inference is 0
    grad_clip: float | None
    official_params: int  # trainable parameters with 1000 classes, as the official code counts them
    paper_params_m: float
    paper_gflops: float
    paper_top1: float
    official_checkpoint: str
    pretrained_cfg: PretrainedConfig = field(default_factory=PretrainedConfig)


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("shunted_t", (1, 2, 4, 1), 0, 0.1, None, 11_553_576, 11.5, 2.1, 79.8, "ckpt_T.pth"),
        Variant("shunted_s", (2, 4, 12, 1), 1, 0.2, None, 22_401_256, 22.4, 4.9, 82.9, "ckpt_S.pth"),
        Variant("shunted_b", (3, 4, 24, 2), 2, 0.3, 1.0, 39_614_376, 39.6, 8.1, 84.0, "ckpt_B.pth"),
    )
}


def list_models() -> list[str]:
    """Names accepted by :func:`shunted.create_model`, smallest first."""
    return list(VARIANTS)


def get_variant(name: str) -> Variant:
    try:
        return VARIANTS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(list_models())}") from None


def get_pretrained_cfg(name: str) -> PretrainedConfig:
    return get_variant(name).pretrained_cfg


def variant_for(depths: tuple[int, ...], num_conv: int) -> str | None:
    """The variant with these block depths and stem convs, or None (used to recognise checkpoints)."""
    for v in VARIANTS.values():
        if tuple(v.depths) == tuple(depths) and v.num_conv == num_conv:
            return v.name
    return None


# -- segmentation variants (issue 15): a Shunted backbone + the Semantic FPN head of shunted/models/fpn.py --------
SEG_DECODER = "fpn"
# shunted_t_fpn → shunted_t
SEG_VARIANTS: dict[str, str] = {f"{name}_{SEG_DECODER}": name for name in VARIANTS}
FPN_CHANNELS = 256  # FPN neck width (lateral and output convs), Kirillov et al. 2019 / mmseg ``FPN``
FPN_HEAD_CHANNELS = 128  # per-level head width, mmseg's semantic FPN default (``FPNHead(channels=128)``)
SEG_INPUT_SIZE = (3, 512, 512)  # the paper's ADE20K crop


def list_seg_models() -> list[str]:
    """Segmentation model names accepted by :func:`shunted.create_model`, smallest first."""
    return list(SEG_VARIANTS)


def is_seg_model(name: str) -> bool:
    return name in SEG_VARIANTS


def seg_backbone_name(name: str) -> str:
    """The classification variant a segmentation model is built on: ``shunted_t_fpn`` → ``shunted_t``."""
    return _backbone_of(SEG_VARIANTS, name, "segmentation")


def _backbone_of(variants: dict[str, str], name: str, task: str) -> str:
    """``variants[name]``, or a ValueError naming the ``task`` models to choose from."""
    try:
        return variants[name]
    except KeyError:
        raise ValueError(f"unknown {task} model {name!r}; choose one of {', '.join(variants)}") from None


def _task_cfg(backbone: str, num_classes: int, classifier: str, **preprocessing) -> PretrainedConfig:
    """The backbone's preprocessing (mean/std, changed by ``preprocessing``) with a task model's classes and
    classifier name (its backbone's first conv under ``backbone.``)."""
    return replace(
        get_pretrained_cfg(backbone),
        **preprocessing,
        num_classes=num_classes,
        classifier=classifier,
        first_conv="backbone.patch_embed1.conv.0",
    )


def get_seg_pretrained_cfg(name: str, num_classes: int) -> PretrainedConfig:
    """The backbone's preprocessing (mean/std) with the segmentation model's classes and classifier name."""
    return _task_cfg(seg_backbone_name(name), num_classes, "decode_head.conv_seg", input_size=SEG_INPUT_SIZE)


# -- detection variants (issue 23): a Shunted backbone + RetinaNet (FPN P3–P7 + head) of shunted/models/retinanet.py
DET_DECODER = "retinanet"
# shunted_t_retinanet → shunted_t
DET_VARIANTS: dict[str, str] = {f"{name}_{DET_DECODER}": name for name in VARIANTS}
DET_IMG_SCALE = (1333, 800)  # (W, H) bounds of the keep-ratio resize, mmdet's 1x schedule


def list_det_models() -> list[str]:
    """Detection model names accepted by :func:`shunted.create_model`, smallest first."""
    return list(DET_VARIANTS)


def is_det_model(name: str) -> bool:
    return name in DET_VARIANTS


def det_backbone_name(name: str) -> str:
    """The classification variant a detection model is built on: ``shunted_t_retinanet`` → ``shunted_t``."""
    return _backbone_of(DET_VARIANTS, name, "detection")


def get_det_pretrained_cfg(name: str, num_classes: int) -> PretrainedConfig:
    """The backbone's mean/std with the detection model's classes and classifier name."""
    return _task_cfg(
        det_backbone_name(name),
        num_classes,
        "bbox_head.retina_cls",
        input_size=(3, DET_IMG_SCALE[1], DET_IMG_SCALE[0]),
        crop_pct=1.0,
        interpolation="bilinear",
    )
