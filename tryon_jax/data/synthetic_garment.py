"""Garments of the synthetic try-on set: procedural patterns over cloth coordinates, PIL prints.

A `Garment` maps cloth coordinates (body units: x around the body, y down it) to colours: stripes,
checks, dots, gradients, all-over text or logo tiles, plus an optional chest print (text or logo).
A noise garment (noise_garment) is a random colour per cell of a fine grid over the cloth.
The renderer (synthetic_render.py) decides where each pixel's cloth coordinates come from.
"""

from __future__ import annotations

import colorsys
import dataclasses
import functools

import numpy as np
from PIL import Image, ImageDraw, ImageFont

_PATTERN_KINDS = ("stripes", "checks", "dots", "gradient", "text", "logos")
PERIODIC_KINDS = ("stripes", "checks", "dots")  # drawn at Garment.period; the rest are coarser
# noise_garment: the cell size at pattern_scale 1, body units. At the learning study's pattern
# scale 4 a cell is 0.06 units, 1.7-1.9 px of its 32 px records (sample_garment's period-to-pixel
# figures): per-pixel noise that survives the record's downscale, which averages finer cells away.
NOISE_CELL_UNITS = 0.015
NOISE_TILE_CELLS = 64  # the tile wraps every 64 cells: wider than any garment, so no visible repeat
_WORDS = ("SUMMER", "TOKYO", "CLUB", "1987", "WAVE", "NOVA", "JAX", "HELLO", "SPORT", "CITY",
          "LOVE", "ZEN", "RUN", "BERLIN", "SURF", "MOON", "OK", "TEAM 7", "ROCK", "SUN")


def hsv(h: float, s: float, v: float) -> np.ndarray:
  return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), np.float32)


def random_colour(rng: np.random.Generator) -> np.ndarray:
  return hsv(rng.random(), rng.uniform(0.15, 0.95), rng.uniform(0.25, 0.98))


def coverage(signed_distance: np.ndarray, aa: float) -> np.ndarray:
  """Anti-aliased inside fraction from a signed distance (positive inside), aa = pixel size."""
  return np.clip(0.5 + signed_distance / aa, 0.0, 1.0)[..., None]


def _bands(x: np.ndarray, period: float, duty: float, aa: float) -> np.ndarray:
  """[..., 1] coverage of periodic bands [k*period, k*period + duty*period)."""
  phase = np.mod(x / period, 1.0)
  inside = np.minimum(phase, duty - phase)
  outside = -np.minimum(phase - duty, 1.0 - phase)
  return coverage(np.where(phase < duty, inside, outside) * period, aa)


def bilinear(img: np.ndarray, x: np.ndarray, y: np.ndarray, wrap: bool) -> np.ndarray:
  """Samples img [h, w, C] at texel coords x, y [...] -> [..., C] (wrapped or clamped)."""
  h, w = img.shape[:2]
  if wrap:
    x, y = np.mod(x, w), np.mod(y, h)
  else:
    x, y = np.clip(x, 0, w - 1), np.clip(y, 0, h - 1)
  x0, y0 = np.floor(x).astype(np.int32), np.floor(y).astype(np.int32)
  fx, fy = (x - x0)[..., None], (y - y0)[..., None]
  if wrap:
    x0, y0 = x0 % w, y0 % h
    x1, y1 = (x0 + 1) % w, (y0 + 1) % h
  else:
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
  top = img[y0, x0] * (1 - fx) + img[y0, x1] * fx
  bottom = img[y1, x0] * (1 - fx) + img[y1, x1] * fx
  return top * (1 - fy) + bottom * fy


@functools.lru_cache(maxsize=64)
def _font(size: int) -> ImageFont.ImageFont:
  return ImageFont.load_default(size=size)  # Pillow's bundled scalable font: no system fonts.


