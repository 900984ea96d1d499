"""The conditioning dict fed to the networks: noise-conditioning augmentation, conditioning dropout
for classifier-free guidance, and the low-resolution input of the super-resolution stages.

Order of operations (paper: the Gaussian noise is added before any other processing):
  1. (SR stages, training) derive ``lowres`` from the target: antialiased downsampling by
     ``model.lowres_factor``, then bilinear upsampling back to the target size;
  2. noise-conditioning augmentation of every image named in ``model.cond_images``:
     x -> alpha(t_na) x + sigma(t_na) eps, with the diffusion schedule's forward process; levels
     t_na ~ U[0, diffusion.train_noise_aug_max] (paper: U[0, 1]) per image and example in training,
     fixed constants at inference
     (``diffusion.inference_noise_aug[_per_image]``); they go to the network as ``noise_aug_levels``
     [B, len(cond_images)], one column per name in ``cond_images`` order;
  3. (training) conditioning dropout: a dropped input is set to 0 (images) or gets an all-zero
     keypoint mask and zero coordinates (poses, so the network uses its learned null embeddings);
     ``noise_aug_levels`` are kept. ``cond_dropout_mode`` "joint" drops every input of an example
     together; "per_input" drops each input independently with the same probability.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import ml_collections

from tryon_jax.diffusion import schedules

IMAGE_KEYS = ("agnostic", "garment", "lowres")
# Pose inputs: (keypoints key, visibility-mask key).
POSE_INPUTS = (("person_pose", "person_pose_mask"), ("garment_pose", "garment_pose_mask"))
DROPOUT_MODES = ("joint", "per_input")


def uses_pose(model_config: ml_collections.ConfigDict) -> bool:
  """The Parallel-UNets read the poses; the Efficient-UNet reads only ``lowres``."""
  return model_config.name != "efficient_unet"


def resize(images: jax.Array, size: int, method: str = "linear") -> jax.Array:
  """[B, H, W, C] -> [B, size, size, C]; antialiased when shrinking."""
  b, h, w, c = images.shape
  if (h, w) == (size, size):
    return images
  return jax.image.resize(images, (b, size, size, c), method=method, antialias=True)


def degrade_to_lowres(target: jax.Array, factor: int, down_method: str = "linear") -> jax.Array:
  """The SR input made from a target [B, R, R, 3]: downsample by ``factor`` (antialiased), then
  upsample back to R bilinearly. Returns [B, R, R, 3] in [-1, 1]."""
  r = target.shape[1]
  if r % factor:
    raise ValueError(f"batch['person'] size {r} is not divisible by model.lowres_factor={factor}")
  small = resize(target, r // factor, down_method)
  return jnp.clip(resize(small, r, "linear"), -1.0, 1.0)


def noise_augment(images: jax.Array, levels: jax.Array, key: jax.Array,
                  schedule: schedules.Schedule) -> jax.Array:
  """alpha(level) x + sigma(level) eps for images [B, H, W, C] and levels [B] in [0, 1]."""
  noise = jax.random.normal(key, images.shape, jnp.float32)
  return schedule.add_noise(images.astype(jnp.float32), noise, levels)


def _base_cond(batch: Mapping[str, jax.Array], config: ml_collections.ConfigDict) -> dict:
  """The batch entries the stage's network reads (images of cond_images, poses), as float32."""
  cond = {}
  for name in config.model.cond_images:
    if name in batch:
      cond[name] = jnp.asarray(batch[name], jnp.float32)
  if uses_pose(config.model):
    for keys in POSE_INPUTS:
      for k in keys:
        if k not in batch:
          raise ValueError(f"batch is missing {k!r}, needed by model.name={config.model.name!r}")
        cond[k] = jnp.asarray(batch[k], jnp.float32)
  return cond


def _augment_all(cond: dict, levels: jax.Array, key: jax.Array,
                 config: ml_collections.ConfigDict) -> dict:
  schedule = schedules.make_schedule(config.diffusion)
  names = tuple(config.model.cond_images)
  for i, (name, k) in enumerate(zip(names, jax.random.split(key, len(names)))):
    if name not in cond:
      raise ValueError(f"conditioning image {name!r} (model.cond_images) is not in the batch")
    cond[name] = noise_augment(cond[name], levels[:, i], k, schedule)
  cond["noise_aug_levels"] = levels
  return cond


