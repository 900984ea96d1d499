"""Writes the synthetic paired try-on set in VITON-HD layout (so it flows through the same converter).

  python -m data_pipelines.synthetic --out DIR --num N [--resolution 256] [--seed 0] [--split train]
      [--pattern_scale 1] [--flat_garments] [--same_pose] [--noise_garments 0]
  python -m data_pipelines.viton_hd --root DIR --split train --out REC    # then convert as real data

Each example <id> is one procedurally drawn person wearing one textured upper garment in two poses
(tryon_jax/data/synthetic_render.py): pose B is the try-on target, pose A the worn "cloth" image.

  DIR/<split>/image/<id>_00.jpg                        person, pose B (W x H = R*3/4 x R)
  DIR/<split>/image-parse-v3/<id>_00.png               its parse map, CIHP/LIP ids (palette PNG)
  DIR/<split>/openpose_json/<id>_00_keypoints.json     its OpenPose BODY_25 pose
  DIR/<split>/cloth/<id>_01.jpg                        same person and garment, pose A
  DIR/<split>/cloth-mask/<id>_01.jpg                   255 = garment (upper-clothes) of that image
  DIR/<split>/cloth-openpose_json/<id>_01_keypoints.json   pose A (our extension: garment pose J_g)
  DIR/<split>_pairs.txt                                "<id>_00.jpg <id>_01.jpg" per line
  DIR/<split>_synthetic.json                           the generator settings (for resuming)

Parse ids: 0 background, 2 hair, 5 upper-clothes, 9 pants, 10 neck, 12 skirt, 13 face,
14 left-arm, 15 right-arm, 16 left-leg, 17 right-leg, 18 left-shoe, 19 right-shoe (hands count as
arm). Everyone faces the camera, so the person's LEFT (ids 14/16/18, BODY_25 5-7, 12-14) is on the
IMAGE'S RIGHT. Every example is seeded from (seed, split, index) alone: a run can be resumed (complete
examples are kept) or split over processes (--workers). Files are written atomically.
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import os
import time

import numpy as np
from PIL import Image

from tryon_jax.data import synthetic_render

JPEG_QUALITY = 95  # VITON-HD's own JPEGs are high quality; 95 keeps texture edges crisp.
GENERATOR_VERSION = 1  # bump when the renderer's output changes (resumed dirs must match).
# The rendering options a directory records, at the values directories made before each option
# existed were made with (a resumed directory must match them all).
OPTION_DEFAULTS = {"pattern_scale": 1.0, "flat_garments": False, "same_pose": False,
                   "noise_garments": 0.0}
SUBDIRS = ("image", "image-parse-v3", "openpose_json", "cloth", "cloth-mask",
           "cloth-openpose_json")


def example_id(index: int) -> str:
  return f"{index:06d}"


def example_index(pair_id: str) -> int:
  """The index of the example a converted pair id ("<example_id>_00__<example_id>_01") names."""
  return int(pair_id.split("_", 1)[0])


def example_paths(root: str, split: str, index: int) -> dict[str, str]:
  """The six files of example `index`, keyed by SUBDIRS entry."""
  i = example_id(index)
  base = os.path.join(root, split)
  return {
      "image": os.path.join(base, "image", f"{i}_00.jpg"),
      "image-parse-v3": os.path.join(base, "image-parse-v3", f"{i}_00.png"),
      "openpose_json": os.path.join(base, "openpose_json", f"{i}_00_keypoints.json"),
      "cloth": os.path.join(base, "cloth", f"{i}_01.jpg"),
      "cloth-mask": os.path.join(base, "cloth-mask", f"{i}_01.jpg"),
      "cloth-openpose_json": os.path.join(base, "cloth-openpose_json", f"{i}_01_keypoints.json"),
  }


def _parse_palette() -> list[int]:
  """A fixed palette so the parse PNGs are viewable; pixel values stay the label ids."""
  rng = np.random.default_rng(20)
  colours = rng.integers(40, 256, (256, 3))
  colours[0] = 0
  return colours.astype(np.uint8).reshape(-1).tolist()


_PALETTE = _parse_palette()


def _jpeg(array: np.ndarray) -> bytes:
  buf = io.BytesIO()
  # 4:4:4 chroma: at 256 px the default 4:2:0 smears thin coloured stripes and text.
  Image.fromarray(array).save(buf, format="JPEG", quality=JPEG_QUALITY, subsampling=0)
  return buf.getvalue()


def _parse_png(parse: np.ndarray) -> bytes:
  img = Image.fromarray(parse)  # mode "L"; putpalette turns it into "P" keeping the ids
  img.putpalette(_PALETTE)
  buf = io.BytesIO()
  img.save(buf, format="PNG")
  return buf.getvalue()


def openpose_json(keypoints: np.ndarray) -> bytes:
  """OpenPose 1.3 JSON for one person; keypoints [25, 3] (x, y, c) in pixels, c = 0 if unseen."""
  flat = [round(float(v), 3) for v in np.asarray(keypoints, np.float64).reshape(-1)]
  person = {"person_id": [-1], "pose_keypoints_2d": flat, "face_keypoints_2d": [],
            "hand_left_keypoints_2d": [], "hand_right_keypoints_2d": [],
            "pose_keypoints_3d": [], "face_keypoints_3d": [], "hand_left_keypoints_3d": [],
            "hand_right_keypoints_3d": []}
  return json.dumps({"version": 1.3, "people": [person]}).encode()


def _write_atomic(path: str, data: bytes) -> None:
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "wb") as f:
    f.write(data)
  os.replace(tmp, path)


def write_example(root: str, split: str, index: int, *, resolution: int, seed: int,
                  pattern_scale: float = 1.0, flat_garments: bool = False,
                  same_pose: bool = False, noise_garments: float = 0.0) -> bool:
  """Renders and writes example `index`; returns False (and writes nothing) if it is complete."""
  paths = example_paths(root, split, index)
  if all(os.path.exists(p) for p in paths.values()):
    return False
  ex = synthetic_render.render_example(index, resolution=resolution, seed=seed, split=split,
                                       pattern_scale=pattern_scale, flat_garment=flat_garments,
                                       same_pose=same_pose, noise_garments=noise_garments)
  blobs = {
      "image": _jpeg(ex.person),
      "image-parse-v3": _parse_png(ex.person_parse),
      "openpose_json": openpose_json(ex.person_keypoints),
      "cloth": _jpeg(ex.cloth),
      "cloth-mask": _jpeg(ex.cloth_mask),
      "cloth-openpose_json": openpose_json(ex.cloth_keypoints),
  }
  for key, data in blobs.items():
    _write_atomic(paths[key], data)
  return True


def settings_path(root: str, split: str) -> str:
  return os.path.join(root, f"{split}_synthetic.json")


def read_settings(root: str, split: str) -> dict | None:
  """The generator settings a directory was made with (None if it has none yet)."""
  path = settings_path(root, split)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    try:
      old = json.load(f)
    except json.JSONDecodeError as e:
      raise ValueError(f"{path}: not valid JSON ({e})") from None
  for key, default in OPTION_DEFAULTS.items():  # directories made before the option existed
    old.setdefault(key, default)
  return old


def _check_settings(root: str, split: str, settings: dict) -> None:
  """Refuses to resume into a directory made with other settings (examples would not match)."""
  path = settings_path(root, split)
  old = read_settings(root, split)
  if old is not None:
    for key in ("resolution", "seed", "generator_version", *OPTION_DEFAULTS):
      if old.get(key) != settings[key]:
        raise ValueError(f"{path}: existing {key}={old.get(key)!r} differs from requested "
                         f"{settings[key]!r}; use another --out or delete it")
  _write_atomic(path, json.dumps(settings, indent=1).encode())


def _work(args: tuple[str, str, int, int, int, dict]) -> bool:
  root, split, index, resolution, seed, options = args
  return write_example(root, split, index, resolution=resolution, seed=seed, **options)


def generate(out_dir: str, num: int, *, resolution: int = 256, seed: int = 0,
             split: str = "train", workers: int = 1, progress: bool = False,
             pattern_scale: float = 1.0, flat_garments: bool = False,
             same_pose: bool = False, noise_garments: float = 0.0) -> dict:
  """Writes `num` synthetic pairs into out_dir in VITON-HD layout (see the module docstring).

  pattern_scale coarsens the garments' patterns (synthetic_garment.sample_garment), e.g. so that
  they survive the downscale to a 32 px study. flat_garments writes the set's flat twin: the same
  examples with the garments' pattern and prints left out (synthetic_garment.sample_garment).
  same_pose writes its same-pose control: the same person images, with each cloth image in the
  person's own pose (synthetic_render.render_example). noise_garments is the share of examples
  whose garment wears noise instead of its pattern (synthetic_render.render_example).

  Returns {"root", "split", "num", "written", "skipped", "pairs_file", "width", "height",
  "seconds"}. Deterministic in (seed, split, index); existing complete examples are kept.
  """
  if num <= 0:
    raise ValueError(f"num must be > 0, got {num}")
  if seed < 0:
    raise ValueError(f"seed must be >= 0, got {seed}")
  if not pattern_scale > 0:
    raise ValueError(f"pattern_scale must be > 0, got {pattern_scale}")
  if not 0.0 <= noise_garments <= 1.0:
    raise ValueError(f"noise_garments must be in [0, 1], got {noise_garments}")
  if not split or os.sep in split or split.startswith("."):
    raise ValueError(f"split must be a plain directory name, got {split!r}")
  width, height = synthetic_render.image_size(resolution)
  start = time.perf_counter()
  for sub in SUBDIRS:
    os.makedirs(os.path.join(out_dir, split, sub), exist_ok=True)
  options = {"pattern_scale": float(pattern_scale), "flat_garments": bool(flat_garments),
             "same_pose": bool(same_pose), "noise_garments": float(noise_garments)}
  _check_settings(out_dir, split, {"resolution": resolution, "seed": seed, "split": split,
                                   "generator_version": GENERATOR_VERSION, **options,
                                   "width": width, "height": height})
  jobs = [(out_dir, split, i, resolution, seed, options) for i in range(num)]
  bar = None
  if progress:
    from tqdm import tqdm  # only the CLI needs it
    bar = tqdm(total=num, desc=f"synthetic {split}", unit="pair")
  written = 0
  if workers > 1:
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
      for new in pool.imap_unordered(_work, jobs, chunksize=8):
        written += new
        if bar is not None:
          bar.update(1)
  else:
    for job in jobs:
      written += _work(job)
      if bar is not None:
        bar.update(1)
  if bar is not None:
    bar.close()
  pairs_file = os.path.join(out_dir, f"{split}_pairs.txt")
  lines = "".join(f"{example_id(i)}_00.jpg {example_id(i)}_01.jpg\n" for i in range(num))
  _write_atomic(pairs_file, lines.encode())
  return {"root": out_dir, "split": split, "num": num, "written": written,
          "skipped": num - written, "pairs_file": pairs_file, "width": width, "height": height,
          "seconds": time.perf_counter() - start}


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--out", required=True, help="output root directory")
  parser.add_argument("--num", type=int, required=True, help="number of pairs")
  parser.add_argument("--resolution", type=int, default=256, help="image height R (width R*3/4)")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--split", default="train")
  parser.add_argument("--workers", type=int, default=1, help="processes (examples are independent)")
  parser.add_argument("--pattern_scale", type=float, default=1.0,
                      help="garment pattern period and print tile, times the default")
  parser.add_argument("--flat_garments", action="store_true",
                      help="the set's flat twin: the same examples, garments without pattern or "
                           "prints")
  parser.add_argument("--same_pose", action="store_true",
                      help="the set's same-pose control: each cloth image in the person's own "
                           "pose")
  parser.add_argument("--noise_garments", type=float, default=0.0,
                      help="share of examples whose garment wears noise instead of its pattern")
  args = parser.parse_args(argv)
  try:
    result = generate(args.out, args.num, resolution=args.resolution, seed=args.seed,
                      split=args.split, workers=args.workers, progress=True,
                      pattern_scale=args.pattern_scale, flat_garments=args.flat_garments,
                      same_pose=args.same_pose, noise_garments=args.noise_garments)
  except ValueError as e:
    parser.exit(2, f"error: {e}\n")
  print(f"wrote {result['written']} pairs, kept {result['skipped']} existing, to "
        f"{os.path.join(result['root'], result['split'])} in {result['seconds']:.1f} s "
        f"({result['width']}x{result['height']})")


if __name__ == "__main__":
  main()
