"""Noise schedules in the variance-preserving form x_t = alpha(t) * x0 + sigma(t) * eps.

Time t is continuous in [0, 1] (0 clean, 1 pure noise). A schedule is defined by its log
signal-to-noise ratio logsnr(t) = log(alpha^2 / sigma^2), decreasing in t and clipped to
[logsnr_min, logsnr_max] so that eps -> x0 conversions stay finite at both ends; then
alpha^2 = sigmoid(logsnr) and sigma^2 = sigmoid(-logsnr), so alpha^2 + sigma^2 = 1 exactly.

  * "cosine" (Nichol & Dhariwal 2021): alpha = cos(pi t / 2), i.e. logsnr = -2 log tan(pi t / 2),
    reparameterized so that t=0 and t=1 land exactly on the clip values.
  * "linear" (DDPM's linear betas in continuous time, Song et al.'s VP-SDE):
    alpha^2(t) = exp(-(b0 t + (b1 - b0) t^2 / 2)).

``logsnr_shift`` s moves the curve: by s at every t, or, with ``logsnr_shift_interpolated``, by
s * t (Hoogeboom et al. 2023's shifted-interpolated schedule: the noisy end gets the full shift,
the low-noise steps that draw fine detail keep the base schedule).

``time_mode = "discrete"`` quantizes t onto the grid {1/N, ..., 1} (N = num_train_timesteps) in
training and in the samplers' time grids; the schedule functions themselves stay continuous.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import ml_collections

SCHEDULES = ("cosine", "linear")
TIME_MODES = ("continuous", "discrete")


@dataclasses.dataclass(frozen=True)
class Schedule:
  """A variance-preserving noise schedule; every method maps t (any shape, float) elementwise."""
  name: str
  logsnr_min: float
  logsnr_max: float
  logsnr_shift: float = 0.0
  logsnr_shift_interpolated: bool = False
  linear_beta_start: float = 0.1
  linear_beta_end: float = 20.0
  time_mode: str = "continuous"
  num_train_timesteps: int = 1000

  def __post_init__(self):
    if self.name not in SCHEDULES:
      raise ValueError(f"diffusion.schedule={self.name!r}: expected one of {SCHEDULES}")
    if self.time_mode not in TIME_MODES:
      raise ValueError(f"diffusion.time_mode={self.time_mode!r}: expected one of {TIME_MODES}")
    if not self.logsnr_min < self.logsnr_max:
      raise ValueError(f"diffusion.logsnr_min={self.logsnr_min} must be < "
                       f"diffusion.logsnr_max={self.logsnr_max}")
    if self.time_mode == "discrete" and self.num_train_timesteps < 1:
      raise ValueError(f"diffusion.num_train_timesteps={self.num_train_timesteps} must be >= 1")

  def logsnr(self, t: jax.Array) -> jax.Array:
    """log(alpha^2 / sigma^2) at t; strictly decreasing from logsnr_max (t=0) to logsnr_min (t=1)
    (before logsnr_shift, which moves the curve by logsnr_shift, or by logsnr_shift * t)."""
    t = jnp.asarray(t, jnp.float32)
    if self.name == "cosine":
      # logsnr = -2 log tan(a t + b), with b, a chosen so t=0 -> logsnr_max and t=1 -> logsnr_min.
      b = math.atan(math.exp(-0.5 * self.logsnr_max))
      a = math.atan(math.exp(-0.5 * self.logsnr_min)) - b
      logsnr = -2.0 * jnp.log(jnp.tan(a * t + b))
    else:
      b0, b1 = self.linear_beta_start, self.linear_beta_end
      # log(alpha^2 / (1 - alpha^2)) = -log(exp(integral of beta) - 1).
      integral = b0 * t + 0.5 * (b1 - b0) * t * t
      logsnr = -jnp.log(jnp.expm1(jnp.maximum(integral, 1e-20)))
    shift = self.logsnr_shift * t if self.logsnr_shift_interpolated else self.logsnr_shift
    return jnp.clip(logsnr, self.logsnr_min, self.logsnr_max) + shift

  def alpha(self, t: jax.Array) -> jax.Array:
    """Signal scale sqrt(sigmoid(logsnr(t)))."""
    return jnp.sqrt(jax.nn.sigmoid(self.logsnr(t)))

  def sigma(self, t: jax.Array) -> jax.Array:
    """Noise scale sqrt(sigmoid(-logsnr(t)))."""
    return jnp.sqrt(jax.nn.sigmoid(-self.logsnr(t)))

  def alpha_sigma(self, t: jax.Array) -> tuple[jax.Array, jax.Array]:
    logsnr = self.logsnr(t)
    return jnp.sqrt(jax.nn.sigmoid(logsnr)), jnp.sqrt(jax.nn.sigmoid(-logsnr))

  def snr(self, t: jax.Array) -> jax.Array:
    return jnp.exp(self.logsnr(t))

  def quantize(self, t: jax.Array) -> jax.Array:
    """Identity for continuous time; for discrete time rounds t onto {0, 1/N, ..., 1}."""
    if self.time_mode == "continuous":
      return t
    n = self.num_train_timesteps
    return jnp.round(t * n) / n

  def sample_t(self, key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Training times: U[0, 1] (continuous) or uniform on {1/N, ..., 1} (discrete)."""
    if self.time_mode == "continuous":
      return jax.random.uniform(key, shape, jnp.float32)
    n = self.num_train_timesteps
    return jax.random.randint(key, shape, 1, n + 1).astype(jnp.float32) / n

  def add_noise(self, x0: jax.Array, noise: jax.Array, t: jax.Array) -> jax.Array:
    """The forward process alpha(t) x0 + sigma(t) noise; t is [B] (or broadcastable to x0)."""
    alpha, sigma = self.alpha_sigma(t)
    alpha, sigma = _expand_like(alpha, x0), _expand_like(sigma, x0)
    return alpha * x0 + sigma * noise


def _expand_like(v: jax.Array, x: jax.Array) -> jax.Array:
  """[B] -> [B, 1, ..., 1] with x's rank."""
  v = jnp.asarray(v)
  return v.reshape(v.shape + (1,) * (x.ndim - v.ndim))


def make_schedule(diffusion_config: ml_collections.ConfigDict) -> Schedule:
  """Builds the schedule named by ``diffusion_config.schedule`` (fields as configs/common.py)."""
  d = diffusion_config
  return Schedule(
      name=d.get("schedule", "cosine"),
      logsnr_min=float(d.get("logsnr_min", -20.0)),
      logsnr_max=float(d.get("logsnr_max", 20.0)),
      logsnr_shift=float(d.get("logsnr_shift", 0.0)),
      logsnr_shift_interpolated=bool(d.get("logsnr_shift_interpolated", False)),
      linear_beta_start=float(d.get("linear_beta_start", 0.1)),
      linear_beta_end=float(d.get("linear_beta_end", 20.0)),
      time_mode=d.get("time_mode", "continuous"),
      num_train_timesteps=int(d.get("num_train_timesteps", 1000)),
  )
