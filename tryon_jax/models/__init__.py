"""Networks of TryOnDiffusion: Parallel-UNet (128 and 256 stages) and Imagen's Efficient-UNet
(256 -> 1024 super-resolution). ``build_model(config.model, rngs)`` picks one by ``model.name``;
``count_params(config.model)`` counts parameters without allocating them."""

from __future__ import annotations

import math

import jax
import ml_collections
from flax import nnx

from tryon_jax.models.efficient_unet import EfficientUNet
from tryon_jax.models.parallel_unet import ParallelUNet

MODELS = {"parallel_unet": ParallelUNet, "efficient_unet": EfficientUNet}


def build_model(model_config: ml_collections.ConfigDict, rngs: nnx.Rngs) -> nnx.Module:
  """Instantiates the network named by ``model_config.name``."""
  if model_config.name not in MODELS:
    raise ValueError(f"model.name={model_config.name!r}: expected one of {sorted(MODELS)}")
  return MODELS[model_config.name](model_config, rngs=rngs)


def count_params(model_config: ml_collections.ConfigDict) -> dict[str, int]:
  """Parameter counts from abstract shapes (jax.eval_shape): nothing is allocated.

  Returns {"params": total, <top-level submodule>: count, ...}, e.g. person_unet, garment_unet.
  """
  with nnx.use_eager_sharding(False):
    abstract = nnx.eval_shape(lambda: build_model(model_config, nnx.Rngs(0)))
  counts: dict[str, int] = {}
  for path, var in nnx.to_flat_state(nnx.state(abstract, nnx.Param)):
    size = math.prod(var.get_value().shape)
    counts[str(path[0])] = counts.get(str(path[0]), 0) + size
  counts = dict(sorted(counts.items()))
  return {"params": sum(counts.values()), **counts}


__all__ = ["EfficientUNet", "ParallelUNet", "build_model", "count_params"]
