"""``--mode=tryon``: try-on PNGs from trained stages, for one photo pair or a record set.

Order of work, so that bad input fails in seconds and nothing is left half written: resolve the
checkpoints (paths + saved configs) -> read and preprocess the inputs at the cascade's output
resolution -> restore the EMA parameters -> sample batch by batch (tqdm) -> write each PNG under a
temporary name and rename it into place. Outputs in --out:

  <person>__<garment>.png            the last stage's try-on [R, R] (R: e.g. 1024 for the cascade)
  <person>__<garment>.<stage>.png    every stage's output (--save_stages)
  <person>__<garment>.full.png       the try-on pasted back into the person photo (--paste_back)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
import os
import sys
from typing import Any

import ml_collections
import numpy as np
from PIL import Image

from tryon_jax.data import labels
from tryon_jax.data import preprocess
from tryon_jax.inference import checkpoints
from tryon_jax.inference import inputs
from tryon_jax.inference import options as options_lib

ERRORS = (inputs.InputError, checkpoints.CheckpointError, options_lib.OptionError)


def to_uint8(images: np.ndarray) -> np.ndarray:
  """[..., 3] float in [-1, 1] -> uint8."""
  return np.clip(np.round((np.asarray(images, np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def temp_path(path: str) -> str:
  """A hidden name beside ``path`` for writing it before the atomic rename (one per process)."""
  folder, name = os.path.split(os.path.abspath(path))
  return os.path.join(folder, f".{name}.{os.getpid()}.tmp")


def write_png(path: str, image: np.ndarray) -> None:
  """Writes uint8 [H, W, 3] to ``path`` via a temporary file in the same folder (atomic rename)."""
  tmp = temp_path(path)
  try:
    with open(tmp, "wb") as f:
      Image.fromarray(image).save(f, format="PNG")
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def paste_back(photo: np.ndarray, tryon: np.ndarray, crop: Sequence[float]) -> np.ndarray:
  """The square try-on [R, R, 3] resized to the crop's side and pasted into the photo [H, W, 3] at
  the crop (x0, y0, side) it was cut from (parts of the square outside the photo are dropped)."""
  x0, y0, side = (int(round(v)) for v in crop)
  patch = np.asarray(Image.fromarray(tryon).resize((side, side), Image.BICUBIC))
  h, w = photo.shape[:2]
  out = photo.copy()
  top, left = max(0, y0), max(0, x0)
  bottom, right = min(h, y0 + side), min(w, x0 + side)
  if bottom > top and right > left:
    out[top:bottom, left:right] = patch[top - y0:bottom - y0, left - x0:right - x0]
  return out


def stage_resolutions(ckpts: Sequence[checkpoints.StageCheckpoint],
                      first_lowres: int | None = None) -> list[int]:
  """Each stage's output side, by the cascade's own rule (diffusion.cascade.Stage)."""
  from tryon_jax.diffusion import cascade  # pylint: disable=g-import-not-at-top
  sizes, previous = [], first_lowres
  for ckpt in ckpts:
    # apply_fn is never called: the Stage is only asked for its resolution rule.
    previous = cascade.Stage(ckpt.config, apply_fn=None).output_resolution(previous)
    sizes.append(previous)
  return sizes


def inference_setting(config: ml_collections.ConfigDict, name: str, value: Any) -> Any:
  """A flag value, else config.inference.<name>."""
  if value is not None:
    return value
  section = config.get("inference")
  if section is None or name not in section:
    raise options_lib.OptionError(f"the config has no inference.{name}: pass --{name}")
  return section[name]


def sample_batches(cascade: Any, num: int, get_example: Callable[[int], dict], batch_size: int,
                   seed: int, desc: str, lowres_size: int | None = None):
  """Samples examples 0..num-1 (``get_example(i)``: the dict of inputs.to_example) in batches of
  ``batch_size``, with a tqdm bar. Yields (examples of the batch, {stage: uint8 [n, R, R, 3]}); the
  last batch is padded for the sampler (one compile) and the padding dropped here.

  lowres_size: start mid-cascade (a lone SR stage): the first stage's low-resolution input is the
  example's own ``person`` photo downsampled to this side."""
  import jax  # pylint: disable=g-import-not-at-top
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top
  from tryon_jax.diffusion import conditioning  # pylint: disable=g-import-not-at-top
  key = jax.random.key(seed)
  with tqdm(total=num, desc=desc, unit="pair", file=sys.stderr) as bar:
    for b, start in enumerate(range(0, num, batch_size)):
      chunk = [get_example(i) for i in range(start, min(num, start + batch_size))]
      batch = inputs.stack(chunk, batch_size)
      lowres = None
      if lowres_size is not None:
        first = cascade.stages[0].config
        lowres = conditioning.resize(jax.numpy.asarray(batch["person"]), lowres_size,
                                     first.diffusion.get("lowres_down_method", "linear"))
      del batch["person"]  # the target is never a model input
      outputs = cascade(batch, jax.random.fold_in(key, b), lowres=lowres)
      yield chunk, {name: to_uint8(jax.device_get(x))[:len(chunk)] for name, x in outputs.items()}
      bar.update(len(chunk))


