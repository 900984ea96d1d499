"""Exponential moving average of parameters, used for sampling: a pure function on pytrees."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

PyTree = Any


def decay_at(step: int | jax.Array, decay: float, warmup_offset: float) -> jax.Array:
  """The EMA decay used at optimizer step ``step`` (0-based): min(decay, (1 + step) / (offset +
  step)), TF's ExponentialMovingAverage(num_updates) rule, so early EMAs follow training instead of
  holding the random init for ~1/(1 - decay) steps. warmup_offset <= 0 gives the constant decay."""
  decay = jnp.float32(decay)
  if warmup_offset <= 0:
    return decay
  step = jnp.asarray(step, jnp.float32)
  return jnp.minimum(decay, (1.0 + step) / (jnp.float32(warmup_offset) + step))


def ema_update(ema_tree: PyTree, params_tree: PyTree, decay: float | jax.Array) -> PyTree:
  """ema <- decay * ema + (1 - decay) * params, leaf by leaf, in each EMA leaf's dtype.

  Both trees must have the same structure (e.g. two nnx.State of nnx.Param). Non-float leaves
  (counters) are copied from params_tree.
  """
  def update(ema, param):
    ema, param = jnp.asarray(ema), jnp.asarray(param)
    if not jnp.issubdtype(ema.dtype, jnp.floating):
      return param
    mixed = decay * ema.astype(jnp.float32) + (1.0 - decay) * param.astype(jnp.float32)
    return mixed.astype(ema.dtype)

  return jax.tree.map(update, ema_tree, params_tree)
