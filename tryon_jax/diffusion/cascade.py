"""Cascaded inference 128 -> 256 -> 1024 (paper section 3 / appendix A).

Each ``Stage`` is a stage config plus a network (a plain model_fn, an nnx module, or a graphdef
with its state, e.g. EMA parameters restored from a checkpoint) and optional per-stage overrides of
sampler, steps, guidance weight and inference noise-augmentation level. ``Cascade`` resizes the
preprocessed inputs (docs/ARCHITECTURE.md batch, any size) to each stage's resolution, feeds each
stage the previous stage's output as ``lowres`` (upsampled bilinearly, then noise-augmented at the
fixed level) and returns every stage's output. Stage resolution: ``Stage.resolution`` if given;
otherwise previous resolution * model.lowres_factor for a stage that takes ``lowres`` (so the
Efficient-UNet trained on 256 crops runs at 1024), else model.resolution.

Each stage's sampling (conditioning + the whole sampler loop) is one jitted function of
(params, batch, lowres, key); parameters are arguments, not constants baked into the program.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
import copy
import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from tryon_jax.diffusion import conditioning
from tryon_jax.diffusion import samplers

ApplyFn = Callable[[Any, jax.Array, jax.Array, dict], jax.Array]  # (params, x_t, t, cond) -> pred


@dataclasses.dataclass
class Stage:
  """One cascade stage. Build with ``from_model_fn``, ``from_module`` or ``from_graphdef``.

  Overrides left None take the stage config's diffusion.sampler / sample_steps / guidance_weight /
  inference_noise_aug; ``noise_aug`` may be one level or one per model.cond_images name.
  """
  config: ml_collections.ConfigDict
  apply_fn: ApplyFn
  params: Any = None
  sampler: str | None = None
  steps: int | None = None
  guidance_weight: float | None = None
  noise_aug: float | Sequence[float] | None = None
  resolution: int | None = None
  name: str | None = None

  def __post_init__(self):
    self.name = self.name or self.config.get("stage", None) or self.config.name
    self.config = self._effective_config()
    self._sample = jax.jit(self._sample_impl)

  @classmethod
  def from_model_fn(cls, config: ml_collections.ConfigDict,
                    model_fn: Callable[[jax.Array, jax.Array, dict], jax.Array], **overrides
                    ) -> Stage:
    """A stand-alone model_fn(x_t, t, cond) (closes over its own parameters)."""
    return cls(config, lambda params, x, t, cond: model_fn(x, t, cond), None, **overrides)

  @classmethod
  def from_graphdef(cls, config: ml_collections.ConfigDict, graphdef: nnx.GraphDef, *states: Any,
                    **overrides) -> Stage:
    """An nnx graphdef with its state(s), e.g. (graphdef, ema_params, rest) from a checkpoint."""
    def apply(params, x, t, cond):
      return nnx.merge(graphdef, *params)(x, t, cond)
    return cls(config, apply, tuple(states), **overrides)

  @classmethod
  def from_module(cls, config: ml_collections.ConfigDict, module: nnx.Module, **overrides
                  ) -> Stage:
    """An nnx module; its current variables are the parameters."""
    graphdef, state = nnx.split(module)
    return cls.from_graphdef(config, graphdef, state, **overrides)

  def _effective_config(self) -> ml_collections.ConfigDict:
    cfg = copy.deepcopy(self.config)
    with cfg.unlocked():
      d = cfg.diffusion
      if self.sampler is not None:
        d.sampler = self.sampler
      if self.steps is not None:
        d.sample_steps = int(self.steps)
      if self.guidance_weight is not None:
        d.guidance_weight = float(self.guidance_weight)
      if isinstance(self.noise_aug, (int, float)):
        d.inference_noise_aug = float(self.noise_aug)
        d.inference_noise_aug_per_image = ()
      elif self.noise_aug is not None:
        d.inference_noise_aug_per_image = tuple(float(v) for v in self.noise_aug)
    if d.get("sampler", "ddpm") not in samplers.SAMPLERS:
      raise ValueError(f"stage {self.name!r}: sampler={d.sampler!r}, expected one of "
                       f"{samplers.SAMPLERS}")
    return cfg

  @property
  def takes_lowres(self) -> bool:
    return "lowres" in tuple(self.config.model.cond_images)

  def output_resolution(self, previous: int | None) -> int:
    if self.resolution is not None:
      return int(self.resolution)
    if self.takes_lowres and previous is not None:
      return previous * int(self.config.model.lowres_factor)
    return int(self.config.model.resolution)

  def _sample_impl(self, params, batch, lowres, key):
    batch_size = lowres.shape[0] if lowres is not None else batch["agnostic"].shape[0]
    resolution = self.output_resolution(lowres.shape[1] if lowres is not None else None)
    key_cond, key_sample = jax.random.split(key)
    cond = conditioning.inference_cond(batch, key_cond, self.config, lowres=lowres,
                                       resolution=resolution)
    model_fn = lambda x, t, c: self.apply_fn(params, x, t, c)
    return samplers.sample(model_fn, cond, key_sample, self.config,
                           shape=(batch_size, resolution, resolution, 3))

  def __call__(self, batch: Mapping[str, jax.Array], key: jax.Array,
               lowres: jax.Array | None = None) -> jax.Array:
    """Samples this stage: batch images at any size (resized here), lowres [B, r, r, 3] from the
    previous stage. Returns [B, R, R, 3] in [-1, 1]."""
    if self.takes_lowres and lowres is None:
      raise ValueError(f"stage {self.name!r} takes the previous stage's output: pass lowres")
    resolution = self.output_resolution(lowres.shape[1] if lowres is not None else None)
    stage_batch = {}
    for name in self.config.model.cond_images:
      if name != "lowres":
        if name not in batch:
          raise ValueError(f"stage {self.name!r}: the batch has no {name!r} image")
        stage_batch[name] = conditioning.resize(jnp.asarray(batch[name], jnp.float32), resolution)
    if conditioning.uses_pose(self.config.model):
      for keys in conditioning.POSE_INPUTS:
        for k in keys:
          stage_batch[k] = jnp.asarray(batch[k], jnp.float32)
    return self._sample(self.params, stage_batch, lowres, key)


class Cascade:
  """Runs stages in order (e.g. base128 -> sr256 -> sr1024); see the module docstring."""

  def __init__(self, stages: Sequence[Stage]):
    if not stages:
      raise ValueError("Cascade needs at least one stage")
    names = [s.name for s in stages]
    if len(set(names)) != len(names):
      raise ValueError(f"Cascade stage names must be unique, got {names}")
    self.stages = tuple(stages)

  def __call__(self, batch: Mapping[str, jax.Array], key: jax.Array, *,
               stop_after: str | None = None, lowres: jax.Array | None = None
               ) -> dict[str, jax.Array]:
    """batch: preprocessed inputs (agnostic, garment [B, S, S, 3] at any size S; poses, masks).
    stop_after: the name of the last stage to run (e.g. "sr256" skips sr1024). lowres: an
    image that stands in for the previous stage's output of the first stage (to start mid-way).
    Returns {stage name: [B, R, R, 3]} for every stage run, in order."""
    names = [s.name for s in self.stages]
    if stop_after is not None and stop_after not in names:
      raise ValueError(f"stop_after={stop_after!r}: not a stage name, expected one of {names}")
    outputs: dict[str, jax.Array] = {}
    previous = lowres
    for i, stage in enumerate(self.stages):
      previous = stage(batch, jax.random.fold_in(key, i),
                       lowres=previous if stage.takes_lowres else None)
      outputs[stage.name] = previous
      if stage.name == stop_after:
        break
    return outputs
