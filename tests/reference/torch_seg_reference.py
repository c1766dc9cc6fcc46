"""PyTorch transcription of the segmentation model (``shunted/models/fpn.py``): Shunted backbone + Semantic FPN.

The backbone is the independent transcription of ``torch_reference.py`` (classifier head dropped); the FPN neck
and head are written here from their description (Kirillov et al. 2019, as mmseg's ``FPN`` + ``FPNHead``), not
from the Paddle code: lateral 1×1 convs, nearest top-down upsampling by output size, 3×3 FPN convs, per level
``max(1, log2(stride/4))`` × [3×3 conv (no bias), GroupNorm(32), ReLU, bilinear ×2 by output size while coarser
than stride 4], sum, 1×1 classifier, bilinear to the padded input size, crop. Eval only (dropout is an identity).
Used by the segmentation parity tests and by the CamVid benchmark's PyTorch images/s figure.
torch is imported when a model is first built, never when this module is imported.

API:
    build(name, num_classes, channels=128, fpn_channels=256) -> ShuntedFPN (torch, eval mode)
    from_state_dict(state) -> ShuntedFPN    from the Paddle model's state dict as numpy arrays (same key names:
                                            ``backbone.*``, ``decode_head.*``; Paddle layout, mapped here)
    randomize_(model, seed) -> model        every parameter, BN statistic and GN affine drawn at random
    paddle_state_dict(model) -> dict        the model's weights as numpy arrays in the Paddle model's layout
    model(x) -> logits (N, K, H, W);  model.decode_head(maps) -> logits at stride 4
"""

from __future__ import annotations

import functools
import math
import re
from types import SimpleNamespace

import numpy as np

from shunted.runtime import torch_reference

STRIDES = (4, 8, 16, 32)
TOTAL_STRIDE = 32
GN_GROUPS = 32
FPN_CHANNELS = 256
HEAD_CHANNELS = 128
_BLOCK = re.compile(r"^backbone\.block([1-4])\.(\d+)\.")
_STEM_CONV = re.compile(r"^backbone\.patch_embed1\.conv\.(\d+)\.weight$")


