"""FID/KID math, reference stats and the folder CLI, without the Inception weights.

A deterministic random-feature extractor stands in for InceptionV3 here (the real network is
tested in test_eval_inception.py), so these tests run everywhere in a few seconds.
"""

import itertools
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.linalg
from PIL import Image

from tryon_jax.eval import fid
from tryon_jax.eval import inception

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class RandomFeatures:
  """uint8 images -> [N, 32]: a fixed random projection of a 12x12 resize, then ReLU."""

  name = "random-features-test"

  def __init__(self, dim: int = 32, seed: int = 0):
    self.projection = np.random.default_rng(seed).normal(size=(12 * 12 * 3, dim)) / 40.0

  def __call__(self, images):
    images = list(images) if not isinstance(images, np.ndarray) else images
    small = np.concatenate([inception.resize_like_tf(np.asarray(im)[None], 12) for im in images])
    return np.maximum(small.reshape(len(small), -1) / 255.0 @ self.projection, 0)


def procedural_images(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
  """uint8 [n, size, size, 3]: random smooth colour gradients with a random bright disc."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[0:size, 0:size] / size
  out = []
  for _ in range(n):
    base = rng.uniform(0, 255, 3) + rng.uniform(-120, 120, 3) * xx[..., None] \
        + rng.uniform(-120, 120, 3) * yy[..., None]
    cy, cx, r = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.1, 0.3)
    base[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] += 80
    out.append(np.clip(base, 0, 255).astype(np.uint8))
  return np.stack(out)


def add_noise(images: np.ndarray, sigma: float, seed: int = 1) -> np.ndarray:
  noise = np.random.default_rng(seed).normal(0, sigma, images.shape)
  return np.clip(images + noise, 0, 255).astype(np.uint8)


def ttur_fid(a: fid.Stats, b: fid.Stats) -> float:
  """TTUR's fid.py formula with scipy's general sqrtm (the reference implementation)."""
  diff = a.mu - b.mu
  covmean = scipy.linalg.sqrtm(a.sigma @ b.sigma)
  return float(diff @ diff + np.trace(a.sigma) + np.trace(b.sigma)
               - 2 * np.trace(covmean).real)


@pytest.mark.parametrize("n_a,n_b", [(12, 20), (300, 280)])
def test_fid_matches_scipy_sqrtm(n_a, n_b):
  # (12, 20): fewer images than dimensions (sample-space path); (300, 280): the covariance path.
  rng = np.random.default_rng(n_a)
  a = fid.stats_from_features(rng.gamma(2.0, size=(n_a, 64)))
  b = fid.stats_from_features(rng.gamma(2.3, size=(n_b, 64)) + 0.1)
  expected = ttur_fid(a, b)
  assert expected > 1.0
  assert fid.fid_from_stats(a, b) == pytest.approx(expected, rel=1e-6)
  assert fid.fid_from_stats(b, a) == pytest.approx(expected, rel=1e-6)


def test_fid_of_diagonal_gaussians_is_closed_form():
  # Between N(m1, diag(v1)) and N(m2, diag(v2)): |m1 - m2|^2 + sum (sqrt(v1) - sqrt(v2))^2.
  rng = np.random.default_rng(3)
  d = 40
  m1, m2 = rng.normal(size=d), rng.normal(size=d)
  v1, v2 = rng.uniform(.5, 2, d), rng.uniform(.5, 2, d)
  feats = np.zeros((d + 1, d), np.float32)  # only mu/sigma are used on the covariance path
  a = fid.Stats(mu=m1, sigma=np.diag(v1), features=feats)
  b = fid.Stats(mu=m2, sigma=np.diag(v2), features=feats)
  expected = np.sum((m1 - m2) ** 2) + np.sum((np.sqrt(v1) - np.sqrt(v2)) ** 2)
  assert fid.fid_from_stats(a, b) == pytest.approx(expected, rel=1e-9)


def test_fid_of_a_set_with_itself_is_zero_and_grows_with_noise():
  extract = RandomFeatures()
  images = procedural_images(64)
  clean = fid.compute_stats(images, extract)
  fids = [fid.fid_from_stats(clean, fid.compute_stats(add_noise(images, s), extract))
          for s in (8, 24, 64)]
  assert abs(fid.fid_from_stats(clean, clean)) < 1e-9
  assert 0 < fids[0] < fids[1] < fids[2], fids


def naive_mmd2(x: np.ndarray, y: np.ndarray) -> float:
  """Unbiased MMD^2 written out pair by pair (KID's kernel (x.y / d + 1)^3)."""
  d = x.shape[1]
  k = lambda u, v: (float(np.dot(u, v)) / d + 1.0) ** 3
  xx = [k(x[i], x[j]) for i, j in itertools.permutations(range(len(x)), 2)]
  yy = [k(y[i], y[j]) for i, j in itertools.permutations(range(len(y)), 2)]
  xy = [k(u, v) for u in x for v in y]
  return np.mean(xx) + np.mean(yy) - 2 * np.mean(xy)


def test_kid_matches_the_formula_on_all_images():
  rng = np.random.default_rng(5)
  x, y = rng.gamma(2.0, size=(9, 6)), rng.gamma(2.5, size=(9, 6))
  # subset_size >= N: every subset is the whole set (in another order), so std is 0.
  kid = fid.kid_from_features(x, y, num_subsets=3, subset_size=1000)
  assert kid.mean == pytest.approx(1000 * naive_mmd2(x, y), rel=1e-9)
  assert kid.std == pytest.approx(0.0, abs=1e-9)
  raw = fid.kid_from_features(x, y, num_subsets=1, scale=1.0)
  assert raw.mean == pytest.approx(naive_mmd2(x, y), rel=1e-9)


def test_kid_subsets_average_to_the_full_unbiased_estimate():
  # Each subset's unbiased MMD^2 has the full-sample U-statistic as its expectation.
  rng = np.random.default_rng(6)
  x, y = rng.gamma(2.0, size=(24, 5)), rng.gamma(2.6, size=(16, 5))
  kid = fid.kid_from_features(x, y, num_subsets=1500, subset_size=8, scale=1.0, seed=1)
  assert kid.std > 0
  assert kid.mean == pytest.approx(naive_mmd2(x, y), abs=4 * kid.std / np.sqrt(1500))
  again = fid.kid_from_features(x, y, num_subsets=1500, subset_size=8, scale=1.0, seed=1)
  other = fid.kid_from_features(x, y, num_subsets=1500, subset_size=8, scale=1.0, seed=2)
  assert again == kid and other != kid
  assert fid.kid_subset_size(24, 16, 8) == 8 and fid.kid_subset_size(24, 16, 1000) == 16


def test_stats_round_trip_and_refuse_other_extractors(tmp_path):
  stats = fid.compute_stats(procedural_images(10), RandomFeatures())
  path = str(tmp_path / "ref" / "stats.npz")
  stats.save(path)
  loaded = fid.Stats.load(path)
  np.testing.assert_array_equal(loaded.sigma, stats.sigma)
  np.testing.assert_array_equal(loaded.features, stats.features)
  assert loaded.extractor == RandomFeatures.name and loaded.n == 10
  other = fid.stats_from_features(stats.features, extractor="something-else")
  with pytest.raises(fid.EvalInputError, match="different feature extractors"):
    fid.fid_from_stats(loaded, other)
  np.savez(tmp_path / "bad.npz", mu=np.zeros(3))
  with pytest.raises(fid.EvalInputError, match="bad.npz: not a stats file.*no sigma"):
    fid.Stats.load(str(tmp_path / "bad.npz"))


def test_compute_stats_accepts_batches_and_features():
  extract = RandomFeatures()
  images = procedural_images(12)
  whole = fid.compute_stats(images, extract)
  batched = fid.compute_stats((images[i:i + 5] for i in range(0, 12, 5)), extract)
  np.testing.assert_allclose(batched.mu, whole.mu, rtol=1e-12)
  from_features = fid.compute_stats(extract(images))
  np.testing.assert_allclose(from_features.sigma, whole.sigma, rtol=1e-12)
  with pytest.raises(fid.EvalInputError, match="at least 2"):
    fid.compute_stats(images[:1], extract)


def test_resize_is_tf1_legacy_bilinear():
  rng = np.random.default_rng(7)
  image = rng.uniform(0, 255, (1, 7, 5, 2)).astype(np.float32)
  out = inception.resize_like_tf(image, 4)
  for i, j in itertools.product(range(4), range(4)):
    y, x = i * 7 / 4, j * 5 / 4  # no half-pixel offset
    y0, x0 = int(y), int(x)
    y1, x1 = min(y0 + 1, 6), min(x0 + 1, 4)
    top = image[0, y0, x0] * (1 - (x - x0)) + image[0, y0, x1] * (x - x0)
    bottom = image[0, y1, x0] * (1 - (x - x0)) + image[0, y1, x1] * (x - x0)
    np.testing.assert_allclose(out[0, i, j], top * (1 - (y - y0)) + bottom * (y - y0), rtol=1e-5)
  np.testing.assert_array_equal(inception.resize_like_tf(image[:, :4, :4], 4), image[:, :4, :4])


def test_partial_batches_are_padded_to_powers_of_two():
  assert [inception.padded_size(n, 50) for n in (1, 2, 3, 4, 5, 16, 17, 33, 50)] == \
      [1, 2, 4, 4, 8, 16, 32, 50, 50]
  assert inception.padded_size(3, 2) == 2


def write_folder(folder, images, fmt="png"):
  os.makedirs(folder, exist_ok=True)
  for i, im in enumerate(images):
    Image.fromarray(im).save(os.path.join(folder, f"{i:03d}.{fmt}"))


def run_cli(capsys, *argv):
  code = fid.main([str(a) for a in argv], feature_fn=RandomFeatures())
  out, err = capsys.readouterr()
  return code, out, err


def test_cli_prints_one_json_line_and_reuses_saved_stats(tmp_path, capsys):
  real = procedural_images(14, seed=2)
  write_folder(tmp_path / "a", real[:10])
  write_folder(tmp_path / "a" / "sub", real[10:], fmt="jpg")  # recursive, mixed formats
  Image.fromarray(real[0]).convert("L").resize((40, 24)).save(tmp_path / "a" / "gray.PNG")
  write_folder(tmp_path / "b", add_noise(procedural_images(9, seed=3), 20))
  (tmp_path / "b" / "notes.txt").write_text("not an image")

  code, out, err = run_cli(capsys, tmp_path / "a", tmp_path / "b", "--save-stats",
                           tmp_path / "a.npz", "--kid-subsets", 20)
  assert code == 0, err
  lines = out.strip().splitlines()
  assert len(lines) == 1
  result = json.loads(lines[0])
  assert result["n_a"] == 15 and result["n_b"] == 9 and result["kid_subset_size"] == 9
  assert result["fid"] > 0 and np.isfinite(result["kid"]) and result["kid_std"] >= 0

  code, out, err = run_cli(capsys, tmp_path / "a.npz", tmp_path / "b", "--kid-subsets", 20)
  assert code == 0, err
  assert json.loads(out) == result

  code, out, err = run_cli(capsys, tmp_path / "b", "--save-stats", tmp_path / "b.npz")
  assert code == 0 and json.loads(out)["n_a"] == 9 and os.path.isfile(tmp_path / "b.npz")


def test_cli_one_line_errors(tmp_path, capsys):
  os.makedirs(tmp_path / "empty")
  write_folder(tmp_path / "ok", procedural_images(3))
  os.makedirs(tmp_path / "broken")
  (tmp_path / "broken" / "x.png").write_bytes(b"\x89PNG not really")
  cases = [
      ((tmp_path / "empty", tmp_path / "ok"), "empty: no images"),
      ((tmp_path / "ok", tmp_path / "missing"), "missing: neither an image folder nor a .npz"),
      ((tmp_path / "ok", tmp_path / "broken"), "x.png: unreadable image"),
      ((tmp_path / "ok",), "give DIR_B, or --save-stats"),
  ]
  for argv, message in cases:
    code, out, err = run_cli(capsys, *argv)
    assert code == 1 and out == ""
    assert err.startswith("ERROR: ") and message in err and err.count("\n") == 1, err


def test_cli_without_weights_says_how_to_create_them(tmp_path, capsys):
  write_folder(tmp_path / "ok", procedural_images(3))
  missing = tmp_path / "nowhere" / "inception.npz"
  code = fid.main([str(tmp_path / "ok"), str(tmp_path / "ok"), "--weights", str(missing)])
  out, err = capsys.readouterr()
  assert code == 1 and out == ""
  assert f"{missing} not found" in err and "convert_inception" in err and err.count("\n") == 1


def test_module_entry_point_errors_on_an_empty_folder(tmp_path):
  os.makedirs(tmp_path / "empty")
  env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu")
  proc = subprocess.run([sys.executable, "-m", "tryon_jax.eval.fid", str(tmp_path / "empty"),
                         str(tmp_path / "empty")], capture_output=True, text=True, env=env,
                        cwd=REPO, timeout=120)
  assert proc.returncode == 1 and proc.stdout == ""
  assert proc.stderr.strip().splitlines()[-1] == (
      f"ERROR: {tmp_path / 'empty'}: no images ({', '.join(fid.IMAGE_EXTENSIONS)}) in this folder")