def _check_stages(ckpts: list[checkpoints.StageCheckpoint]) -> None:
  if not ckpts:
    raise options_lib.OptionError("no checkpoint: pass --ckpt_base128 DIR (and optionally "
                                   "--ckpt_sr256, --ckpt_sr1024)")
  if ckpts[0].stage != "base128":
    raise options_lib.OptionError(f"{ckpts[0].flag}: the cascade starts at the base128 stage; "
                                  "pass --ckpt_base128 too")


def _photo_mode(opts: options_lib.TryOnOptions) -> bool:
  photo_flags = [opts.person, opts.person_parse, opts.person_pose, opts.garment]
  if opts.records:
    if any(photo_flags) or opts.garment_mask or opts.garment_parse or opts.garment_pose:
      raise options_lib.OptionError("give either --records or the photo flags (--person ...), "
                                    "not both")
    return False
  if opts.pairs:
    raise options_lib.OptionError("--pairs pairs the records of --records; --records is missing")
  names = ("person", "person_parse", "person_pose", "garment")
  missing = [f"--{n}" for n, v in zip(names, photo_flags) if not v]
  if len(missing) == len(names):
    raise options_lib.OptionError("no input: pass --person, --person_parse, --person_pose, "
                                  "--garment and --garment_mask (or --garment_parse), or --records")
  if missing:
    raise options_lib.OptionError(f"missing input flag(s): {', '.join(missing)}")
  if not (opts.garment_mask or opts.garment_parse):
    raise options_lib.OptionError("missing --garment_mask (or --garment_parse): the garment's "
                                  "pixels must be given")
  return True


def tryon(config: ml_collections.ConfigDict, opts: options_lib.TryOnOptions) -> list[str]:
  """Runs the try-on; returns the written paths. Raises one of ERRORS for bad input."""
  if not opts.out:
    raise options_lib.OptionError("--out DIR is required (where the PNGs go)")
  photo = _photo_mode(opts)
  if opts.paste_back and not photo:
    raise options_lib.OptionError("--paste_back needs the photo inputs (records keep no photo)")
  batch_size = int(inference_setting(config, "batch_size", opts.batch_size))
  seed = int(inference_setting(config, "seed", opts.seed))
  if batch_size < 1:
    raise options_lib.OptionError(f"--batch_size={batch_size} must be >= 1")
  ckpts = checkpoints.resolve_all(opts.ckpt)
  _check_stages(ckpts)
  opts.check(len(ckpts))
  resolution = stage_resolutions(ckpts)[-1]

  if photo:
    try:
      label_set = labels.get_label_set(opts.label_set)
    except ValueError as e:
      raise options_lib.OptionError(f"--label_set: {e}") from None
    prep = preprocess.PreprocessOptions.from_config(config.data.preprocess, resolution=resolution)
    pair = inputs.UserPair(opts.person, opts.person_parse, opts.person_pose, opts.garment,
                           opts.garment_mask, opts.garment_parse, opts.garment_pose)
    record = inputs.load_user_pair(pair, prep, label_set)
    features = inputs.record_features(record)
    ids = [record.id]
    get_example = lambda i: inputs.to_example(features, features, resolution)
  else:
    records = inputs.RecordSet(opts.records)
    refs = records.from_pairs_file(opts.pairs) if opts.pairs else records.paired()
    ids = [r.pair_id for r in refs]
    get_example = lambda i: records.example(refs[i], resolution)

  cascade = checkpoints.build_cascade(ckpts, samplers=opts.samplers, steps=opts.steps,
                                      guidance_weights=opts.guidance_weights)
  os.makedirs(opts.out, exist_ok=True)
  written = []
  final = cascade.stages[-1].name
  done = 0
  for chunk, outputs in sample_batches(cascade, len(ids), get_example, batch_size, seed,
                                       "try-on"):
    for row in range(len(chunk)):
      pair_id = ids[done + row]
      path = os.path.join(opts.out, f"{pair_id}.png")
      write_png(path, outputs[final][row])
      written.append(path)
      if opts.save_stages:
        for name, images in outputs.items():
          stage_path = os.path.join(opts.out, f"{pair_id}.{name}.png")
          write_png(stage_path, images[row])
          written.append(stage_path)
      if opts.paste_back:
        full = paste_back(inputs.read_photo(opts.person, "--person"), outputs[final][row],
                          record.person_crop)
        full_path = os.path.join(opts.out, f"{pair_id}.full.png")
        write_png(full_path, full)
        written.append(full_path)
    done += len(chunk)
  return written


def run(config: ml_collections.ConfigDict, opts: options_lib.TryOnOptions | None = None) -> int:
  """The --mode=tryon runner (options from the flags unless given): one-line error and exit
  status 1 for bad input."""
  try:
    opts = opts if opts is not None else options_lib.tryon_from_flags()
    written = tryon(config, opts)
  except (*ERRORS, OSError) as e:  # OSError: e.g. an --out folder that cannot be written
    print(f"ERROR: {e}", file=sys.stderr)
    return 1
  print(f"wrote {len(written)} PNG(s) to {opts.out}", file=sys.stderr)
  return 0