def _dropout_inputs(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  """Names of the independently droppable inputs: each conditional image, then each pose."""
  poses = tuple(keys[0] for keys in POSE_INPUTS) if uses_pose(config.model) else ()
  return tuple(config.model.cond_images) + poses


def drop_inputs(cond: dict, keep: Mapping[str, jax.Array]) -> dict:
  """Zeroes every input whose ``keep`` entry [B] is False (images to 0; pose coordinates and mask
  to 0). ``noise_aug_levels`` and inputs not in ``keep`` are left as they are."""
  out = dict(cond)
  for name, k in keep.items():
    if name in IMAGE_KEYS:
      out[name] = jnp.where(k[:, None, None, None], cond[name], 0.0)
    else:
      mask_key = dict(POSE_INPUTS)[name]
      out[name] = jnp.where(k[:, None, None], cond[name], 0.0)
      out[mask_key] = jnp.where(k[:, None], cond[mask_key], 0.0)
  return out


def null_cond(cond: dict) -> dict:
  """The unconditional branch of classifier-free guidance: every image of ``cond`` zero, both
  poses masked out and zeroed, ``noise_aug_levels`` kept (docs/ARCHITECTURE.md)."""
  out = dict(cond)
  for name in IMAGE_KEYS:
    if name in out:
      out[name] = jnp.zeros_like(out[name])
  for pose_key, mask_key in POSE_INPUTS:
    if pose_key in out:
      out[pose_key] = jnp.zeros_like(out[pose_key])
      out[mask_key] = jnp.zeros_like(out[mask_key])
  return out


def training_cond(batch: Mapping[str, jax.Array], key: jax.Array,
                  config: ml_collections.ConfigDict) -> dict:
  """Conditioning for one training step: derived lowres (SR stages), noise-conditioning
  augmentation with t_na ~ U[0, diffusion.train_noise_aug_max] per image and example, conditioning
  dropout.

  batch: docs/ARCHITECTURE.md ("person" [B, R, R, 3] is the target). Returns the cond dict of the
  model call, with "noise_aug_levels" [B, len(config.model.cond_images)].
  """
  d = config.diffusion
  mode = d.get("cond_dropout_mode", "joint")
  if mode not in DROPOUT_MODES:
    raise ValueError(f"diffusion.cond_dropout_mode={mode!r}: expected one of {DROPOUT_MODES}")
  p_drop = float(d.cond_dropout)
  if not 0.0 <= p_drop <= 1.0:
    raise ValueError(f"diffusion.cond_dropout={p_drop} must be in [0, 1]")
  names = tuple(config.model.cond_images)
  batch_size = batch["person"].shape[0]
  key_levels, key_noise, key_drop = jax.random.split(key, 3)

  cond = _base_cond(batch, config)
  if "lowres" in names and "lowres" not in cond:
    factor = config.model.get("lowres_factor")
    if factor is None:
      raise ValueError("model.cond_images names 'lowres' but model.lowres_factor is not set")
    data = config.get("data", {})
    if "crop_size" in data and "lowres_size" in data and (
        data.crop_size != data.lowres_size * factor):
      raise ValueError(f"data.crop_size={data.crop_size} != data.lowres_size={data.lowres_size}"
                       f" * model.lowres_factor={factor}")
    cond["lowres"] = degrade_to_lowres(jnp.asarray(batch["person"], jnp.float32), int(factor),
                                       d.get("lowres_down_method", "linear"))
  top = float(d.get("train_noise_aug_max", 1.0))
  if not 0.0 <= top <= 1.0:
    raise ValueError(f"diffusion.train_noise_aug_max={top} must be in [0, 1]")
  levels = jax.random.uniform(key_levels, (batch_size, len(names)), jnp.float32, 0.0, top)
  cond = _augment_all(cond, levels, key_noise, config)

  inputs = _dropout_inputs(config)
  if mode == "joint":
    keep_all = jax.random.uniform(key_drop, (batch_size,)) >= p_drop
    keep = {name: keep_all for name in inputs}
  else:
    u = jax.random.uniform(key_drop, (len(inputs), batch_size))
    keep = {name: u[i] >= p_drop for i, name in enumerate(inputs)}
  return drop_inputs(cond, keep)


def inference_levels(config: ml_collections.ConfigDict, batch_size: int) -> jax.Array:
  """The fixed noise-augmentation levels [B, len(cond_images)]:
  diffusion.inference_noise_aug_per_image (one per name of model.cond_images) when set, else
  diffusion.inference_noise_aug for every image."""
  names = tuple(config.model.cond_images)
  d = config.diffusion
  per_image = [float(v) for v in d.get("inference_noise_aug_per_image", ())]
  field = "inference_noise_aug_per_image"
  if not per_image:
    per_image = [float(d.get("inference_noise_aug", 0.0))] * len(names)
    field = "inference_noise_aug"
  if len(per_image) != len(names):
    raise ValueError(f"diffusion.{field} has {len(per_image)} levels, "
                     f"model.cond_images names {len(names)}")
  if any(not 0.0 <= v <= 1.0 for v in per_image):
    raise ValueError(f"diffusion.{field}={per_image}: levels must be in [0, 1]")
  return jnp.broadcast_to(jnp.asarray(per_image, jnp.float32), (batch_size, len(names)))


def inference_cond(batch: Mapping[str, jax.Array], key: jax.Array,
                   config: ml_collections.ConfigDict, lowres: jax.Array | None = None,
                   *, resolution: int | None = None) -> dict:
  """Conditioning for sampling: fixed noise-augmentation levels, no dropout.

  batch: the stage's inputs at its resolution (agnostic, garment, poses; see
  docs/ARCHITECTURE.md). lowres: the previous stage's output [B, r, r, 3] at any size; it is
  resized (bilinear) to ``resolution``, which defaults to the batch images' size, else
  r * model.lowres_factor. Returns the cond dict of the model call.
  """
  names = tuple(config.model.cond_images)
  cond = _base_cond(batch, config)
  if "lowres" in names:
    if lowres is None:
      lowres = batch.get("lowres")
    if lowres is None:
      raise ValueError(f"stage {config.get('stage', '?')!r} needs the previous stage's image: "
                       "pass lowres=")
    if resolution is None:
      sizes = [cond[n].shape[1] for n in names if n != "lowres" and n in cond]
      resolution = sizes[0] if sizes else lowres.shape[1] * int(config.model.lowres_factor)
    cond["lowres"] = jnp.clip(resize(jnp.asarray(lowres, jnp.float32), resolution), -1.0, 1.0)
  any_image = next(iter(cond[n] for n in names if n in cond), None)
  if any_image is None:
    raise ValueError("inference_cond: the batch holds none of model.cond_images")
  levels = inference_levels(config, any_image.shape[0])
  return _augment_all(cond, levels, key, config)
