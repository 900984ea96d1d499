"""Cascade inference with stand-in networks whose answer is known, and once with tiny real ones."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from configs import base128, demo, sr1024, sr256
from tryon_jax.diffusion import cascade, conditioning, schedules

B, K, FULL = 2, 18, 64  # inputs arrive at 64 x 64 ("any size"); stages run at 8 -> 16 -> 64


def make_inputs(seed=0):
  rng = np.random.default_rng(seed)
  return {
      "agnostic": jnp.asarray(rng.uniform(-0.4, 0.4, (B, FULL, FULL, 3)), jnp.float32),
      "garment": jnp.asarray(rng.uniform(-0.4, 0.4, (B, FULL, FULL, 3)), jnp.float32),
      "person_pose": jnp.asarray(rng.uniform(0, 1, (B, K, 2)), jnp.float32),
      "person_pose_mask": jnp.ones((B, K), jnp.float32),
      "garment_pose": jnp.asarray(rng.uniform(0, 1, (B, K, 2)), jnp.float32),
      "garment_pose_mask": jnp.ones((B, K), jnp.float32),
  }


def oracle(config, source, calls):
  """eps-model whose denoised estimate is cond[source] exactly (0 under the null cond), so the
  guided sample is w * cond[source], clipped."""
  schedule = schedules.make_schedule(config.diffusion)

  def model_fn(x, t, cond):
    calls.append(config.stage)
    alpha, sigma = schedule.alpha_sigma(t)
    return (x - alpha[:, None, None, None] * cond[source]) / sigma[:, None, None, None]

  return model_fn


def stage_configs():
  base = base128.get_config()
  base.model.resolution = 8
  sr = sr256.get_config()  # lowres_factor 2 -> 16
  sr_final = sr1024.get_config()  # lowres_factor 4 -> 64
  return base, sr, sr_final


@pytest.fixture(scope="module")
def stand_in_cascade():
  base, sr, sr_final = stage_configs()
  calls = []
  stages = [
      cascade.Stage.from_model_fn(base, oracle(base, "agnostic", calls), steps=4,
                                  sampler="dpmpp_2m", guidance_weight=2.0),
      cascade.Stage.from_model_fn(sr, oracle(sr, "lowres", calls), steps=3, guidance_weight=1.0),
      cascade.Stage.from_model_fn(sr_final, oracle(sr_final, "lowres", calls), steps=2,
                                  guidance_weight=1.0, noise_aug=0.0),
  ]
  return cascade.Cascade(stages), calls


def test_cascade_runs_every_stage_at_its_resolution(stand_in_cascade):
  casc, _ = stand_in_cascade
  inputs = make_inputs()
  out = casc(inputs, jax.random.key(0))
  assert list(out) == ["base128", "sr256", "sr1024"]
  assert [v.shape for v in out.values()] == [(B, 8, 8, 3), (B, 16, 16, 3), (B, 64, 64, 3)]
  # Base: guidance weight 2 on an oracle that denoises to I_a (resized to 8) -> 2 * I_a.
  want_base = 2 * conditioning.resize(inputs["agnostic"], 8)
  np.testing.assert_allclose(out["base128"], want_base, atol=2e-3)
  # SR stages (w = 1, noise-aug 0): each output is the previous one upsampled bilinearly.
  np.testing.assert_allclose(out["sr256"], conditioning.resize(out["base128"], 16), atol=2e-3)
  np.testing.assert_allclose(out["sr1024"], conditioning.resize(out["sr256"], 64), atol=2e-3)
  again = casc(inputs, jax.random.key(0))
  for name in out:
    np.testing.assert_array_equal(out[name], again[name])  # deterministic for a key


def test_cascade_stops_early_and_starts_from_given_lowres(stand_in_cascade):
  casc, calls = stand_in_cascade
  calls.clear()
  out = casc(make_inputs(1), jax.random.key(1), stop_after="sr256")
  assert list(out) == ["base128", "sr256"]
  assert "sr1024" not in calls  # the skipped stage's network was never traced or run
  only_sr = cascade.Cascade(casc.stages[2:])
  lowres = jnp.full((B, 16, 16, 3), 0.25)
  np.testing.assert_allclose(only_sr(make_inputs(), jax.random.key(2), lowres=lowres)["sr1024"],
                             0.25, atol=2e-3)
  with pytest.raises(ValueError, match="stop_after"):
    casc(make_inputs(), jax.random.key(0), stop_after="sr512")
  with pytest.raises(ValueError, match="pass lowres"):
    only_sr(make_inputs(), jax.random.key(0))


def test_stage_overrides_and_noise_aug_reach_the_config():
  base, sr, _ = stage_configs()
  stage = cascade.Stage.from_model_fn(sr, lambda x, t, c: x, sampler="ddim", steps=7,
                                      guidance_weight=3.0, noise_aug=(0.0, 0.1, 0.2))
  d = stage.config.diffusion
  assert (d.sampler, d.sample_steps, d.guidance_weight) == ("ddim", 7, 3.0)
  np.testing.assert_allclose(conditioning.inference_levels(stage.config, 1), [[0.0, 0.1, 0.2]])
  assert sr.diffusion.sampler == "ddpm"  # the caller's config is untouched
  with pytest.raises(ValueError, match="sampler"):
    cascade.Stage.from_model_fn(base, lambda x, t, c: x, sampler="heun")


def test_cascade_with_tiny_real_networks():
  """demo's Parallel-UNet shrunk to 16 x 16 as the base, a tiny Efficient-UNet (x4) after it."""
  from tryon_jax.models import build_model  # pylint: disable=import-outside-toplevel
  base = demo.get_config()
  m = base.model
  m.resolution, m.channels, m.person_blocks, m.garment_blocks = 16, (16, 32), (1, 1), (1, 1)
  m.garment_decoder_levels, m.attention, m.head_dim = 1, (False, True), 8
  m.pose_embed_dim, m.cond_dim, m.pool_heads = 16, 32, 2
  sr = sr1024.get_config()
  sr.model.channels, sr.model.blocks, sr.model.cond_dim = (8, 16), (1, 1), 16

  def init(model_config, seed):
    """(graphdef, params, rest) with random N(0, 0.05^2) values drawn by numpy: the model's own
    initializers cost tens of seconds of compilation on this CPU, and would zero the output conv."""
    rng = np.random.default_rng(seed)
    with nnx.use_eager_sharding(False):
      abstract = nnx.eval_shape(lambda: build_model(model_config, rngs=nnx.Rngs(seed)))
    graphdef, params, rest = nnx.split(abstract, nnx.Param, ...)
    fill = lambda x: (0.05 * rng.standard_normal(x.shape)).astype(x.dtype)
    return graphdef, jax.tree.map(fill, params), jax.tree.map(fill, rest)

  base_net = nnx.merge(*init(base.model, 0))
  casc = cascade.Cascade([
      cascade.Stage.from_module(base, base_net, steps=2, sampler="ddim"),
      cascade.Stage.from_graphdef(sr, *init(sr.model, 1), steps=2),  # as restored from EMA
  ])
  out = casc(make_inputs(), jax.random.key(0))
  assert out["base128"].shape == (B, 16, 16, 3) and out["sr1024"].shape == (B, 64, 64, 3)
  for v in out.values():
    assert bool(jnp.all(jnp.isfinite(v))) and float(jnp.abs(v).max()) <= 1.0 + 1e-6
