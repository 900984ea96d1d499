"""Classifier-free guidance: pred = uncond + w (cond - uncond); w=0 unconditional, w=1 conditional.

Both branches are evaluated in ONE forward pass: the conditional and the unconditional inputs are
concatenated along the batch axis (first half conditional, second half unconditional), which keeps
the network's batch dimension sharded as in training. The unconditional cond is
``conditioning.null_cond`` (images zero, pose masks zero, noise-aug levels kept).
"""

from __future__ import annotations

from collections.abc import Callable
import numbers

import jax
import jax.numpy as jnp

from tryon_jax.diffusion import conditioning

ModelFn = Callable[[jax.Array, jax.Array, dict], jax.Array]


def guided_model(model_fn: ModelFn, guidance_weight: float | jax.Array) -> ModelFn:
  """Wraps model_fn(x_t [B,...], t [B], cond) into the guided prediction [B, ...].

  A Python weight of exactly 1 is the conditional model itself, so it skips the unconditional
  half (half the compute); any other weight, or a traced one, takes the batched two-branch pass.
  """
  if isinstance(guidance_weight, numbers.Number) and float(guidance_weight) == 1.0:
    return model_fn

  def guided(x_t: jax.Array, t: jax.Array, cond: dict) -> jax.Array:
    batch = x_t.shape[0]
    uncond = conditioning.null_cond(cond)
    both = jax.tree.map(lambda c, u: jnp.concatenate([c, u], axis=0), cond, uncond)
    out = model_fn(jnp.concatenate([x_t, x_t], axis=0), jnp.concatenate([t, t], axis=0), both)
    out_cond, out_uncond = out[:batch], out[batch:]
    return out_uncond + guidance_weight * (out_cond - out_uncond)

  return guided
