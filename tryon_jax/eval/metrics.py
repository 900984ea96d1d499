"""Paired image metrics: SSIM and PSNR (dm-pix), one value per image pair.

    ssim(generated, target, value_range=(-1.0, 1.0))   # model outputs in [-1, 1]
    psnr(uint8_a, uint8_b)                               # uint8 images: range [0, 255] implied

Images are [N, H, W, C] (or [H, W, C]). Both metrics are computed on images rescaled to [0, 1]
(uint8 / 255; float images from ``value_range``, default (0, 1), clipped to it first), i.e. with
a dynamic range of 1 as scikit-image's ``data_range=1``. SSIM is dm-pix's Gaussian SSIM (11x11
window, sigma 1.5, K1 0.01, K2 0.03: Wang et al. 2004, equal to scikit-image with
``gaussian_weights=True``), averaged over pixels and channels. PSNR is 10 log10(1 / MSE); an exact
match gives +inf.
"""

from __future__ import annotations

import dm_pix
import jax
import jax.numpy as jnp
import numpy as np

ArrayLike = np.ndarray | jax.Array


def to_unit_range(images: ArrayLike, value_range: tuple[float, float] = (0.0, 1.0)) -> jax.Array:
  """uint8 images (value_range ignored) or float images in ``value_range`` -> float32 in [0, 1]."""
  if images.dtype == np.uint8:
    return jnp.asarray(images, jnp.float32) / 255.0
  low, high = float(value_range[0]), float(value_range[1])
  if not high > low:
    raise ValueError(f"value_range={value_range}: the high end must exceed the low end")
  images = jnp.clip(jnp.asarray(images, jnp.float32), low, high)
  return (images - low) / (high - low)


def _pair(a: ArrayLike, b: ArrayLike, value_range: tuple[float, float]
          ) -> tuple[jax.Array, jax.Array]:
  if a.shape != b.shape or a.ndim not in (3, 4):
    raise ValueError(f"paired metrics need equal [N, H, W, C] (or [H, W, C]) shapes, got "
                     f"{a.shape} and {b.shape}")
  return to_unit_range(a, value_range), to_unit_range(b, value_range)


def ssim(a: ArrayLike, b: ArrayLike, value_range: tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
  """SSIM per image pair: float [N] (a scalar for [H, W, C] inputs)."""
  a, b = _pair(a, b, value_range)
  return np.asarray(dm_pix.ssim(a, b, max_val=1.0))


def psnr(a: ArrayLike, b: ArrayLike, value_range: tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
  """PSNR in dB per image pair: float [N] (a scalar for [H, W, C] inputs); +inf where equal."""
  a, b = _pair(a, b, value_range)
  return np.asarray(dm_pix.psnr(a, b))
