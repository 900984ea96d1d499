"""FID and KID on InceptionV3 pool3 features, as published papers compute them; folder CLI.

  python -m tryon_jax.eval.fid DIR_A DIR_B [--save-stats A.npz] [--weights INCEPTION.npz]
  python -m tryon_jax.eval.fid REF_STATS.npz DIR_B          # reuse precomputed reference stats
  -> {"fid": ..., "kid": ..., "kid_std": ..., "n_a": ..., "n_b": ..., "kid_subset_size": ...}

API (tryon_jax.eval.evaluate calls it):
  extract = load_feature_fn(weights)             # uint8 [N, H, W, 3] -> float32 [N, 2048]
  stats = compute_stats(batches, extract)        # uint8 batches (or features [N, D]) -> Stats
  fid_from_stats(stats_a, stats_b)               # Frechet distance (TTUR's formula)
  kid_from_features(feats_a, feats_b)            # KID(mean, std), x1000 as the papers report

FID: |mu_a - mu_b|^2 + tr(S_a + S_b - 2 sqrtm(S_a S_b)), moments in float64 with np.cov (N - 1);
the trace of the matrix square root through symmetric eigenvalues (see trace_sqrt_product).
KID (Binkowski et al. 2018, as torch-fidelity): kernel k(x, y) = (x.y / d + 1)^3, unbiased MMD^2,
``KID_SUBSETS`` subsets of ``KID_SUBSET_SIZE`` drawn without replacement from each set (all
images when a set has fewer), mean and std (ddof 0) over subsets, times 1000.

Folders: every file with an image extension (case-insensitive), recursively, in sorted order,
decoded by PIL and converted to RGB; resized to 299 as the TF graph does (tryon_jax.eval.inception).
An unreadable image is an error naming the file (FID depends on the set: nothing is skipped
silently). Stats files (.npz) hold mu, sigma, the features (KID needs them) and the extractor's
name; stats of different extractors are never compared.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import functools
import json
import os
import sys
from typing import Callable, Iterable, NamedTuple, Sequence

import numpy as np

KID_SUBSETS = 100  # torch-fidelity / the KID paper's protocol
KID_SUBSET_SIZE = 1000
KID_SCALE = 1000.0  # the TryOnDiffusion paper (and most papers) report KID x 1000
DEFAULT_BATCH_SIZE = 50  # TTUR's default; any value gives the same features
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
CUSTOM_EXTRACTOR = "custom"

FeatureFn = Callable[[np.ndarray | Sequence[np.ndarray]], np.ndarray]


class EvalInputError(Exception):
  """Bad input to FID/KID (folder, image, stats file): a one-line message naming it."""


@dataclasses.dataclass(frozen=True)
class Stats:
  """Reference statistics of one image set.

  mu: float64 [D]; sigma: float64 [D, D] (np.cov, N - 1); features: float32 [N, D] for KID;
  extractor: the name of the feature extractor that produced them.
  """
  mu: np.ndarray
  sigma: np.ndarray
  features: np.ndarray
  extractor: str = CUSTOM_EXTRACTOR

  @property
  def n(self) -> int:
    return int(self.features.shape[0])

  def save(self, path: str) -> None:
    """Writes an .npz atomically (a crash leaves no half-written stats)."""
    path = os.path.abspath(os.path.expanduser(path))
    if not path.endswith(".npz"):
      raise EvalInputError(f"--save-stats {path}: the stats file name must end in .npz")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}.npz"
    try:
      np.savez(tmp, mu=self.mu, sigma=self.sigma, features=self.features,
               extractor=np.asarray(self.extractor))
      os.replace(tmp, path)
    finally:
      if os.path.exists(tmp):
        os.remove(tmp)

  @classmethod
  def load(cls, path: str) -> "Stats":
    try:
      with np.load(path) as npz:
        missing = [k for k in ("mu", "sigma", "features", "extractor") if k not in npz.files]
        if missing:
          raise EvalInputError(f"{path}: not a stats file of tryon_jax.eval.fid (no {missing[0]})")
        stats = cls(mu=npz["mu"], sigma=npz["sigma"], features=npz["features"],
                    extractor=str(npz["extractor"]))
    except (OSError, ValueError) as e:
      raise EvalInputError(f"{path}: unreadable stats file ({e})") from e
    d = stats.mu.shape[0]
    if stats.sigma.shape != (d, d) or stats.features.ndim != 2 or stats.features.shape[1] != d:
      raise EvalInputError(f"{path}: inconsistent shapes mu {stats.mu.shape}, sigma "
                           f"{stats.sigma.shape}, features {stats.features.shape}")
    return stats


class KID(NamedTuple):
  """Kernel Inception Distance over subsets: mean and std (x ``scale``, 1000 by default)."""
  mean: float
  std: float


def kid_subset_size(n_a: int, n_b: int, subset_size: int = KID_SUBSET_SIZE) -> int:
  """Images per KID subset: ``subset_size``, or all of the smaller set when it has fewer."""
  return min(subset_size, n_a, n_b)


def stats_from_features(features: np.ndarray, extractor: str = CUSTOM_EXTRACTOR) -> Stats:
  """features [N, D] (N >= 2) -> Stats (moments in float64)."""
  features = np.asarray(features, np.float32)
  if features.ndim != 2:
    raise ValueError(f"features must be [N, D], got shape {features.shape}")
  if len(features) < 2:
    raise EvalInputError(f"{len(features)} image(s): FID/KID need at least 2 per set")
  as64 = features.astype(np.float64)
  return Stats(mu=as64.mean(axis=0), sigma=np.cov(as64, rowvar=False), features=features,
               extractor=extractor)


def _extractor_name(feature_fn: FeatureFn) -> str:
  return str(getattr(feature_fn, "name", CUSTOM_EXTRACTOR))


def compute_stats(images: np.ndarray | Iterable[np.ndarray],
                  feature_fn: FeatureFn | None = None) -> Stats:
  """Stats of an image set.

  images: uint8 [N, H, W, 3], or an iterable of such batches (or of lists of [H, W, 3] images),
  passed through ``feature_fn`` (default: load_feature_fn()); or already extracted features,
  a float [N, D] array, used as they are.
  """
  if isinstance(images, np.ndarray) and images.ndim == 2:
    return stats_from_features(images, _extractor_name(feature_fn) if feature_fn
                               else CUSTOM_EXTRACTOR)
  feature_fn = feature_fn or load_feature_fn()
  batches = [images] if isinstance(images, np.ndarray) else images
  features = [np.asarray(feature_fn(batch), np.float32) for batch in batches]
  if not features:
    raise EvalInputError("no images: FID/KID need at least 2 per set")
  return stats_from_features(np.concatenate(features), _extractor_name(feature_fn))


def _check_comparable(a: Stats, b: Stats) -> None:
  if a.extractor != b.extractor:
    raise EvalInputError(f"stats of different feature extractors ({a.extractor!r} vs "
                         f"{b.extractor!r}) cannot be compared")
  if a.mu.shape != b.mu.shape:
    raise EvalInputError(f"feature sizes differ: {a.mu.shape[0]} vs {b.mu.shape[0]}")


def trace_sqrt_product(a: Stats, b: Stats) -> float:
  """tr sqrtm(sigma_a sigma_b), exactly, through symmetric eigen/singular values.

  sigma_a sigma_b is similar to the PSD matrix sqrt(sigma_a) sigma_b sqrt(sigma_a), so the trace
  is the sum of the square roots of its eigenvalues. With fewer images than feature dimensions it
  equals the nuclear norm of X_a X_b^T / sqrt((N_a - 1)(N_b - 1)) (X: centred features), an
  [N_a, N_b] problem. Both avoid scipy's general sqrtm of a non-symmetric 2048^2 product (TTUR's
  route to the same number), which takes minutes on two CPU cores.
  """
  dim = a.mu.shape[0]
  if max(a.n, b.n) < dim:
    xa = a.features.astype(np.float64) - a.mu
    xb = b.features.astype(np.float64) - b.mu
    cross = xa @ xb.T / np.sqrt((a.n - 1) * (b.n - 1))
    return float(np.linalg.svd(cross, compute_uv=False).sum())
  w, v = np.linalg.eigh(a.sigma)
  sqrt_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
  eigenvalues = np.linalg.eigvalsh(sqrt_a @ b.sigma @ sqrt_a)
  return float(np.sqrt(np.clip(eigenvalues, 0, None)).sum())


def fid_from_stats(a: Stats, b: Stats) -> float:
  """Frechet distance |mu_a - mu_b|^2 + tr(sigma_a + sigma_b - 2 sqrtm(sigma_a sigma_b))."""
  _check_comparable(a, b)
  diff = a.mu - b.mu
  return float(diff @ diff + np.trace(a.sigma) + np.trace(b.sigma)
               - 2 * trace_sqrt_product(a, b))


def _mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
  """Unbiased MMD^2 of two equal-size float64 samples [m, d] with the cubic polynomial kernel."""
  m, d = x.shape
  k_xx = (x @ x.T / d + 1) ** 3
  k_yy = (y @ y.T / d + 1) ** 3
  k_xy = (x @ y.T / d + 1) ** 3
  off_diagonal = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
  return float(off_diagonal - 2 * k_xy.mean())


def kid_from_features(features_a: np.ndarray, features_b: np.ndarray,
                      num_subsets: int = KID_SUBSETS, subset_size: int = KID_SUBSET_SIZE,
                      seed: int = 0, scale: float = KID_SCALE) -> KID:
  """KID of features [N_a, D] and [N_b, D]: mean and std over subsets, times ``scale``.

  Each subset draws min(subset_size, N_a, N_b) features without replacement from each set
  (numpy Generator seeded with ``seed``, so results are reproducible).
  """
  fa = np.asarray(features_a, np.float64)
  fb = np.asarray(features_b, np.float64)
  if fa.ndim != 2 or fb.ndim != 2 or fa.shape[1] != fb.shape[1]:
    raise ValueError(f"KID features must be [N, D] with equal D, got {fa.shape} and {fb.shape}")
  m = kid_subset_size(len(fa), len(fb), subset_size)
  if m < 2:
    raise EvalInputError(f"KID needs at least 2 images per set, got {len(fa)} and {len(fb)}")
  if num_subsets < 1:
    raise ValueError(f"num_subsets={num_subsets} must be >= 1")
  rng = np.random.default_rng(seed)
  values = np.array([
      _mmd2_unbiased(fa[rng.choice(len(fa), m, replace=False)],
                     fb[rng.choice(len(fb), m, replace=False)])
      for _ in range(num_subsets)])
  return KID(mean=float(values.mean() * scale), std=float(values.std() * scale))


@functools.lru_cache(maxsize=2)
def _cached_extractor(path: str, mtime: float, batch_size: int):
  from tryon_jax.eval import inception  # pylint: disable=g-import-not-at-top
  del mtime  # part of the cache key only: a rewritten .npz is reloaded
  return inception.Pool3Features(inception.load_inception(path), batch_size)


def load_feature_fn(weights: str | None = None, batch_size: int = DEFAULT_BATCH_SIZE) -> FeatureFn:
  """The Inception pool3 extractor (uint8 images -> float32 [N, 2048]), loaded once per file.

  weights: the converted .npz (default: $TRYON_INCEPTION_NPZ or ~/.cache/tryon_jax/
  inception_fid.npz); raises inception.WeightsError with how to create it when absent.
  """
  from tryon_jax.eval import inception  # pylint: disable=g-import-not-at-top
  path = os.path.abspath(os.path.expanduser(weights or inception.default_weights_path()))
  if not os.path.isfile(path):
    raise inception.WeightsError(f"InceptionV3 FID weights {path} not found; "
                                 f"{inception.how_to_create(path)}")
  return _cached_extractor(path, os.path.getmtime(path), batch_size)


def list_images(folder: str) -> list[str]:
  """Image files under ``folder`` (recursive, sorted); EvalInputError if none."""
  paths = sorted(os.path.join(root, name) for root, _, names in os.walk(folder) for name in names
                 if name.lower().endswith(IMAGE_EXTENSIONS))
  if not paths:
    raise EvalInputError(f"{folder}: no images ({', '.join(IMAGE_EXTENSIONS)}) in this folder")
  return paths


def read_image(path: str) -> np.ndarray:
  """uint8 [H, W, 3] RGB; EvalInputError naming the file if PIL cannot decode it."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  try:
    with Image.open(path) as image:
      return np.asarray(image.convert("RGB"), np.uint8)
  except (OSError, ValueError, SyntaxError) as e:
    raise EvalInputError(f"{path}: unreadable image ({e})") from e


