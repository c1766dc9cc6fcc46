"""Shunted Transformer (Ren et al., CVPR 2022) in Paddle, with the official module and parameter names.

An official PyTorch state dict maps onto this network by two rules (``shunted.convert.mapping``): transpose Linear
weights, rename BatchNorm ``running_mean``/``running_var`` to ``_mean``/``_variance``. docs/architecture.md states
the model facts; comments here only point at the places where a detail is easy to get wrong. The CPU speed layers
(``BiasViewConv2D``, ``PixelLinear``) and the layout helpers live in ``layers.py``.

Tokens are (B, N, C) with N = H·W. All reshapes keep the batch dimension symbolic (``0`` = copy, or ``flatten``)
so the network exports with a dynamic batch through ``paddle.jit.to_static``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import paddle
import paddle.nn.functional as F
from paddle import nn

from .layers import BiasViewConv2D, DropPath, PixelLinear, image_to_tokens, tokens_to_image
from .registry import EMBED_DIMS, MLP_RATIOS, NUM_HEADS, SR_RATIOS, STRIDES

# LayerNorm epsilons of the official code: blocks and stage norms use 1e-6, every other LayerNorm PyTorch's 1e-5.
BLOCK_NORM_EPS = 1e-6
EMBED_NORM_EPS = 1e-5
TOTAL_STRIDE = STRIDES[-1]


class DWConv(nn.Layer):
    """Depthwise 3×3 conv of an NCHW image (official name ``dwconv.dwconv``)."""

    def __init__(self, dim: int):
        super().__init__()
        self.dwconv = BiasViewConv2D(dim, dim, 3, stride=1, padding=1, groups=dim)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.dwconv(x)


class Mlp(nn.Layer):
    """Detail-specific feed-forward: fc2(GELU(h + DWConv(h))) with h = fc1(x).

    Computed on the NCHW image, fc1 and fc2 as ``PixelLinear`` (a 1×1 conv with the Linear weights): the only
    layout changes are of the C-wide input and output, not of the 4–8× wider hidden tensor, and oneDNN / ONNX
    Runtime keep their blocked conv layout (and fuse the add and GELU) through the whole feed-forward. On CPU the
    transposes and reorders of the token formulation cost about as much as the convs.
    """

    def __init__(self, dim: int, hidden_dim: int, drop: float = 0.0):
        super().__init__()
        self.fc1 = PixelLinear(dim, hidden_dim)
        self.dwconv = DWConv(hidden_dim)
        self.act = nn.GELU()
        self.fc2 = PixelLinear(hidden_dim, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: paddle.Tensor, height: int, width: int) -> paddle.Tensor:
        x = self.fc1(tokens_to_image(x, x.shape[-1], height, width))
        x = self.act(x + self.dwconv(x))
        x = self.drop(x)
        x = image_to_tokens(self.fc2(x))
        return self.drop(x)


class Attention(nn.Layer):
    """Shunted self-attention.

    sr_ratio r > 1: two key/value branches from the input downsampled by r (``sr1``) and by r/2 (``sr2``); the
    first half of the query heads attends to the coarse branch, the second half to the finer one; each V gets a
    depthwise-conv local enhancement BEFORE the product. sr_ratio 1: plain attention, the local conv of V is added
    AFTER the product.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        sr_ratio: int = 1,
    ):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.dim = dim
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.sr_ratio = sr_ratio
        self.q = nn.Linear(dim, dim, bias_attr=None if qkv_bias else False)
        if sr_ratio > 1:
            half = dim // 2
            self.sr1 = BiasViewConv2D(dim, dim, sr_ratio, stride=sr_ratio)
            self.norm1 = nn.LayerNorm(dim, epsilon=EMBED_NORM_EPS)
            self.sr2 = BiasViewConv2D(dim, dim, sr_ratio // 2, stride=sr_ratio // 2)
            self.norm2 = nn.LayerNorm(dim, epsilon=EMBED_NORM_EPS)
            self.kv1 = nn.Linear(dim, dim, bias_attr=None if qkv_bias else False)
            self.kv2 = nn.Linear(dim, dim, bias_attr=None if qkv_bias else False)
            self.local_conv1 = BiasViewConv2D(half, half, 3, padding=1, groups=half)
            self.local_conv2 = BiasViewConv2D(half, half, 3, padding=1, groups=half)
        else:
            self.kv = nn.Linear(dim, dim * 2, bias_attr=None if qkv_bias else False)
            self.local_conv = BiasViewConv2D(dim, dim, 3, padding=1, groups=dim)
        self.act = nn.GELU()
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def _split_kv(self, kv: paddle.Tensor, heads: int) -> tuple[paddle.Tensor, paddle.Tensor]:
        """(B, Nk, 2·heads·d) → k, v of shape (B, heads, Nk, d)."""
        kv = kv.reshape([0, -1, 2, heads, self.head_dim]).transpose([2, 0, 3, 1, 4])
        return kv[0], kv[1]

    def _local(self, conv: nn.Layer, v: paddle.Tensor, height: int, width: int) -> paddle.Tensor:
        """Depthwise conv of V (B, heads, Nk, d) viewed as an image whose channel = head·d + k; same layout back."""
        heads = v.shape[1]
        image = v.transpose([0, 1, 3, 2]).reshape([0, heads * self.head_dim, height, width])
        out = conv(image).flatten(2).reshape([0, heads, self.head_dim, -1])
        return out.transpose([0, 1, 3, 2])

    def _attend(self, q: paddle.Tensor, k: paddle.Tensor, v: paddle.Tensor) -> paddle.Tensor:
        """softmax(q kᵀ · scale) v, returned as tokens (B, N, heads·d) with channel = head·d + k."""
        attn = paddle.matmul(q, k, transpose_y=True) * self.scale
        attn = self.attn_drop(F.softmax(attn, axis=-1))
        out = paddle.matmul(attn, v).transpose([0, 2, 1, 3])
        return out.reshape([0, 0, q.shape[1] * self.head_dim])

    def forward(self, x: paddle.Tensor, height: int, width: int) -> paddle.Tensor:
        heads, r = self.num_heads, self.sr_ratio
        q = self.q(x).reshape([0, 0, heads, self.head_dim]).transpose([0, 2, 1, 3])
        if r > 1:
            half = heads // 2
            image = tokens_to_image(x, self.dim, height, width)
            coarse = self.act(self.norm1(image_to_tokens(self.sr1(image))))
            fine = self.act(self.norm2(image_to_tokens(self.sr2(image))))
            k1, v1 = self._split_kv(self.kv1(coarse), half)
            k2, v2 = self._split_kv(self.kv2(fine), half)
            # Spatial sizes follow the strided convs' floor division.
            v1 = v1 + self._local(self.local_conv1, v1, height // r, width // r)
            v2 = v2 + self._local(self.local_conv2, v2, height * 2 // r, width * 2 // r)
            x = paddle.concat([self._attend(q[:, :half], k1, v1), self._attend(q[:, half:], k2, v2)], axis=-1)
        else:
            k, v = self._split_kv(self.kv(x), heads)
            x = self._attend(q, k, v) + image_to_tokens(
                self.local_conv(v.transpose([0, 1, 3, 2]).reshape([0, self.dim, height, width]))
            )
        x = self.proj(x)
        return self.proj_drop(x)


class Block(nn.Layer):
    """Pre-norm residual block: x + DropPath(attn(norm1(x))), then x + DropPath(mlp(norm2(x)))."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float,
        sr_ratio: int,
        qkv_bias: bool = True,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
    ):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, epsilon=BLOCK_NORM_EPS)
        self.attn = Attention(
            dim, num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=drop, sr_ratio=sr_ratio
        )
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, epsilon=BLOCK_NORM_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)

    def forward(self, x: paddle.Tensor, height: int, width: int) -> paddle.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), height, width))
        return x + self.drop_path(self.mlp(self.norm2(x), height, width))


class Head(nn.Layer):
    """Stage-1 stem (official class ``Head``): conv7×7/2+BN+ReLU, num_conv × (conv3×3+BN+ReLU), conv2×2/2, LN."""

    def __init__(self, num_conv: int, in_chans: int = 3, dim: int = EMBED_DIMS[0]):
        super().__init__()
        stem: list[nn.Layer] = [
            nn.Conv2D(in_chans, dim, 7, stride=2, padding=3, bias_attr=False),
            nn.BatchNorm2D(dim),
            nn.ReLU(),
        ]
        for _ in range(num_conv):
            stem += [
                nn.Conv2D(dim, dim, 3, stride=1, padding=1, bias_attr=False),
                nn.BatchNorm2D(dim),
                nn.ReLU(),
            ]
        stem.append(BiasViewConv2D(dim, dim, 2, stride=2))
        self.conv = nn.Sequential(*stem)
        self.norm = nn.LayerNorm(dim, epsilon=EMBED_NORM_EPS)

    def forward(self, x: paddle.Tensor) -> tuple[paddle.Tensor, int, int]:
        x = self.conv(x)
        height, width = x.shape[2], x.shape[3]
        return self.norm(image_to_tokens(x)), height, width


class OverlapPatchEmbed(nn.Layer):
    """Stages 2–4 embedding: conv 3×3 stride 2 (bias), flatten, LayerNorm (eps 1e-5)."""

    def __init__(self, in_chans: int, embed_dim: int, patch_size: int = 3, stride: int = 2):
        super().__init__()
        self.proj = BiasViewConv2D(in_chans, embed_dim, patch_size, stride=stride, padding=patch_size // 2)
        self.norm = nn.LayerNorm(embed_dim, epsilon=EMBED_NORM_EPS)

    def forward(self, x: paddle.Tensor) -> tuple[paddle.Tensor, int, int]:
        x = self.proj(x)
        height, width = x.shape[2], x.shape[3]
        return self.norm(image_to_tokens(x)), height, width


class ShuntedTransformer(nn.Layer):
    """The Shunted Transformer classifier, or (``features_only=True``) a backbone returning stage maps.

    ``forward(x)`` → logits; ``forward_features(x)`` → last stage map (B, 512, H/32, W/32);
    ``forward_head(x)`` → logits from that map; ``forward_stages(x)`` → the four stage maps (NCHW).
    """

    def __init__(
        self,
        depths: Sequence[int],
        num_conv: int,
        num_classes: int = 1000,
        in_chans: int = 3,
        embed_dims: Sequence[int] = EMBED_DIMS,
        num_heads: Sequence[int] = NUM_HEADS,
        mlp_ratios: Sequence[float] = MLP_RATIOS,
        sr_ratios: Sequence[int] = SR_RATIOS,
        qkv_bias: bool = True,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        features_only: bool = False,
        out_indices: Sequence[int] = (0, 1, 2, 3),
    ):
        super().__init__()
        self.depths = tuple(depths)
        self.num_stages = len(self.depths)
        self.embed_dims = tuple(embed_dims)
        self.num_features = self.embed_dims[-1]
        self.features_only = features_only
        self.out_indices = tuple(out_indices)
        for i in self.out_indices:
            if not 0 <= i < self.num_stages:
                raise ValueError(f"out_indices must lie in 0..{self.num_stages - 1}; got {self.out_indices}")
        self.feature_info = [
            {"num_chs": c, "reduction": s, "module": f"norm{i + 1}", "stage": i}
            for i, (c, s) in enumerate(zip(self.embed_dims, STRIDES, strict=True))
            if not features_only or i in self.out_indices
        ]

        rates = paddle.linspace(0, drop_path_rate, sum(self.depths)).tolist() if drop_path_rate else None
        cursor = 0
        for i in range(self.num_stages):
            if i == 0:
                patch_embed: nn.Layer = Head(num_conv, in_chans, self.embed_dims[0])
            else:
                patch_embed = OverlapPatchEmbed(self.embed_dims[i - 1], self.embed_dims[i])
            blocks = nn.LayerList(
                [
                    Block(
                        self.embed_dims[i],
                        num_heads[i],
                        mlp_ratios[i],
                        sr_ratios[i],
                        qkv_bias=qkv_bias,
                        drop=drop_rate,
                        attn_drop=attn_drop_rate,
                        drop_path=rates[cursor + j] if rates else 0.0,
                    )
                    for j in range(self.depths[i])
                ]
            )
            cursor += self.depths[i]
            setattr(self, f"patch_embed{i + 1}", patch_embed)
            setattr(self, f"block{i + 1}", blocks)
            setattr(self, f"norm{i + 1}", nn.LayerNorm(self.embed_dims[i], epsilon=BLOCK_NORM_EPS))

        self.num_classes = 0 if features_only else num_classes
        self.head = self._new_head(self.num_classes) if not features_only else None
        self.apply(init_weights)

    # -- classifier ---------------------------------------------------------------------------------------------
    def _new_head(self, num_classes: int) -> nn.Layer:
        if num_classes <= 0:
            return nn.Identity()
        head = nn.Linear(self.num_features, num_classes)
        init_weights(head)
        return head

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the head by a freshly initialised one with ``num_classes`` outputs (0: no head, pooled features)."""
        if self.features_only:
            raise ValueError("a features_only model has no classifier")
        self.num_classes = num_classes
        self.head = self._new_head(num_classes)

    def get_classifier(self) -> nn.Layer:
        return self.head

    def no_weight_decay(self) -> set[str]:
        """Parameters the official recipe does not decay: every bias and norm scale (all 1-D parameters)."""
        return {name for name, p in self.named_parameters() if p.ndim <= 1}

    # -- forward ------------------------------------------------------------------------------------------------
    @staticmethod
    def check_input(x: paddle.Tensor) -> None:
        height, width = x.shape[-2], x.shape[-1]
        bad = [s for s in (height, width) if isinstance(s, int) and s > 0 and s % TOTAL_STRIDE]
        if x.ndim != 4 or bad:
            raise ValueError(
                f"Shunted Transformer needs a (B, C, H, W) input whose height and width are multiples of "
                f"{TOTAL_STRIDE} (its four stages downsample by {TOTAL_STRIDE}); got shape {list(x.shape)}"
            )

    def forward_stages(self, x: paddle.Tensor) -> list[paddle.Tensor]:
        """The output of every stage (after its norm) as an NCHW map, strides 4/8/16/32."""
        self.check_input(x)
        maps = []
        for i in range(self.num_stages):
            x, height, width = getattr(self, f"patch_embed{i + 1}")(x)
            for blk in getattr(self, f"block{i + 1}"):
                x = blk(x, height, width)
            x = tokens_to_image(getattr(self, f"norm{i + 1}")(x), self.embed_dims[i], height, width)
            maps.append(x)
        return maps

    def forward_features(self, x: paddle.Tensor) -> paddle.Tensor:
        """The last stage's map (B, 512, H/32, W/32), before pooling."""
        return self.forward_stages(x)[-1]

    def forward_head(self, x: paddle.Tensor, pre_logits: bool = False) -> paddle.Tensor:
        """Mean over the last stage's positions, then the linear head (skipped with ``pre_logits``)."""
        x = x.mean(axis=[2, 3])
        return x if pre_logits or self.head is None else self.head(x)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor | list[paddle.Tensor]:
        if self.features_only:
            maps = self.forward_stages(x)
            return [maps[i] for i in self.out_indices]
        return self.forward_head(self.forward_features(x))


def init_weights(layer: nn.Layer) -> None:
    """The official initialisation: trunc-normal(0.02) Linear, unit LayerNorm, He-style (fan_out) conv."""
    if isinstance(layer, nn.Linear):
        nn.initializer.TruncatedNormal(std=0.02)(layer.weight)
        if layer.bias is not None:
            nn.initializer.Constant(0.0)(layer.bias)
    elif isinstance(layer, nn.LayerNorm):
        nn.initializer.Constant(1.0)(layer.weight)
        nn.initializer.Constant(0.0)(layer.bias)
    elif isinstance(layer, nn.Conv2D):
        out_channels, _, kh, kw = layer.weight.shape
        fan_out = kh * kw * out_channels // layer._groups
        nn.initializer.Normal(0.0, math.sqrt(2.0 / fan_out))(layer.weight)
        if layer.bias is not None:
            nn.initializer.Constant(0.0)(layer.bias)