@dataclasses.dataclass
class Garment:
  """An upper garment: a pattern over cloth coordinates (body units) plus an optional decal."""
  kind: str
  colours: np.ndarray  # [3, 3] base / second / accent colour
  period: float  # pattern period, body units
  angle: float  # stripe / gradient direction
  duty: float
  tile: np.ndarray | None  # all-over text/logo tile [h, w, 4] (RGBA, float), or None
  tile_units: float  # body units covered by the tile's width
  decal: np.ndarray | None  # chest print [h, w, 4], or None
  decal_size: tuple[float, float]  # (width, height) in body units
  decal_y: float  # decal centre, fraction of torso length
  long_sleeves: bool
  sleeve_fraction: float  # short sleeves: covered fraction of the upper arm
  looseness: float
  hem: float  # hem position, fraction of neck->mid-hip length
  neckline_depth: float  # body units

  def colour(self, x: np.ndarray, y: np.ndarray, aa: float) -> np.ndarray:
    """Pattern colour [..., 3] at cloth coordinates x (around), y (down), body units."""
    c0, c1, c2 = self.colours
    ca, sa = np.cos(self.angle), np.sin(self.angle)
    along = x * ca + y * sa
    if self.kind == "stripes":
      b1 = _bands(along, self.period, self.duty, aa)
      b2 = _bands(along + 0.3 * self.period, self.period, 0.12, aa)
      return c0 + b1 * (c1 - c0) + b2 * (1 - b1) * (c2 - c0)
    if self.kind == "checks":
      across = -x * sa + y * ca
      bx = _bands(along, self.period, self.duty, aa)
      by = _bands(across, self.period, self.duty, aa)
      fine = _bands(along + 0.5 * self.period, self.period, 0.08, aa)
      base = c0 + 0.55 * (bx + by) * (c1 - c0) + 0.4 * fine * (c2 - c0)
      return np.clip(base - 0.25 * bx * by * c1, 0, 1)
    if self.kind == "dots":
      row = np.floor(y / self.period)
      xo = x + 0.5 * self.period * np.mod(row, 2)
      dx = np.mod(xo, self.period) - 0.5 * self.period
      dy = np.mod(y, self.period) - 0.5 * self.period
      cov = coverage(self.duty * 0.45 * self.period - np.hypot(dx, dy), aa)
      return c0 + cov * (c1 - c0)
    if self.kind == "gradient":
      f = (0.5 + 0.5 * np.sin(2 * np.pi * along / (4 * self.period)))[..., None]
      g = (0.5 + 0.5 * np.cos(2 * np.pi * (-x * sa + y * ca) / (6 * self.period)))[..., None]
      return c0 * (1 - f) + c1 * f + 0.35 * g * (c2 - c0)
    base = np.broadcast_to(c0, x.shape + (3,)).astype(np.float32)
    if self.tile is not None:  # "text" / "logos": an all-over print tiled over the cloth.
      scale = self.tile.shape[1] / self.tile_units
      rgba = bilinear(self.tile, x * scale, y * scale, wrap=True)
      base = base + rgba[..., 3:] * (rgba[..., :3] - base)
    return base


def _draw_logo(draw: ImageDraw.ImageDraw, box, colours, rng: np.random.Generator) -> None:
  x0, y0, x1, y1 = box
  cx, cy, r = (x0 + x1) / 2, (y0 + y1) / 2, min(x1 - x0, y1 - y0) / 2
  shape = rng.integers(5)
  fill = tuple(int(255 * c) for c in colours[0]) + (255,)
  second = tuple(int(255 * c) for c in colours[1]) + (255,)
  if shape == 0:  # ring with a dot
    draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=fill, width=max(1, int(r * 0.25)))
    draw.ellipse([cx - r * .35, cy - r * .35, cx + r * .35, cy + r * .35], fill=second)
  elif shape == 1:  # star
    ang = np.pi / 2 + np.arange(10) * np.pi / 5
    rad = np.where(np.arange(10) % 2 == 0, r, r * 0.45)
    draw.polygon([(cx + q * np.cos(a), cy - q * np.sin(a)) for a, q in zip(ang, rad)], fill=fill)
  elif shape == 2:  # triangle over a bar
    draw.polygon([(cx, cy - r), (cx + r, cy + r * .6), (cx - r, cy + r * .6)], fill=fill)
    draw.rectangle([cx - r, cy + r * .7, cx + r, cy + r], fill=second)
  elif shape == 3:  # diamond
    draw.polygon([(cx, cy - r), (cx + r * .7, cy), (cx, cy + r), (cx - r * .7, cy)], fill=fill)
    draw.ellipse([cx - r * .25, cy - r * .25, cx + r * .25, cy + r * .25], fill=second)
  else:  # two overlapping discs
    draw.ellipse([cx - r, cy - r * .6, cx + r * .2, cy + r * .6], fill=fill)
    draw.ellipse([cx - r * .2, cy - r * .6, cx + r, cy + r * .6], fill=second)


def _rgba(img: Image.Image) -> np.ndarray:
  return np.asarray(img, np.float32) / 255.0


