"""Samplers against an analytic denoiser: data x0 ~ N(mu, Sigma), for which the exact
eps-prediction is closed-form, E[eps | x_t] = sigma Sigma_t^-1 (x_t - alpha mu) with
Sigma_t = alpha^2 Sigma + sigma^2 I. A correct sampler then reproduces mu and Sigma, better with
more steps, and DDIM with eta = 0 follows the probability-flow ODE, whose solution is also
closed-form for Gaussian data."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import base128
from tryon_jax.diffusion import samplers, schedules

N_SAMPLES = 8192  # sampling error of a covariance entry: ~0.2 * sqrt(2 / 8192) = 0.003
SHAPE = (N_SAMPLES, 1, 2, 3)  # [B, H, W, C] with H * W * C = 6 dimensions
DIM = 6

_rng = np.random.default_rng(0)
Q, _ = np.linalg.qr(_rng.normal(size=(DIM, DIM)))
EIG = np.linspace(0.02, 0.2, DIM)
COV = (Q * EIG) @ Q.T
MU = _rng.uniform(-0.5, 0.5, DIM)


def make_config(**diffusion):
  cfg = base128.get_config()
  cfg.diffusion.clip_x0 = False  # Gaussian data is not bounded to [-1, 1]
  for k, v in diffusion.items():
    cfg.diffusion[k] = v
  return cfg


def gaussian_eps_model(schedule, shift=0.0):
  """The exact eps-prediction for x0 ~ N(MU + shift, COV); t is [B]."""
  q, eig, mu = (jnp.asarray(v, jnp.float32) for v in (Q, EIG, MU + shift))

  def model(x, t, cond):
    del cond
    a, s = schedule.alpha_sigma(t)
    a, s = a[:, None], s[:, None]
    # HIGHEST: no TF32 matmuls on GPUs, so the tolerances below hold on every backend.
    matmul = lambda u, v: jnp.matmul(u, v, precision=jax.lax.Precision.HIGHEST)
    r = matmul(x.reshape(x.shape[0], DIM) - a * mu, q)
    return matmul(s * r / (a ** 2 * eig + s ** 2), q.T).reshape(x.shape)

  return model


@functools.lru_cache(maxsize=None)
def draw(sampler: str, steps: int, eta: float = 0.0, seed: int = 1) -> np.ndarray:
  cfg = make_config(ddim_eta=eta)
  model = gaussian_eps_model(schedules.make_schedule(cfg.diffusion))
  fn = jax.jit(lambda key: samplers.sample(model, {}, key, cfg, shape=SHAPE, sampler=sampler,
                                           steps=steps, guidance_weight=1.0))
  return np.asarray(fn(jax.random.key(seed))).reshape(N_SAMPLES, DIM)


def errors(x):
  return np.abs(x.mean(0) - MU).max(), np.abs(np.cov(x.T) - COV).max()


# (sampler, few steps, tolerance, many steps, tolerance): covariance max-abs error, measured
# 0.061 / 0.005 (ddim), 0.034 / 0.002 (dpmpp_2m; 0.006 with r = h / h_prev swapped), 0.036 /
# 0.007 (ddpm). Sampling noise alone: ~0.003.
CASES = [("ddim", 8, 0.1, 128, 0.012), ("dpmpp_2m", 8, 0.06, 32, 0.0045),
         ("ddpm", 32, 0.06, 256, 0.014)]


@pytest.mark.parametrize("sampler,few,tol_few,many,tol_many", CASES)
def test_sampler_reproduces_gaussian_mean_and_covariance(sampler, few, tol_few, many, tol_many):
  mean_few, cov_few = errors(draw(sampler, few))
  mean_many, cov_many = errors(draw(sampler, many))
  assert mean_few < 0.02 and mean_many < 0.02, (mean_few, mean_many)  # 4 sigma of the sample mean
  assert cov_few < tol_few, cov_few
  assert cov_many < tol_many, cov_many
  assert cov_many < cov_few  # the tolerance tightens with steps because the error does


def test_dpm_solver_beats_ddim_at_equal_steps():
  assert errors(draw("dpmpp_2m", 8))[1] < 0.7 * errors(draw("ddim", 8))[1]


def test_ddim_eta0_is_deterministic_probability_flow():
  cfg_det, cfg_sto = make_config(ddim_eta=0.0), make_config(ddim_eta=1.0)
  schedule = schedules.make_schedule(cfg_det.diffusion)
  model = gaussian_eps_model(schedule)
  x1 = jax.random.normal(jax.random.key(5), (512, 1, 2, 3))

  def run(cfg, key):
    return samplers.sample(model, {}, key, cfg, shape=x1.shape, sampler="ddim", steps=128,
                           guidance_weight=1.0, noise=x1)

  det = jax.jit(lambda k: run(cfg_det, k))
  sto = jax.jit(lambda k: run(cfg_sto, k))
  a, b = np.asarray(det(jax.random.key(0))), np.asarray(det(jax.random.key(99)))
  np.testing.assert_array_equal(a, b)  # only the starting noise matters
  sto_a, sto_b = np.asarray(sto(jax.random.key(0))), np.asarray(sto(jax.random.key(99)))
  assert np.abs(sto_a - sto_b).max() > 0.1  # eta = 1 does use the key: the check can fail
  # Exact ODE map: the whitened coordinates Q^T (x - alpha mu) / sqrt(alpha^2 eig + sigma^2) stay
  # constant along the probability-flow ODE.
  a1, s1 = (float(v) for v in schedule.alpha_sigma(1.0))
  s0 = float(schedule.sigma(0.0))
  y = (np.asarray(x1).reshape(-1, DIM) - a1 * MU) @ Q / np.sqrt(a1 ** 2 * EIG + s1 ** 2)
  exact = MU + (y * np.sqrt(EIG + s0 ** 2)) @ Q.T
  np.testing.assert_allclose(a.reshape(-1, DIM), exact, atol=0.03)


def test_same_key_same_samples_and_guidance_shifts_mean():
  cfg = make_config()
  schedule = schedules.make_schedule(cfg.diffusion)
  cond_model, uncond_model = gaussian_eps_model(schedule, 0.3), gaussian_eps_model(schedule, 0.0)

  def model(x, t, cond):  # conditional data mean MU + 0.3, unconditional MU
    on = cond["agnostic"][:, :1, :1, :1] != 0
    return jnp.where(on, cond_model(x, t, cond), uncond_model(x, t, cond))

  cond = {"agnostic": jnp.ones((256, 1, 2, 3))}
  fn = jax.jit(lambda key, w: samplers.sample(model, cond, key, cfg, shape=(256, 1, 2, 3),
                                              sampler="dpmpp_2m", steps=16, guidance_weight=w))
  x = np.asarray(fn(jax.random.key(2), 2.0))
  np.testing.assert_array_equal(x, np.asarray(fn(jax.random.key(2), 2.0)))
  # Gaussian scores: w=2 moves the mean to MU + 2 * 0.3 (uncond + 2 (cond - uncond)).
  np.testing.assert_allclose(x.reshape(-1, DIM).mean(0), MU + 0.6, atol=0.06)
  np.testing.assert_allclose(np.asarray(fn(jax.random.key(2), 0.0)).reshape(-1, DIM).mean(0), MU,
                             atol=0.06)


@pytest.mark.parametrize("threshold", [0.0, 0.9])
def test_x0_clipping_and_dynamic_thresholding_bound_the_output(threshold):
  cfg = make_config(clip_x0=True, dynamic_threshold=threshold, prediction="v")
  wild = lambda x, t, cond: -3.0 * x  # v-prediction whose implied x0 leaves [-1, 1]

  @jax.jit
  def both(key):
    run = lambda c: samplers.sample(wild, {}, key, c, shape=(4, 4, 4, 3), sampler="ddim",
                                    steps=4, guidance_weight=1.0)
    return run(cfg), run(make_config(prediction="v"))

  x, unclipped = (np.asarray(v) for v in both(jax.random.key(0)))
  assert np.abs(x).max() <= 1.0 + 1e-6
  assert np.abs(unclipped).max() > 1.5


def test_bad_sampler_and_noise_shape_are_named():
  cfg = make_config()
  with pytest.raises(ValueError, match="diffusion.sampler"):
    samplers.sample(lambda x, t, c: x, {}, jax.random.key(0), cfg, shape=(1, 2, 2, 3),
                    sampler="euler")
  with pytest.raises(ValueError, match="noise shape"):
    samplers.sample(lambda x, t, c: x, {}, jax.random.key(0), cfg, shape=(1, 2, 2, 3),
                    noise=jnp.zeros((1, 4, 4, 3)))
