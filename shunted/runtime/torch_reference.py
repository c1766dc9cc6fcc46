"""An independent PyTorch transcription of the Shunted Transformer (inference only), the yardstick of the port.

Written from the model description (docs/model.md) alone, with the official module and parameter names, so that
its state dict has the official checkpoint layout; it never reads the package's Paddle model code. Dropout and
stochastic depth are left out: they are identities in eval mode. ``shunted bench`` runs it for its ``torch``
backend (``torch_worker.py``) and the tests compare the port with it. torch is optional: it is imported when a
model is first built, never when this module is imported.

API:
    build(name, num_classes=1000) -> ShuntedTransformer   (``shunted_t`` / ``shunted_s`` / ``shunted_b``)
    randomize_(model, seed) -> model                       every parameter and BN statistic drawn at random
    state_dict_numpy(model) -> dict[str, np.ndarray]       the official-layout state dict as numpy arrays
    model(x) -> logits;  model.forward_stages(x) -> the four NCHW stage maps (after ``norm{i}``)
    The module classes (``ShuntedTransformer``, ``Attention``, ...) are attributes too (built on first access).
"""

from __future__ import annotations

import functools
import math
from types import SimpleNamespace

import numpy as np

EMBED_DIMS = (64, 128, 256, 512)
NUM_HEADS = (2, 4, 8, 16)
MLP_RATIOS = (8, 8, 4, 4)
SR_RATIOS = (8, 4, 2, 1)
# name: (depths, num_conv) — docs/model.md.
VARIANTS = {
    "shunted_t": ((1, 2, 4, 1), 0),
    "shunted_s": ((2, 4, 12, 1), 1),
    "shunted_b": ((3, 4, 24, 2), 2),
}
BLOCK_EPS = 1e-6  # block norm1/norm2 and the stage norms norm{i}
EMBED_EPS = 1e-5  # stem norm, patch-embedding norms, the attention's sr norms (PyTorch's default)


