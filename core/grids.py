"""PNG image grids: the reconstructions, and (with ground truth) each reconstruction above its
paired original, best first, with its score."""

from __future__ import annotations

import io
import math
from typing import Sequence

import torch
from PIL import Image, ImageDraw

from core.data import unit_to_uint8

MIN_SCALE = 2  # CIFAR images are tiny; at least double them so a grid is readable
MIN_TILE = 32  # pixels: a caption such as "0.57" fits under a tile this wide
GAP = 2


def _tile(x01: torch.Tensor) -> list[Image.Image]:
    arr = unit_to_uint8(x01)
    tiles = []
    for a in arr:
        img = Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a[..., :3])
        scale = max(MIN_SCALE, -(-MIN_TILE // img.width))  # whole multiples keep pixels crisp
        tiles.append(img.resize((img.width * scale, img.height * scale), Image.NEAREST))
    return tiles


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def reconstruction_grid_png(x01: torch.Tensor, columns: int = 10,
                            captions: Sequence[str] | None = None) -> bytes:
    tiles = _tile(x01)
    w, h = tiles[0].size
    caption_h = 12 if captions else 0
    cols = min(columns, len(tiles))
    rows = math.ceil(len(tiles) / cols)
    canvas = Image.new("RGB", (cols * (w + GAP) + GAP, rows * (h + caption_h + GAP) + GAP), "white")
    draw = ImageDraw.Draw(canvas)
    for k, tile in enumerate(tiles):
        x0 = GAP + (k % cols) * (w + GAP)
        y0 = GAP + (k // cols) * (h + caption_h + GAP)
        canvas.paste(tile.convert("RGB"), (x0, y0))
        if captions:
            draw.text((x0 + 1, y0 + h), captions[k], fill="black")
    return _png(canvas)


def pairs_grid_png(recon01: torch.Tensor, truth01: torch.Tensor, pairs: Sequence[dict],
                   columns: int = 10) -> bytes:
    """Rows of reconstructions with their paired originals underneath, best pair first; each
    column is captioned with the pair's paper-protocol SSIM."""
    recon_tiles, truth_tiles = _tile(recon01), _tile(truth01)
    w, h = recon_tiles[0].size
    caption_h = 12
    cols = max(1, min(columns, len(pairs)))
    rows = math.ceil(len(pairs) / cols)
    block_h = 2 * h + caption_h + 3 * GAP
    canvas = Image.new("RGB", (cols * (w + GAP) + GAP, rows * block_h + GAP), "white")
    draw = ImageDraw.Draw(canvas)
    for k, pair in enumerate(pairs):
        x0 = GAP + (k % cols) * (w + GAP)
        y0 = GAP + (k // cols) * block_h
        canvas.paste(recon_tiles[pair["reconstruction"]].convert("RGB"), (x0, y0))
        canvas.paste(truth_tiles[pair["original"]].convert("RGB"), (x0, y0 + h + GAP))
        draw.text((x0 + 1, y0 + 2 * h + GAP), f"{pair['ssim_paper']:.2f}", fill="black")
    return _png(canvas)
