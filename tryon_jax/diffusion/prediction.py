"""What the network predicts ("eps", the paper's default, or "v") and the conversions to (x0, eps).

With x_t = alpha x0 + sigma eps (alpha^2 + sigma^2 = 1):
  eps-prediction: x0 = (x_t - sigma eps) / alpha;
  v-prediction:   v = alpha eps - sigma x0,
                  so x0 = alpha x_t - sigma v and eps = sigma x_t + alpha v.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

PREDICTIONS = ("eps", "v")


def check_prediction(prediction: str) -> None:
  if prediction not in PREDICTIONS:
    raise ValueError(f"diffusion.prediction={prediction!r}: expected one of {PREDICTIONS}")


def training_target(x0: jax.Array, eps: jax.Array, alpha: jax.Array, sigma: jax.Array,
                    prediction: str) -> jax.Array:
  """The regression target; alpha, sigma broadcastable to x0 ([B, 1, 1, 1])."""
  check_prediction(prediction)
  if prediction == "eps":
    return eps
  return alpha * eps - sigma * x0


def to_x0_eps(pred: jax.Array, x_t: jax.Array, alpha: jax.Array, sigma: jax.Array,
              prediction: str) -> tuple[jax.Array, jax.Array]:
  """(x0, eps) implied by the network output ``pred`` at x_t."""
  check_prediction(prediction)
  if prediction == "eps":
    return (x_t - sigma * pred) / alpha, pred
  return alpha * x_t - sigma * pred, sigma * x_t + alpha * pred


def eps_from_x0(x0: jax.Array, x_t: jax.Array, alpha: jax.Array, sigma: jax.Array) -> jax.Array:
  """The noise consistent with x_t and a (possibly clipped) x0."""
  return (x_t - alpha * x0) / sigma


def threshold_x0(x0: jax.Array, clip: bool, dynamic_percentile: float = 0.0) -> jax.Array:
  """Clips x0 [B, ...] to [-1, 1]; with ``dynamic_percentile`` > 0, Imagen's dynamic thresholding:
  per example s = max(1, percentile(|x0|)), x0 -> clip(x0, -s, s) / s."""
  if dynamic_percentile > 0.0:
    flat = jnp.abs(x0.reshape(x0.shape[0], -1))
    s = jnp.maximum(jnp.quantile(flat, dynamic_percentile, axis=1), 1.0)
    s = s.reshape((-1,) + (1,) * (x0.ndim - 1))
    return jnp.clip(x0, -s, s) / s
  if clip:
    return jnp.clip(x0, -1.0, 1.0)
  return x0