def folder_features(paths: Sequence[str], feature_fn: FeatureFn, batch_size: int) -> np.ndarray:
  """Features [N, D] of image files; the next batch is decoded while one runs."""
  chunks = [paths[i:i + batch_size] for i in range(0, len(paths), batch_size)]
  features = []
  with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
    pending = [pool.submit(read_image, p) for p in chunks[0]]
    for k in range(len(chunks)):
      images = [f.result() for f in pending]
      pending = [pool.submit(read_image, p) for p in chunks[k + 1]] if k + 1 < len(chunks) else []
      features.append(np.asarray(feature_fn(images), np.float32))
  return np.concatenate(features)


def resolve_input(path: str) -> Stats | list[str]:
  """Saved stats (.npz file) or the image files of a folder; checked before any computation."""
  if os.path.isfile(path) and path.endswith(".npz"):
    return Stats.load(path)
  if not os.path.isdir(path):
    raise EvalInputError(f"{path}: neither an image folder nor a .npz stats file")
  return list_images(path)


def main(argv: Sequence[str] | None = None, feature_fn: FeatureFn | None = None) -> int:
  """The CLI; ``feature_fn`` replaces the Inception extractor (tests). Exit 1 on bad input.

  Both inputs are checked (folder has images, stats file readable) before any feature is computed.
  """
  parser = argparse.ArgumentParser(
      prog="python -m tryon_jax.eval.fid",
      description="FID and KID (x1000) between two image folders (or saved .npz stats) on TF "
                  "InceptionV3 pool3 features; prints one JSON line.")
  parser.add_argument("dir_a", help="image folder or .npz stats (e.g. the real images)")
  parser.add_argument("dir_b", nargs="?", help="image folder or .npz stats (e.g. generated); "
                                               "may be left out with --save-stats")
  parser.add_argument("--save-stats", metavar="FILE.npz", help="save the stats of DIR_A")
  parser.add_argument("--weights", help="Inception .npz (default: $TRYON_INCEPTION_NPZ or "
                                        "~/.cache/tryon_jax/inception_fid.npz)")
  parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
  parser.add_argument("--kid-subsets", type=int, default=KID_SUBSETS)
  parser.add_argument("--kid-subset-size", type=int, default=KID_SUBSET_SIZE)
  parser.add_argument("--seed", type=int, default=0, help="seed of the KID subset draws")
  args = parser.parse_args(argv)
  from tryon_jax.eval import inception  # pylint: disable=g-import-not-at-top
  try:
    if args.dir_b is None and not args.save_stats:
      raise EvalInputError("give DIR_B, or --save-stats FILE to only save DIR_A's stats")
    if args.batch_size < 1:
      raise EvalInputError(f"--batch-size={args.batch_size} must be >= 1")
    inputs = [resolve_input(p) for p in (args.dir_a, args.dir_b) if p is not None]
    stats = []
    for given in inputs:
      if isinstance(given, Stats):
        stats.append(given)
        continue
      feature_fn = feature_fn or load_feature_fn(args.weights, args.batch_size)
      stats.append(stats_from_features(folder_features(given, feature_fn, args.batch_size),
                                       _extractor_name(feature_fn)))
    stats_a = stats[0]
    if args.save_stats:
      stats_a.save(args.save_stats)
    if args.dir_b is None:
      print(json.dumps({"n_a": stats_a.n, "stats": os.path.abspath(args.save_stats)}))
      return 0
    stats_b = stats[1]
    fid = fid_from_stats(stats_a, stats_b)
    kid = kid_from_features(stats_a.features, stats_b.features, args.kid_subsets,
                            args.kid_subset_size, args.seed)
  except (EvalInputError, inception.WeightsError) as e:
    print(f"ERROR: {e}", file=sys.stderr)
    return 1
  subset_size = kid_subset_size(stats_a.n, stats_b.n, args.kid_subset_size)
  print(json.dumps({"fid": fid, "kid": kid.mean, "kid_std": kid.std, "n_a": stats_a.n,
                    "n_b": stats_b.n, "kid_subset_size": subset_size}))
  return 0


if __name__ == "__main__":
  sys.exit(main())