def sample_garment(rng: np.random.Generator, texels_per_unit: float,
                   pattern_scale: float = 1.0, flat: bool = False) -> Garment:
  """A random upper garment; texels_per_unit sets the resolution of printed text/logos.

  pattern_scale multiplies the pattern period and the all-over print's tile size (not the chest
  print). At 1, in the learning study's 32 px crops of the person, the held-out stripe, check and
  dot periods are 0.56-1.72 px, below the 2 px Nyquist limit (docs/learning/pattern_reference.py).
  The random draws do not depend on it: other scales give the same garments, rescaled.

  flat=True returns the garment's "flat twin": the same draws, but every pattern colour is the base
  colour and there is no all-over or chest print, so a render differs from the patterned one only
  by the pattern (the learning study's pattern-only score, benchmarks.learning).
  """
  if not pattern_scale > 0:
    raise ValueError(f"pattern_scale must be > 0, got {pattern_scale}")
  kind = _PATTERN_KINDS[rng.integers(len(_PATTERN_KINDS))]
  colours = np.stack([random_colour(rng) for _ in range(3)])
  if rng.random() < 0.5:  # a light base is common on printed shirts
    colours[0] = hsv(rng.random(), rng.uniform(0.0, 0.25), rng.uniform(0.85, 1.0))
  angle = float(rng.choice([0.0, np.pi / 2, rng.uniform(0.3, 1.2), -rng.uniform(0.3, 1.2)]))
  tile, tile_units = None, 1.0
  if kind in ("text", "logos"):
    tile_units = rng.uniform(0.08, 0.14) * pattern_scale
    size = max(8, int(round(tile_units * texels_per_unit)))
    img = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    if kind == "text":
      word = str(rng.choice(_WORDS))
      font = _font(max(4, int(size * 0.28)))
      ink = tuple(int(255 * c) for c in colours[1]) + (255,)
      draw.text((size * 0.05, size * 0.1), word, font=font, fill=ink)
      draw.text((size * 0.55 - size, size * 0.6), word, font=font, fill=ink)
      draw.text((size * 0.55, size * 0.6), word, font=font, fill=ink)
    else:
      _draw_logo(draw, (size * .1, size * .1, size * .9, size * .9), colours[1:], rng)
    tile = _rgba(img)
  decal, decal_size = None, (0.1, 0.1)
  if kind in ("text", "logos") or rng.random() < 0.4:
    dw = rng.uniform(0.09, 0.15)
    dh = dw * rng.uniform(0.45, 1.0)
    w, h = max(8, int(dw * texels_per_unit)), max(6, int(dh * texels_per_unit))
    img = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    decal_colours = np.stack([random_colour(rng), random_colour(rng)])
    if rng.random() < 0.5:
      word = str(rng.choice(_WORDS))
      font = _font(max(5, int(h * 0.7)))
      box = draw.textbbox((0, 0), word, font=font)
      x = (w - (box[2] - box[0])) / 2 - box[0]
      draw.text((x, (h - (box[3] - box[1])) / 2 - box[1]), word, font=font,
                fill=tuple(int(255 * c) for c in decal_colours[0]) + (255,))
    else:
      _draw_logo(draw, (0, 0, w - 1, h - 1), decal_colours, rng)
    decal, decal_size = _rgba(img), (dw, dh)
  if flat:  # after every draw, so that the rest of the example is drawn the same
    colours, tile, decal = np.stack([colours[0]] * 3), None, None
  return Garment(
      kind=kind, colours=colours, period=float(rng.uniform(0.018, 0.06) * pattern_scale),
      angle=angle, duty=float(rng.uniform(0.3, 0.6)), tile=tile, tile_units=float(tile_units),
      decal=decal, decal_size=decal_size, decal_y=float(rng.uniform(0.22, 0.4)),
      long_sleeves=bool(rng.random() < 0.4), sleeve_fraction=float(rng.uniform(0.35, 0.8)),
      looseness=float(rng.uniform(1.0, 1.12)), hem=float(rng.uniform(1.0, 1.12)),
      neckline_depth=float(rng.uniform(0.008, 0.04)))


def noise_garment(garment: Garment, rng: np.random.Generator,
                  pattern_scale: float = 1.0) -> Garment:
  """``garment`` (its cut, sleeves and fit) wearing noise: each cell of a grid over the cloth
  (NOISE_CELL_UNITS * pattern_scale body units) an independent uniform RGB colour, bilinear
  between cell centres, and no chest print. The noise follows the cloth like any pattern, so the
  person and cloth images show the same noise, warped to each pose. Drawn from ``rng`` alone."""
  if not pattern_scale > 0:
    raise ValueError(f"pattern_scale must be > 0, got {pattern_scale}")
  cells = rng.random((NOISE_TILE_CELLS, NOISE_TILE_CELLS, 3), dtype=np.float32)
  tile = np.concatenate([cells, np.ones_like(cells[..., :1])], -1)  # opaque: covers the base
  return dataclasses.replace(garment, kind="noise", tile=tile,
                             tile_units=NOISE_TILE_CELLS * NOISE_CELL_UNITS * pattern_scale,
                             decal=None)