@functools.cache
def _define() -> SimpleNamespace:
    """The module classes, defined on first use (this is where torch is imported)."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    def _gelu(x: torch.Tensor) -> torch.Tensor:
        return F.gelu(x)  # exact (erf) form

    class Head(nn.Module):
        """Stage-1 stem: conv7 s2 + BN + ReLU, ``num_conv`` × (conv3 + BN + ReLU), conv2 s2 (bias); LayerNorm."""

        def __init__(self, num_conv: int, dim: int = 64):
            super().__init__()
            layers: list[nn.Module] = [
                nn.Conv2d(3, dim, 7, stride=2, padding=3, bias=False),
                nn.BatchNorm2d(dim),
                nn.ReLU(),
            ]
            for _ in range(num_conv):
                layers += [
                    nn.Conv2d(dim, dim, 3, stride=1, padding=1, bias=False),
                    nn.BatchNorm2d(dim),
                    nn.ReLU(),
                ]
            layers.append(nn.Conv2d(dim, dim, 2, stride=2, bias=True))
            self.conv = nn.Sequential(*layers)
            self.norm = nn.LayerNorm(dim, eps=EMBED_EPS)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
            x = self.conv(x)
            h, w = x.shape[2], x.shape[3]
            return self.norm(x.flatten(2).transpose(1, 2)), h, w

    class OverlapPatchEmbed(nn.Module):
        """Stages 2–4 embedding: conv3 stride 2 pad 1 (bias), then LayerNorm."""

        def __init__(self, in_dim: int, dim: int):
            super().__init__()
            self.proj = nn.Conv2d(in_dim, dim, 3, stride=2, padding=1, bias=True)
            self.norm = nn.LayerNorm(dim, eps=EMBED_EPS)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
            x = self.proj(x)
            h, w = x.shape[2], x.shape[3]
            return self.norm(x.flatten(2).transpose(1, 2)), h, w

    class Attention(nn.Module):
        """Shunted self-attention: two key/value scales for r > 1, plain attention + local conv for r = 1."""

        def __init__(self, dim: int, num_heads: int, sr_ratio: int):
            super().__init__()
            self.dim, self.num_heads, self.sr_ratio = dim, num_heads, sr_ratio
            self.head_dim = dim // num_heads
            self.scale = self.head_dim**-0.5
            self.q = nn.Linear(dim, dim, bias=True)
            if sr_ratio > 1:
                half = sr_ratio // 2
                self.sr1 = nn.Conv2d(dim, dim, sr_ratio, stride=sr_ratio, bias=True)
                self.norm1 = nn.LayerNorm(dim, eps=EMBED_EPS)
                self.sr2 = nn.Conv2d(dim, dim, half, stride=half, bias=True)
                self.norm2 = nn.LayerNorm(dim, eps=EMBED_EPS)
                self.kv1 = nn.Linear(dim, dim, bias=True)
                self.kv2 = nn.Linear(dim, dim, bias=True)
                self.local_conv1 = nn.Conv2d(dim // 2, dim // 2, 3, padding=1, groups=dim // 2, bias=True)
                self.local_conv2 = nn.Conv2d(dim // 2, dim // 2, 3, padding=1, groups=dim // 2, bias=True)
            else:
                self.kv = nn.Linear(dim, 2 * dim, bias=True)
                self.local_conv = nn.Conv2d(dim, dim, 3, padding=1, groups=dim, bias=True)
            self.proj = nn.Linear(dim, dim, bias=True)

        def _reduce(self, x_img: torch.Tensor, sr: nn.Conv2d, norm: nn.LayerNorm) -> torch.Tensor:
            """Strided conv → tokens → LayerNorm → GELU."""
            return _gelu(norm(sr(x_img).flatten(2).transpose(1, 2)))

        def _branch(self, q, tokens, kv: nn.Linear, local: nn.Conv2d, h: int, w: int) -> torch.Tensor:
            """One key/value scale with h/2 heads; the local conv enhances V before the product."""
            b, nk, _ = tokens.shape
            heads, d = self.num_heads // 2, self.head_dim
            kv_ = kv(tokens).reshape(b, nk, 2, heads, d).permute(2, 0, 3, 1, 4)  # 2, B, heads, Nk, d
            k, v = kv_[0], kv_[1]
            # v as an image (B, C/2, h, w) with channel = head·d + k
            v_img = v.permute(0, 1, 3, 2).reshape(b, heads * d, h, w)
            v = v + local(v_img).reshape(b, heads, d, nk).permute(0, 1, 3, 2)
            attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
            return (attn @ v).transpose(1, 2).reshape(b, -1, heads * d)  # (B, N, C/2), channel = head·d + k

        def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
            b, n, c = x.shape
            q = self.q(x).reshape(b, n, self.num_heads, self.head_dim).permute(0, 2, 1, 3)  # B, h, N, d
            if self.sr_ratio > 1:
                r = self.sr_ratio
                x_img = x.transpose(1, 2).reshape(b, c, h, w)
                t1 = self._reduce(x_img, self.sr1, self.norm1)
                t2 = self._reduce(x_img, self.sr2, self.norm2)
                half = self.num_heads // 2
                x1 = self._branch(q[:, :half], t1, self.kv1, self.local_conv1, h // r, w // r)
                x2 = self._branch(q[:, half:], t2, self.kv2, self.local_conv2, h * 2 // r, w * 2 // r)
                out = torch.cat([x1, x2], dim=-1)
            else:
                kv = self.kv(x).reshape(b, n, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
                k, v = kv[0], kv[1]
                attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
                out = (attn @ v).transpose(1, 2).reshape(b, n, c)
                v_img = v.transpose(1, 2).reshape(b, n, c).transpose(1, 2).reshape(b, c, h, w)
                out = out + self.local_conv(v_img).flatten(2).transpose(1, 2)  # added AFTER attention
            return self.proj(out)

    class DWConv(nn.Module):
        """Depthwise 3×3 conv on tokens viewed as an image."""

        def __init__(self, dim: int):
            super().__init__()
            self.dwconv = nn.Conv2d(dim, dim, 3, padding=1, groups=dim, bias=True)

        def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
            b, n, c = x.shape
            return self.dwconv(x.transpose(1, 2).reshape(b, c, h, w)).flatten(2).transpose(1, 2)

    class Mlp(nn.Module):
        """Detail-specific feed-forward: fc1 → GELU(h + DWConv(h)) → fc2."""

        def __init__(self, dim: int, hidden: int):
            super().__init__()
            self.fc1 = nn.Linear(dim, hidden)
            self.dwconv = DWConv(hidden)
            self.fc2 = nn.Linear(hidden, dim)

        def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
            x = self.fc1(x)
            return self.fc2(_gelu(x + self.dwconv(x, h, w)))

    class Block(nn.Module):
        """Pre-norm residual block (LayerNorm eps 1e-6)."""

        def __init__(self, dim: int, num_heads: int, mlp_ratio: int, sr_ratio: int):
            super().__init__()
            self.norm1 = nn.LayerNorm(dim, eps=BLOCK_EPS)
            self.attn = Attention(dim, num_heads, sr_ratio)
            self.norm2 = nn.LayerNorm(dim, eps=BLOCK_EPS)
            self.mlp = Mlp(dim, dim * mlp_ratio)

        def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
            x = x + self.attn(self.norm1(x), h, w)
            return x + self.mlp(self.norm2(x), h, w)

    class ShuntedTransformer(nn.Module):
        """Four stages → mean over the last stage's tokens → Linear head."""

        def __init__(self, depths, num_conv: int, num_classes: int = 1000):
            super().__init__()
            self.depths = tuple(depths)
            for i in range(4):
                dim = EMBED_DIMS[i]
                embed = Head(num_conv, dim) if i == 0 else OverlapPatchEmbed(EMBED_DIMS[i - 1], dim)
                setattr(self, f"patch_embed{i + 1}", embed)
                blocks = [Block(dim, NUM_HEADS[i], MLP_RATIOS[i], SR_RATIOS[i]) for _ in range(depths[i])]
                setattr(self, f"block{i + 1}", nn.ModuleList(blocks))
                setattr(self, f"norm{i + 1}", nn.LayerNorm(dim, eps=BLOCK_EPS))
            self.head = nn.Linear(EMBED_DIMS[-1], num_classes) if num_classes > 0 else nn.Identity()

        def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
            """The four stage outputs (after ``norm{i}``) as NCHW maps."""
            outs = []
            for i in range(1, 5):
                x, h, w = getattr(self, f"patch_embed{i}")(x)
                for blk in getattr(self, f"block{i}"):
                    x = blk(x, h, w)
                x = getattr(self, f"norm{i}")(x)
                x = x.reshape(x.shape[0], h, w, -1).permute(0, 3, 1, 2)
                outs.append(x)
            return outs

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            last = self.forward_stages(x)[-1]
            return self.head(last.flatten(2).mean(dim=2))

    return SimpleNamespace(
        torch=torch,
        nn=nn,
        Head=Head,
        OverlapPatchEmbed=OverlapPatchEmbed,
        Attention=Attention,
        DWConv=DWConv,
        Mlp=Mlp,
        Block=Block,
        ShuntedTransformer=ShuntedTransformer,
    )


