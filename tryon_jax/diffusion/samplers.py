"""Samplers: ancestral DDPM, DDIM and DPM-Solver++(2M), all one ``jax.lax.fori_loop`` over steps.

Every sampler walks the time grid t_0 = 1 > t_1 > ... > t_N = 0 (uniform in t; snapped to the
training grid for ``time_mode="discrete"``), starting from x ~ N(0, I). At each step the
(guided) network prediction gives (x0_hat, eps_hat); x0_hat is clipped to [-1, 1]
(``diffusion.clip_x0``) or dynamically thresholded (``diffusion.dynamic_threshold``) and eps_hat
recomputed to match. With lambda = logsnr:

  * DDIM (Song et al. 2021), s -> t:  c^2 = eta^2 sigma_t^2 (1 - exp(lambda_s - lambda_t)),
    x_t = alpha_t x0_hat + sqrt(sigma_t^2 - c^2) eps_hat + c z.
  * Ancestral DDPM (Ho et al. 2020) is DDIM with eta = 1: c^2 is then the true posterior variance
    of q(x_t | x_s, x0) and the mean its posterior mean.
  * DPM-Solver++(2M) (Lu et al. 2022), multistep second order in data prediction, h = (lambda_t -
    lambda_s) / 2: x_t = (sigma_t / sigma_s) x_s - alpha_t expm1(-h) D, with D = x0_hat on the first
    and the last step and D = (1 + 1/(2r)) x0_hat - 1/(2r) x0_prev (r = h_prev / h) between.

The last DDPM/DDIM step returns x0_hat itself (t_N = 0). The key fixes everything: the same key
gives the same samples.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections

from tryon_jax.diffusion import guidance
from tryon_jax.diffusion import prediction as prediction_lib
from tryon_jax.diffusion import schedules

ModelFn = Callable[[jax.Array, jax.Array, dict], jax.Array]
SAMPLERS = ("ddpm", "ddim", "dpmpp_2m")


def time_grid(schedule: schedules.Schedule, steps: int) -> jax.Array:
  """[steps + 1] times from 1 down to 0."""
  if steps < 1:
    raise ValueError(f"sampling steps={steps} must be >= 1")
  if schedule.time_mode == "discrete" and steps > schedule.num_train_timesteps:
    raise ValueError(f"sampling steps={steps} exceed diffusion.num_train_timesteps="
                     f"{schedule.num_train_timesteps} (discrete time)")
  return schedule.quantize(jnp.linspace(1.0, 0.0, steps + 1, dtype=jnp.float32))


def _denoiser(model_fn: ModelFn, cond: dict, schedule: schedules.Schedule,
              diffusion_config: ml_collections.ConfigDict):
  """(x [B, ...], t scalar) -> (x0_hat, eps_hat) with thresholding applied."""
  kind = diffusion_config.prediction
  prediction_lib.check_prediction(kind)
  clip = bool(diffusion_config.get("clip_x0", True))
  percentile = float(diffusion_config.get("dynamic_threshold", 0.0))

  def denoise(x: jax.Array, t: jax.Array) -> tuple[jax.Array, jax.Array]:
    t_batch = jnp.full((x.shape[0],), t, jnp.float32)
    alpha, sigma = schedule.alpha_sigma(t)
    pred = model_fn(x, t_batch, cond).astype(jnp.float32)
    x0, eps = prediction_lib.to_x0_eps(pred, x, alpha, sigma, kind)
    if clip or percentile > 0.0:
      x0 = prediction_lib.threshold_x0(x0, clip, percentile)
      eps = prediction_lib.eps_from_x0(x0, x, alpha, sigma)
    return x0, eps

  return denoise


def _ddim_loop(denoise, x: jax.Array, ts: jax.Array, schedule: schedules.Schedule, eta: float,
               key: jax.Array) -> jax.Array:
  steps = ts.shape[0] - 1
  logsnr = schedule.logsnr(ts)

  def body(i, x):
    x0, eps = denoise(x, ts[i])
    alpha_t = jnp.sqrt(jax.nn.sigmoid(logsnr[i + 1]))
    sigma_t = jnp.sqrt(jax.nn.sigmoid(-logsnr[i + 1]))
    # Fraction of sigma_t^2 that is fresh noise: 1 - SNR(s)/SNR(t).
    c2 = (eta ** 2) * sigma_t ** 2 * -jnp.expm1(logsnr[i] - logsnr[i + 1])
    z = jax.random.normal(jax.random.fold_in(key, i), x.shape, jnp.float32)
    x_next = alpha_t * x0 + jnp.sqrt(jnp.maximum(sigma_t ** 2 - c2, 0.0)) * eps + jnp.sqrt(c2) * z
    return jnp.where(i == steps - 1, x0, x_next)

  return jax.lax.fori_loop(0, steps, body, x)


def _dpmpp_2m_loop(denoise, x: jax.Array, ts: jax.Array, schedule: schedules.Schedule) -> jax.Array:
  steps = ts.shape[0] - 1
  logsnr = schedule.logsnr(ts)
  half_logsnr = 0.5 * logsnr  # log(alpha / sigma)
  alphas, sigmas = jnp.sqrt(jax.nn.sigmoid(logsnr)), jnp.sqrt(jax.nn.sigmoid(-logsnr))

  def body(i, carry):
    x, x0_prev = carry
    x0, _ = denoise(x, ts[i])
    h = half_logsnr[i + 1] - half_logsnr[i]
    h_prev = half_logsnr[i] - half_logsnr[jnp.maximum(i - 1, 0)]
    r = h_prev / h
    second_order = (1.0 + 0.5 / r) * x0 - (0.5 / r) * x0_prev
    # First order on the first step (no history) and on the last one, whose step to t=0 spans
    # the huge log-SNR range up to logsnr_max, where extrapolating x0 amplifies its error.
    d = jnp.where((i == 0) | (i == steps - 1), x0, second_order)
    x_next = (sigmas[i + 1] / sigmas[i]) * x - alphas[i + 1] * jnp.expm1(-h) * d
    return x_next, x0

  x, _ = jax.lax.fori_loop(0, steps, body, (x, jnp.zeros_like(x)))
  return x


def sample(model_fn: ModelFn, cond: dict, key: jax.Array, config: ml_collections.ConfigDict, *,
           shape: tuple[int, ...], sampler: str | None = None, steps: int | None = None,
           guidance_weight: float | jax.Array | None = None,
           noise: jax.Array | None = None) -> jax.Array:
  """Draws x0 [B, R, R, 3] (= ``shape``) from model_fn(x_t, t [B], cond) -> prediction.

  config: the full stage config (reads config.diffusion). sampler ("ddpm" | "ddim" | "dpmpp_2m"),
  steps and guidance_weight default to diffusion.sampler, .sample_steps, .guidance_weight.
  sampler, steps and shape must be static under jax.jit; guidance_weight may be traced.
  noise: the starting x_1 [shape]; None draws it from the key (which also drives the per-step
  noise of DDPM and of DDIM with eta > 0).
  """
  d = config.diffusion
  sampler = sampler if sampler is not None else d.get("sampler", "ddpm")
  steps = int(steps if steps is not None else d.sample_steps)
  w = guidance_weight if guidance_weight is not None else float(d.guidance_weight)
  if sampler not in SAMPLERS:
    raise ValueError(f"diffusion.sampler={sampler!r}: expected one of {SAMPLERS}")
  schedule = schedules.make_schedule(d)
  ts = time_grid(schedule, steps)
  denoise = _denoiser(guidance.guided_model(model_fn, w), cond, schedule, d)
  key_init, key_loop = jax.random.split(key)
  if noise is None:
    x = jax.random.normal(key_init, tuple(shape), jnp.float32)
  elif tuple(noise.shape) != tuple(shape):
    raise ValueError(f"sample: noise shape {tuple(noise.shape)} != shape {tuple(shape)}")
  else:
    x = jnp.asarray(noise, jnp.float32)
  if sampler == "ddpm":
    return _ddim_loop(denoise, x, ts, schedule, 1.0, key_loop)
  if sampler == "ddim":
    return _ddim_loop(denoise, x, ts, schedule, float(d.get("ddim_eta", 0.0)), key_loop)
  return _dpmpp_2m_loop(denoise, x, ts, schedule)
