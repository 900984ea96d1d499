"""The training objective: weighted denoising loss on eps (paper) or v.

  loss = mean_b w(t_b) * mean_pixels (model(x_t, t, cond) - target)^2,
  x_t = alpha(t) x0 + sigma(t) eps,  t ~ U[0, 1] (or the discrete grid),  eps ~ N(0, I).

Weightings w (``diffusion.loss_weighting``):
  * "none": 1 (the paper's plain eps-MSE);
  * "min_snr": Min-SNR-gamma (Hang et al. 2023), min(SNR, gamma) / SNR for eps-prediction and
    min(SNR, gamma) / (SNR + 1) for v-prediction (both equal min(SNR, gamma) on the x0 error).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import ml_collections

from tryon_jax.diffusion import conditioning
from tryon_jax.diffusion import prediction as prediction_lib
from tryon_jax.diffusion import schedules

ModelFn = Callable[[jax.Array, jax.Array, dict], jax.Array]
WEIGHTINGS = ("none", "min_snr")


def loss_weight(logsnr: jax.Array, diffusion_config: ml_collections.ConfigDict) -> jax.Array:
  """Per-example weight [B] from log-SNR [B]."""
  kind = diffusion_config.get("loss_weighting", "none")
  if kind not in WEIGHTINGS:
    raise ValueError(f"diffusion.loss_weighting={kind!r}: expected one of {WEIGHTINGS}")
  if kind == "none":
    return jnp.ones_like(logsnr)
  snr = jnp.exp(logsnr)
  clipped = jnp.minimum(snr, float(diffusion_config.min_snr_gamma))
  if diffusion_config.prediction == "v":
    return clipped / (snr + 1.0)
  return clipped / snr


def denoising_loss(model_fn: ModelFn, x0: jax.Array, t: jax.Array, noise: jax.Array, cond: dict,
                   diffusion_config: ml_collections.ConfigDict
                   ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """The loss for given x0 [B, R, R, 3], t [B], noise like x0 and cond. Returns (loss, metrics)."""
  schedule = schedules.make_schedule(diffusion_config)
  x0 = x0.astype(jnp.float32)
  logsnr = schedule.logsnr(t)
  alpha = jnp.sqrt(jax.nn.sigmoid(logsnr))[:, None, None, None]
  sigma = jnp.sqrt(jax.nn.sigmoid(-logsnr))[:, None, None, None]
  x_t = alpha * x0 + sigma * noise
  target = prediction_lib.training_target(x0, noise, alpha, sigma, diffusion_config.prediction)
  pred = model_fn(x_t, t, cond).astype(jnp.float32)
  if pred.shape != x0.shape:
    raise ValueError(f"model output shape {pred.shape} != target shape {x0.shape}")
  mse = jnp.mean(jnp.square(pred - target), axis=(1, 2, 3))
  weight = loss_weight(logsnr, diffusion_config)
  loss = jnp.mean(weight * mse)
  metrics = {"loss": loss, "mse": jnp.mean(mse), "mean_weight": jnp.mean(weight)}
  return loss, metrics


def diffusion_loss(model_fn: ModelFn, batch: Mapping[str, jax.Array], key: jax.Array,
                   config: ml_collections.ConfigDict) -> tuple[jax.Array, dict[str, jax.Array]]:
  """One training loss on ``batch`` (docs/ARCHITECTURE.md, "person" = x0 [B, R, R, 3]).

  model_fn(x_t [B, R, R, 3], t [B], cond) -> prediction [B, R, R, 3]; config is the full stage
  config. The key is split into (t, noise, cond) in that order. Returns (scalar loss, metrics).
  """
  x0 = jnp.asarray(batch["person"], jnp.float32)
  key_t, key_noise, key_cond = jax.random.split(key, 3)
  schedule = schedules.make_schedule(config.diffusion)
  t = schedule.sample_t(key_t, (x0.shape[0],))
  noise = jax.random.normal(key_noise, x0.shape, jnp.float32)
  cond = conditioning.training_cond(batch, key_cond, config)
  return denoising_loss(model_fn, x0, t, noise, cond, config.diffusion)
