"""Schedules, noise-conditioning augmentation, conditioning dropout, loss, guidance and EMA."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from configs import base128, sr256, sr1024
from tryon_jax.diffusion import conditioning, ema, guidance, loss, schedules

K = 18


def jit_cond(fn, config, **kwargs):
  """fn(batch, key, config, **kwargs) jitted once, returned as numpy (tests stay compile-light)."""
  jitted = jax.jit(lambda batch, key: fn(batch, key, config, **kwargs))
  return lambda batch, key: jax.tree.map(np.asarray, jitted(batch, key))


def make_batch(b: int, r: int, seed: int = 0) -> dict:
  rng = np.random.default_rng(seed)
  img = lambda: jnp.asarray(rng.uniform(-1, 1, (b, r, r, 3)), jnp.float32)
  return {
      "person": img(), "agnostic": img(), "garment": img(),
      "person_pose": jnp.asarray(rng.uniform(0, 1, (b, K, 2)), jnp.float32),
      "person_pose_mask": jnp.ones((b, K), jnp.float32),
      "garment_pose": jnp.asarray(rng.uniform(0, 1, (b, K, 2)), jnp.float32),
      "garment_pose_mask": jnp.ones((b, K), jnp.float32),
  }


# ---------------------------------------------------------------- schedules

@pytest.mark.parametrize("name", ["cosine", "linear"])
def test_schedule_alpha_sigma_logsnr_consistent(name):
  cfg = base128.get_config().diffusion
  cfg.schedule = name
  s = schedules.make_schedule(cfg)
  t = jnp.linspace(0.0, 1.0, 1001)
  a, sg, l = s.alpha(t), s.sigma(t), s.logsnr(t)
  np.testing.assert_allclose(a ** 2 + sg ** 2, 1.0, atol=1e-6)
  np.testing.assert_allclose(jnp.log(a ** 2 / sg ** 2), l, rtol=1e-3, atol=1e-3)
  assert bool(jnp.all(jnp.diff(l) < 0)), "log-SNR must decrease strictly in t"
  assert float(l[0]) == pytest.approx(cfg.logsnr_max)
  assert float(s.sigma(0.0)) < 1e-4 and float(s.alpha(1.0)) < 0.01


def test_cosine_schedule_is_cosine():
  s = schedules.make_schedule(base128.get_config().diffusion)
  t = jnp.linspace(0.05, 0.95, 19)
  np.testing.assert_allclose(s.alpha(t), jnp.cos(0.5 * math.pi * t), atol=2e-4)
  assert float(s.logsnr(1.0)) == pytest.approx(-20.0, abs=1e-3)


def test_linear_schedule_matches_ddpm_betas():
  cfg = base128.get_config().diffusion
  cfg.schedule = "linear"
  s = schedules.make_schedule(cfg)
  alpha_bar = np.cumprod(1.0 - np.linspace(1e-4, 0.02, 1000))  # DDPM (Ho et al.), discrete
  i = np.array([10, 100, 300, 500, 800, 999])
  np.testing.assert_allclose(s.alpha((i + 1) / 1000.0) ** 2, alpha_bar[i], rtol=0.05, atol=1e-4)


def test_discrete_time_and_shift():
  cfg = base128.get_config().diffusion
  cfg.time_mode, cfg.num_train_timesteps = "discrete", 10
  s = schedules.make_schedule(cfg)
  t = np.asarray(s.sample_t(jax.random.key(0), (2000,)))
  np.testing.assert_allclose(t * 10, np.round(t * 10), atol=1e-5)
  assert t.min() == pytest.approx(0.1) and t.max() == pytest.approx(1.0)
  cfg.logsnr_shift = -2.0
  shifted = schedules.make_schedule(cfg)
  np.testing.assert_allclose(shifted.logsnr(0.3), s.logsnr(0.3) - 2.0, atol=1e-5)


def test_interpolated_shift_moves_only_the_noisy_end():
  cfg = base128.get_config().diffusion
  base = schedules.make_schedule(cfg)
  cfg.logsnr_shift, cfg.logsnr_shift_interpolated = -4.0, True
  s = schedules.make_schedule(cfg)
  t = np.linspace(0.0, 1.0, 101)
  np.testing.assert_allclose(s.logsnr(t), base.logsnr(t) - 4.0 * t, atol=1e-4)
  assert float(s.logsnr(0.0)) == pytest.approx(20.0, abs=1e-4)  # the clean end is unshifted
  assert float(s.logsnr(1.0)) == pytest.approx(-24.0, abs=1e-3)
  assert np.all(np.diff(np.asarray(s.logsnr(t))) < 0)  # still strictly noisier in t
  np.testing.assert_allclose(s.alpha(t) ** 2 + s.sigma(t) ** 2, 1.0, atol=1e-6)


def test_schedule_rejects_unknown_name():
  cfg = base128.get_config().diffusion
  cfg.schedule = "sigmoid"
  with pytest.raises(ValueError, match="diffusion.schedule"):
    schedules.make_schedule(cfg)


# ------------------------------------------------------ noise augmentation

def test_noise_aug_level_zero_identity_level_one_pure_noise():
  s = schedules.make_schedule(base128.get_config().diffusion)
  x = make_batch(4, 8)["agnostic"]
  key = jax.random.key(3)
  noise = jax.random.normal(key, x.shape)
  at0 = conditioning.noise_augment(x, jnp.zeros(4), key, s)
  at1 = conditioning.noise_augment(x, jnp.ones(4), key, s)
  np.testing.assert_allclose(at0, x, atol=5e-4)  # sigma(0) = 4.5e-5
  np.testing.assert_allclose(at1, noise, atol=5e-4)  # alpha(1) = 4.5e-5
  half = conditioning.noise_augment(x, jnp.full(4, 0.5), key, s)
  np.testing.assert_allclose(half, s.alpha(0.5) * x + s.sigma(0.5) * noise, atol=1e-5)


def test_training_cond_levels_and_forward_process_per_image():
  cfg = sr256.get_config()
  cfg.diffusion.cond_dropout = 0.0
  b, r = 16, 8
  batch = make_batch(b, r)
  cond = jit_cond(conditioning.training_cond, cfg)(batch, jax.random.key(0))
  levels = cond["noise_aug_levels"]
  assert levels.shape == (b, 3)  # agnostic, garment, lowres
  assert levels.min() >= 0 and levels.max() <= 1 and len(np.unique(levels)) == b * 3
  s = schedules.make_schedule(cfg.diffusion)
  lowres = np.asarray(conditioning.degrade_to_lowres(batch["person"], 2))
  alpha, sigma = (np.asarray(v) for v in s.alpha_sigma(levels))
  for i, name in enumerate(cfg.model.cond_images):
    clean = lowres if name == "lowres" else np.asarray(batch[name])
    a, sg = alpha[:, i, None, None, None], sigma[:, i, None, None, None]
    # The residual is the Gaussian noise alone: unit variance per example once divided by sigma.
    resid = (cond[name] - a * clean) / sg
    std = resid.reshape(b, -1).std(axis=1)
    np.testing.assert_allclose(std, 1.0, atol=0.35)
  np.testing.assert_array_equal(cond["person_pose"], batch["person_pose"])
  assert "person" not in cond


def test_training_noise_aug_levels_capped_by_train_noise_aug_max():
  cfg = base128.get_config()
  cfg.diffusion.cond_dropout = 0.0
  batch = make_batch(64, 8)
  cfg.diffusion.train_noise_aug_max = 0.3
  levels = np.asarray(conditioning.training_cond(batch, jax.random.key(2), cfg)["noise_aug_levels"])
  assert levels.max() <= 0.3 and levels.max() > 0.25 and levels.min() >= 0  # U[0, 0.3], 128 draws
  cfg.diffusion.train_noise_aug_max = 1.5
  with pytest.raises(ValueError, match="train_noise_aug_max"):
    conditioning.training_cond(batch, jax.random.key(2), cfg)


def test_degrade_to_lowres_is_antialiased_down_up():
  checker = jnp.asarray(np.indices((16, 16)).sum(0) % 2 * 2 - 1, jnp.float32)
  x = jnp.broadcast_to(checker[None, :, :, None], (2, 16, 16, 3))
  low = conditioning.degrade_to_lowres(x, 4)
  assert low.shape == x.shape
  # The 1-pixel checkerboard is above the 4x-smaller image's Nyquist limit: antialiasing removes it.
  assert float(jnp.abs(low).max()) < 0.05
  flat = jnp.full((1, 16, 16, 3), 0.3)
  np.testing.assert_allclose(conditioning.degrade_to_lowres(flat, 4), 0.3, atol=1e-5)
  with pytest.raises(ValueError, match="lowres_factor"):
    conditioning.degrade_to_lowres(jnp.zeros((1, 10, 10, 3)), 4)


def test_sr1024_training_cond_from_person_only():
  cfg = sr1024.get_config()
  person = make_batch(3, 16)["person"]
  cond = jit_cond(conditioning.training_cond, cfg)({"person": person}, jax.random.key(1))
  assert set(cond) == {"lowres", "noise_aug_levels"}
  assert cond["lowres"].shape == (3, 16, 16, 3) and cond["noise_aug_levels"].shape == (3, 1)
  cfg.data.lowres_size = 32  # 256 crops cannot give 32 inputs at factor 4
  with pytest.raises(ValueError, match="data.crop_size"):
    conditioning.training_cond({"person": person}, jax.random.key(1), cfg)


def test_inference_cond_fixed_levels_per_image():
  cfg = sr256.get_config()
  cfg.diffusion.inference_noise_aug_per_image = (0.0, 0.25, 0.5)
  batch = make_batch(2, 8)
  lowres = batch["person"][:, ::2, ::2]
  cond = jit_cond(conditioning.inference_cond, cfg, lowres=lowres)(batch, jax.random.key(0))
  np.testing.assert_allclose(cond["noise_aug_levels"], [[0.0, 0.25, 0.5]] * 2)
  np.testing.assert_allclose(cond["agnostic"], batch["agnostic"], atol=5e-4)  # level 0
  assert cond["lowres"].shape == (2, 8, 8, 3)
  assert np.abs(cond["garment"] - batch["garment"]).mean() > 0.1  # level 0.25
  cfg.diffusion.inference_noise_aug_per_image = (0.0, 0.25)
  with pytest.raises(ValueError, match="inference_noise_aug"):
    conditioning.inference_cond(batch, jax.random.key(0), cfg, lowres=lowres)
  with pytest.raises(ValueError, match="lowres="):
    conditioning.inference_cond(batch, jax.random.key(0), sr256.get_config())


# ---------------------------------------------------------------- dropout

def _dropped(cond):
  """Per example: which inputs are dropped (image all zero / pose mask all zero)."""
  img = lambda k: np.all(cond[k] == 0, axis=(1, 2, 3))
  pose = lambda k: np.all(cond[k] == 0, axis=1)
  return {"agnostic": img("agnostic"), "garment": img("garment"),
          "person_pose": pose("person_pose_mask"), "garment_pose": pose("garment_pose_mask")}


@pytest.fixture(scope="module")
def dropout_batch():
  return make_batch(4000, 2, seed=1)


def test_joint_dropout_drops_ten_percent_together(dropout_batch):
  cfg = base128.get_config()
  assert cfg.diffusion.cond_dropout == 0.1 and cfg.diffusion.cond_dropout_mode == "joint"
  cond = jit_cond(conditioning.training_cond, cfg)(dropout_batch, jax.random.key(7))
  dropped = _dropped(cond)
  frac = dropped["agnostic"].mean()
  assert abs(frac - 0.1) < 0.02, frac  # 4 sigma of a binomial(4000, 0.1) fraction
  for name, d in dropped.items():
    np.testing.assert_array_equal(d, dropped["agnostic"], err_msg=name)
  gone = dropped["agnostic"]
  assert np.all(cond["person_pose"][gone] == 0)
  assert np.min(cond["noise_aug_levels"][gone].sum(-1)) > 0  # levels kept when dropped
  assert not np.any(np.all(cond["agnostic"][~gone] == 0, axis=(1, 2, 3)))


def test_per_input_dropout_is_independent(dropout_batch):
  cfg = base128.get_config()
  cfg.diffusion.cond_dropout_mode = "per_input"
  dropped = _dropped(jit_cond(conditioning.training_cond, cfg)(dropout_batch, jax.random.key(7)))
  for name, d in dropped.items():
    assert abs(d.mean() - 0.1) < 0.02, (name, d.mean())
  both = (dropped["agnostic"] & dropped["garment"]).mean()
  assert both < 0.025, both  # independent: ~0.01, joint would give 0.1
  cfg.diffusion.cond_dropout_mode = "sometimes"
  with pytest.raises(ValueError, match="cond_dropout_mode"):
    conditioning.training_cond(dropout_batch, jax.random.key(7), cfg)


# ---------------------------------------------------------------- loss

def _stand_in_model(x, t, cond):
  """Deterministic, cond-dependent stand-in network."""
  return 0.5 * x + t[:, None, None, None] * cond["agnostic"] - 0.1


def _np_logsnr_cosine(t, lo=-20.0, hi=20.0):
  b = np.arctan(np.exp(-hi / 2))
  a = np.arctan(np.exp(-lo / 2)) - b
  return -2 * np.log(np.tan(a * np.asarray(t, np.float64) + b))


@pytest.mark.parametrize("prediction,weighting", [("eps", "none"), ("v", "none"),
                                                  ("eps", "min_snr"), ("v", "min_snr")])
def test_denoising_loss_equals_hand_computation(prediction, weighting):
  cfg = base128.get_config()
  cfg.diffusion.prediction, cfg.diffusion.loss_weighting = prediction, weighting
  rng = np.random.default_rng(0)
  x0 = rng.uniform(-1, 1, (3, 4, 4, 3))
  eps = rng.normal(size=x0.shape)
  agn = rng.uniform(-1, 1, x0.shape)
  t = np.array([0.1, 0.5, 0.9])
  got, metrics = loss.denoising_loss(_stand_in_model, jnp.asarray(x0, jnp.float32),
                                     jnp.asarray(t, jnp.float32), jnp.asarray(eps, jnp.float32),
                                     {"agnostic": jnp.asarray(agn, jnp.float32)}, cfg.diffusion)
  lam = _np_logsnr_cosine(t)
  a = np.sqrt(1 / (1 + np.exp(-lam)))[:, None, None, None]
  s = np.sqrt(1 / (1 + np.exp(lam)))[:, None, None, None]
  x_t = a * x0 + s * eps
  pred = 0.5 * x_t + t[:, None, None, None] * agn - 0.1
  target = eps if prediction == "eps" else a * eps - s * x0
  mse = ((pred - target) ** 2).mean(axis=(1, 2, 3))
  snr = np.exp(lam)
  w = np.ones(3) if weighting == "none" else np.minimum(snr, 5.0) / (snr + (prediction == "v"))
  np.testing.assert_allclose(float(got), (w * mse).mean(), rtol=1e-4)
  np.testing.assert_allclose(float(metrics["mse"]), mse.mean(), rtol=1e-4)


def test_diffusion_loss_uses_documented_key_split_and_jits():
  cfg = base128.get_config()
  batch = make_batch(4, 8)
  key = jax.random.key(11)
  got, metrics = jax.jit(lambda b, k: loss.diffusion_loss(_stand_in_model, b, k, cfg))(batch, key)

  @jax.jit
  def by_hand(batch, key):
    key_t, key_noise, key_cond = jax.random.split(key, 3)
    t = jax.random.uniform(key_t, (4,))
    noise = jax.random.normal(key_noise, batch["person"].shape)
    cond = conditioning.training_cond(batch, key_cond, cfg)
    return loss.denoising_loss(_stand_in_model, batch["person"], t, noise, cond, cfg.diffusion)[0]

  want = by_hand(batch, key)
  np.testing.assert_allclose(float(got), float(want), rtol=1e-5)
  assert set(metrics) >= {"loss", "mse"} and got.shape == ()


# ---------------------------------------------------------------- guidance

def test_cfg_weights_zero_one_two_single_batched_pass():
  batch = make_batch(3, 4)
  cond = jit_cond(conditioning.inference_cond, base128.get_config())(batch, jax.random.key(0))
  calls = []

  def model(x, t, c):
    calls.append(x.shape[0])
    pose = (c["person_pose"] * c["person_pose_mask"][..., None]).sum((1, 2))
    return x + c["agnostic"] + 2 * c["garment"] + pose[:, None, None, None] + t[:, None, None, None]

  x = jax.random.normal(jax.random.key(1), (3, 4, 4, 3))
  t = jnp.full((3,), 0.3)
  conditional = model(x, t, cond)
  unconditional = model(x, t, conditioning.null_cond(cond))
  assert float(jnp.abs(conditional - unconditional).max()) > 0.5
  calls.clear()
  for w, want in [(0.0, unconditional), (jnp.float32(1.0), conditional),
                  (2.0, 2 * conditional - unconditional)]:
    np.testing.assert_allclose(guidance.guided_model(model, w)(x, t, cond), want, atol=1e-5)
  assert calls == [6, 6, 6]  # each: one forward pass with cond and uncond halves along batch
  calls.clear()
  np.testing.assert_allclose(guidance.guided_model(model, 1.0)(x, t, cond), conditional)
  assert calls == [3]  # w == 1 needs no unconditional half


def test_null_cond_zeroes_images_and_pose_masks_keeps_levels():
  cond = jit_cond(conditioning.inference_cond, base128.get_config())(make_batch(2, 4),
                                                                    jax.random.key(0))
  null = conditioning.null_cond(cond)
  for k in ("agnostic", "garment", "person_pose_mask", "garment_pose_mask"):
    assert float(np.abs(null[k]).max()) == 0.0, k
  np.testing.assert_array_equal(null["noise_aug_levels"], cond["noise_aug_levels"])


# ---------------------------------------------------------------- EMA

def test_ema_decay_warms_up_then_holds_the_configured_decay():
  steps = jnp.arange(0, 5000)
  decays = np.asarray(jax.vmap(lambda s: ema.decay_at(s, 0.995, 10.0))(steps))
  np.testing.assert_allclose(decays[0], 0.1, rtol=1e-6)  # (1 + 0) / (10 + 0)
  np.testing.assert_allclose(decays[90], 91 / 100, rtol=1e-6)
  assert np.all(np.diff(decays) >= 0) and decays.max() == pytest.approx(0.995)
  assert float(decays[-1]) == pytest.approx(0.995)
  assert float(ema.decay_at(3, 0.995, 0.0)) == pytest.approx(0.995)  # offset 0: no warm-up


def test_ema_update_on_pytrees_and_nnx_state():
  ema_tree = {"w": jnp.ones((2, 2)), "inner": {"b": jnp.zeros(3, jnp.bfloat16)}, "n": jnp.int32(1)}
  params = {"w": jnp.zeros((2, 2)), "inner": {"b": jnp.ones(3, jnp.bfloat16)}, "n": jnp.int32(5)}
  out = jax.jit(ema.ema_update)(ema_tree, params, 0.9)
  np.testing.assert_allclose(out["w"], 0.9)
  assert out["inner"]["b"].dtype == jnp.bfloat16
  np.testing.assert_allclose(out["inner"]["b"].astype(jnp.float32), 0.1, atol=1e-3)
  assert int(out["n"]) == 5
  for _ in range(200):
    out = ema.ema_update(out, params, 0.9)
  np.testing.assert_allclose(out["w"], 0.0, atol=1e-8)

  with nnx.use_eager_sharding(False):
    a = nnx.state(nnx.Linear(2, 3, rngs=nnx.Rngs(0)), nnx.Param)
    b = nnx.state(nnx.Linear(2, 3, rngs=nnx.Rngs(1)), nnx.Param)
  mixed = ema.ema_update(a, b, 0.75)
  want = 0.75 * a["kernel"][...] + 0.25 * b["kernel"][...]
  np.testing.assert_allclose(mixed["kernel"][...], want, rtol=1e-6)