_CLASSES = ("Head", "OverlapPatchEmbed", "Attention", "DWConv", "Mlp", "Block", "ShuntedTransformer")


def __getattr__(name: str):
    if name in _CLASSES:
        return getattr(_define(), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build(name: str, num_classes: int = 1000):
    """A reference model in eval mode (weights are PyTorch's defaults; call :func:`randomize_`)."""
    depths, num_conv = VARIANTS[name]
    return _define().ShuntedTransformer(depths, num_conv, num_classes).eval()


def randomize_(model, seed: int = 0):
    """Draw every parameter and BatchNorm statistic at random, so no term of the computation is trivial.

    Weights: normal with std 1/sqrt(fan_in) (activations stay O(1)); biases: normal std 0.1 (≠ 0);
    LayerNorm/BatchNorm scales: uniform [0.5, 1.5] (≠ 1); BN running mean: normal std 0.1;
    BN running var: uniform [0.5, 2] (positive).
    """
    ns = _define()
    torch, nn = ns.torch, ns.nn
    gen = torch.Generator().manual_seed(seed)

    def draw(shape, std=1.0, low=None, high=None):
        if low is not None:
            return torch.rand(shape, generator=gen) * (high - low) + low
        return torch.randn(shape, generator=gen) * std

    with torch.no_grad():
        _randomize(model, draw, nn)
    return model


def _randomize(model, draw, nn) -> None:
    for module in model.modules():
        if isinstance(module, (nn.LayerNorm, nn.BatchNorm2d)):
            module.weight.copy_(draw(module.weight.shape, low=0.5, high=1.5))
            module.bias.copy_(draw(module.bias.shape, std=0.1))
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.copy_(draw(module.running_mean.shape, std=0.1))
                module.running_var.copy_(draw(module.running_var.shape, low=0.5, high=2.0))
        elif isinstance(module, (nn.Linear, nn.Conv2d)):
            fan_in = math.prod(module.weight.shape[1:])
            module.weight.copy_(draw(module.weight.shape, std=fan_in**-0.5))
            if module.bias is not None:
                module.bias.copy_(draw(module.bias.shape, std=0.1))


def state_dict_numpy(model) -> dict[str, np.ndarray]:
    """The official-layout state dict (names as in the published checkpoints) as numpy arrays."""
    return {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}