@functools.cache
def _define() -> SimpleNamespace:
    """The module classes, defined on first use (this is where torch is imported)."""
    ref = torch_reference._define()
    torch, nn = ref.torch, ref.nn
    from torch.nn import functional as F

    class ConvGNReLU(nn.Module):
        def __init__(self, cin: int, cout: int):
            super().__init__()
            self.conv = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
            self.gn = nn.GroupNorm(GN_GROUPS, cout, eps=1e-5)

        def forward(self, x):
            return F.relu(self.gn(self.conv(x)))

    class Upsample(nn.Module):
        """Bilinear ×2 as mmseg's ``Upsample``: to the doubled size, half-pixel centres."""

        def forward(self, x):
            size = (x.shape[2] * 2, x.shape[3] * 2)
            return F.interpolate(x, size=size, mode="bilinear", align_corners=False)

    class FPNHead(nn.Module):
        def __init__(self, num_classes: int, in_channels, channels: int, fpn_channels: int):
            super().__init__()
            self.lateral_convs = nn.ModuleList([nn.Conv2d(c, fpn_channels, 1) for c in in_channels])
            self.fpn_convs = nn.ModuleList(
                [nn.Conv2d(fpn_channels, fpn_channels, 3, padding=1) for _ in in_channels]
            )
            self.scale_heads = nn.ModuleList()
            for stride in STRIDES:
                layers = []
                for k in range(max(1, int(math.log2(stride // STRIDES[0])))):
                    layers.append(ConvGNReLU(fpn_channels if k == 0 else channels, channels))
                    if stride != STRIDES[0]:
                        layers.append(Upsample())
                self.scale_heads.append(nn.Sequential(*layers))
            self.conv_seg = nn.Conv2d(channels, num_classes, 1)

        def forward(self, maps):
            lat = [conv(x) for conv, x in zip(self.lateral_convs, maps, strict=True)]
            for i in range(len(lat) - 1, 0, -1):
                lat[i - 1] = lat[i - 1] + F.interpolate(lat[i], size=lat[i - 1].shape[2:], mode="nearest")
            outs = [conv(x) for conv, x in zip(self.fpn_convs, lat, strict=True)]
            out = self.scale_heads[0](outs[0])
            for i in range(1, len(outs)):
                y = self.scale_heads[i](outs[i])
                if y.shape[2:] != out.shape[2:]:
                    y = F.interpolate(y, size=out.shape[2:], mode="bilinear", align_corners=False)
                out = out + y
            return self.conv_seg(out)

    class ShuntedFPN(nn.Module):
        def __init__(self, name: str, num_classes: int, channels: int, fpn_channels: int):
            super().__init__()
            depths, num_conv = torch_reference.VARIANTS[name.removesuffix("_fpn")]
            self.backbone = ref.ShuntedTransformer(depths, num_conv, num_classes=0)
            del self.backbone.head  # nn.Identity, no parameters; the stage maps are all that is used
            self.decode_head = FPNHead(num_classes, torch_reference.EMBED_DIMS, channels, fpn_channels)

        def forward(self, x):
            h, w = x.shape[2], x.shape[3]
            x = F.pad(x, (0, -w % TOTAL_STRIDE, 0, -h % TOTAL_STRIDE))  # zeros at the right and bottom
            logits = self.decode_head(self.backbone.forward_stages(x))
            logits = F.interpolate(logits, size=x.shape[2:], mode="bilinear", align_corners=False)
            return logits[:, :, :h, :w]

    return SimpleNamespace(torch=torch, nn=nn, ConvGNReLU=ConvGNReLU, FPNHead=FPNHead, ShuntedFPN=ShuntedFPN)


def build(name: str, num_classes: int, channels: int = HEAD_CHANNELS, fpn_channels: int = FPN_CHANNELS):
    """``shunted_t_fpn`` / ``shunted_s_fpn`` / ``shunted_b_fpn`` in eval mode, PyTorch's default weights."""
    return _define().ShuntedFPN(name, num_classes, channels, fpn_channels).eval()


def _describe(state) -> tuple[str, int, int, int]:
    blocks: dict[int, set[int]] = {i: set() for i in range(1, 5)}
    for key in state:
        m = _BLOCK.match(key)
        if m:
            blocks[int(m.group(1))].add(int(m.group(2)))
    depths = tuple(len(blocks[i]) for i in range(1, 5))
    num_conv = sum(1 for k in state if _STEM_CONV.match(k) and np.ndim(state[k]) == 4) - 2
    name = next((n for n, v in torch_reference.VARIANTS.items() if v == (depths, num_conv)), None)
    if name is None:
        raise ValueError(f"no Shunted variant has block depths {list(depths)} and {num_conv} stem convs")
    cls = np.shape(state["decode_head.conv_seg.weight"])
    fpn = np.shape(state["decode_head.fpn_convs.0.weight"])[0]
    return f"{name}_fpn", int(cls[0]), int(cls[1]), int(fpn)


def from_state_dict(state):
    """The torch model holding a Paddle-layout numpy state dict (``ShuntedFPN.state_dict()`` as arrays), strictly."""
    from shunted.convert.mapping import paddle_to_torch

    name, num_classes, channels, fpn_channels = _describe(state)
    model = build(name, num_classes, channels, fpn_channels)
    torch = _define().torch
    tensors = {k: torch.from_numpy(np.array(v)) for k, v in paddle_to_torch(state).items()}
    model.load_state_dict(tensors, strict=True)
    return model.float().eval()


def paddle_state_dict(model) -> dict[str, np.ndarray]:
    """The torch model's weights as numpy arrays in the Paddle layout (``apply_state_dict`` loads them)."""
    from shunted.convert.mapping import torch_to_paddle

    return torch_to_paddle(torch_reference.state_dict_numpy(model))


def randomize_(model, seed: int = 0):
    """Every weight at random (as ``torch_reference.randomize_``) and GroupNorm scales/shifts ≠ (1, 0)."""
    ns = _define()
    torch, nn = ns.torch, ns.nn
    torch_reference.randomize_(model, seed)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.GroupNorm):
                module.weight.copy_(torch.rand(module.weight.shape, generator=gen) + 0.5)
                module.bias.copy_(torch.randn(module.bias.shape, generator=gen) * 0.1)
    return model
