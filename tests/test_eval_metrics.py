"""SSIM and PSNR (tryon_jax.eval.metrics, dm-pix) on uint8, [0, 1] and [-1, 1] images."""

import numpy as np
import pytest

from tryon_jax.eval import metrics


def image_pair(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """uint8 [2, 40, 48, 3]: smooth images and a noisy copy."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[0:40, 0:48]
  base = 127 + 100 * np.sin(xx[None, ..., None] / 7.0 + rng.uniform(0, 6, (2, 1, 1, 3))) \
      * np.cos(yy[None, ..., None] / 5.0)
  clean = np.clip(base, 0, 255).astype(np.uint8)
  noisy = np.clip(clean + rng.normal(0, 12, clean.shape), 0, 255).astype(np.uint8)
  return clean, noisy


def test_value_ranges_give_the_same_scores():
  clean, noisy = image_pair()
  ref_ssim, ref_psnr = metrics.ssim(clean, noisy), metrics.psnr(clean, noisy)
  assert ref_ssim.shape == (2,) and np.all((ref_ssim > 0.2) & (ref_ssim < 0.99))
  unit = lambda x: x.astype(np.float32) / 255.0
  signed = lambda x: x.astype(np.float32) / 127.5 - 1.0
  np.testing.assert_allclose(metrics.ssim(unit(clean), unit(noisy)), ref_ssim, rtol=1e-5)
  np.testing.assert_allclose(metrics.ssim(signed(clean), signed(noisy), (-1.0, 1.0)), ref_ssim,
                             rtol=1e-5)
  np.testing.assert_allclose(metrics.psnr(signed(clean), signed(noisy), (-1.0, 1.0)), ref_psnr,
                             rtol=1e-5)


def test_psnr_is_10_log10_of_inverse_mse_and_identical_images_score_perfectly():
  clean, noisy = image_pair(1)
  mse = ((clean / 255.0 - noisy / 255.0) ** 2).mean(axis=(1, 2, 3))
  np.testing.assert_allclose(metrics.psnr(clean, noisy), 10 * np.log10(1 / mse), rtol=1e-4)
  assert np.all(np.isinf(metrics.psnr(clean, clean)))
  np.testing.assert_allclose(metrics.ssim(clean, clean), 1.0, rtol=1e-6)
  # Out-of-range float values are clipped to value_range before scoring.
  over = clean.astype(np.float32) / 255.0 * 1.2
  clipped = np.clip(over, 0, 1)
  np.testing.assert_allclose(metrics.ssim(over, clipped), 1.0, rtol=1e-6)


def test_ssim_equals_scikit_image_gaussian_ssim():
  skimage_metrics = pytest.importorskip("skimage.metrics", reason="scikit-image not installed")
  clean, noisy = image_pair(2)
  expected = [skimage_metrics.structural_similarity(
      c / 255.0, n / 255.0, channel_axis=-1, data_range=1.0, gaussian_weights=True, sigma=1.5,
      use_sample_covariance=False) for c, n in zip(clean, noisy)]
  np.testing.assert_allclose(metrics.ssim(clean, noisy), expected, rtol=1e-5)


def test_bad_shapes_and_ranges_are_rejected():
  clean, noisy = image_pair()
  with pytest.raises(ValueError, match="equal"):
    metrics.ssim(clean, noisy[:, :20])
  with pytest.raises(ValueError, match="value_range"):
    metrics.psnr(clean.astype(np.float32), noisy.astype(np.float32), (1.0, 0.0))
