"""``vit``: a Vision Transformer (Dosovitskiy et al., 2021) sized for small images.

Patches of ``patch`` x ``patch`` pixels are embedded by a strided convolution, a learned class
token and learned position embeddings are added, then ``depth`` pre-norm blocks (multi-head
self-attention, then a GELU MLP of ``mlp_ratio`` times the width, each with a residual), a final
LayerNorm and a linear head on the class token. No dropout: the layers behave the same in
``eval`` and ``train`` mode.

Attention is written out (``softmax(q k^T / sqrt(d)) v``) instead of calling
``scaled_dot_product_attention``: the simulation differentiates the training step a second time,
and the fused attention kernels do not all support that; the explicit form does on every device.

State dict: ``cls_token`` (1, 1, dim), ``pos_embed`` (1, 1 + patches, dim),
``patch_embed.weight`` (dim, C, patch, patch), ``patch_embed.bias``; per block ``i``:
``blocks.i.norm1.{weight,bias}``, ``blocks.i.attn.qkv.{weight,bias}`` (3 dim, dim),
``blocks.i.attn.proj.{weight,bias}``, ``blocks.i.norm2.{weight,bias}``,
``blocks.i.mlp.0.{weight,bias}`` (ratio dim, dim), ``blocks.i.mlp.2.{weight,bias}``; then
``norm.{weight,bias}`` and ``head.{weight,bias}``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from core.architectures import ARCHITECTURES


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, dim = x.shape
        q, k, v = self.qkv(x).reshape(n, t, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        weights = torch.softmax(q @ k.transpose(-2, -1) * (dim // self.heads) ** -0.5, dim=-1)
        return self.proj((weights @ v).transpose(1, 2).reshape(n, t, dim))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    def __init__(self, image_shape: tuple[int, int, int], patch: int, dim: int, depth: int, heads: int,
                 mlp_ratio: int, num_classes: int):
        super().__init__()
        channels, height, width = image_shape
        patches = (height // patch) * (width // patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, 1 + patches, dim) * 0.02)
        self.patch_embed = nn.Conv2d(channels, dim, patch, stride=patch)
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(len(x), -1, -1), tokens], dim=1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x[:, 0]))


def _int_option(options: dict[str, Any], name: str, default: int, high: int) -> int:
    value = options.pop(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= high:
        raise TypeError(f"{name} must be an integer from 1 to {high}")
    return value


@ARCHITECTURES.register("vit")
def build(options: dict[str, Any], num_classes: int, image_shape: tuple[int, int, int]) -> nn.Module:
    """Vision Transformer. Options: patch (default 4), dim (192), depth (6), heads (3; must
    divide dim), mlp_ratio (4). The image's height and width must be multiples of patch."""
    patch = _int_option(options, "patch", 4, 1024)
    dim = _int_option(options, "dim", 192, 16384)
    depth = _int_option(options, "depth", 6, 256)
    heads = _int_option(options, "heads", 3, 256)
    mlp_ratio = _int_option(options, "mlp_ratio", 4, 64)
    if options:
        raise TypeError(f"unknown options {sorted(options)}")
    if dim % heads:
        raise ValueError(f"heads ({heads}) must divide dim ({dim})")
    if image_shape[1] % patch or image_shape[2] % patch:
        raise ValueError(f"the image's height and width ({image_shape[1]}, {image_shape[2]}) must be "
                         f"multiples of patch ({patch})")
    return ViT(image_shape, patch, dim, depth, heads, mlp_ratio, num_classes)
