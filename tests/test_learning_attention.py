"""The cross-attention probe: its geometry and scores on hand-made attention, and its recording."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import suite_env  # pylint: disable=unused-import

from benchmarks import learning_attention as probe
from tryon_jax.models import layers


def test_keypoint_affine_recovers_a_scale_and_shift_and_needs_three_points():
  rng = np.random.default_rng(0)
  person = rng.uniform(0.2, 0.8, (18, 2))
  a = np.array([[0.7, 0.1], [-0.05, 0.8], [0.12, -0.03]])  # [x, y, 1] @ a
  garment = np.concatenate([person, np.ones((18, 1))], 1) @ a
  mask = np.ones(18)
  mask[[3, 9]] = 0
  garment[[3, 9]] = 5.0  # absent points, far off: they must not enter the fit
  fit, rms = probe.keypoint_affine(person, garment, mask)
  np.testing.assert_allclose(fit, a, atol=1e-9)
  assert rms < 1e-9
  with pytest.raises(ValueError, match="only 2 keypoints shared"):
    probe.keypoint_affine(person, garment, np.eye(18)[0] + np.eye(18)[1])


def test_look_scores_credit_attention_at_the_expected_place_and_not_even_attention():
  side, radius = 8, 1.5
  centres = probe.token_centres(side)
  expected = centres[::-1].copy()  # every person token should read the mirrored garment place
  queries = np.zeros(side * side, bool)
  queries[10:30] = True
  on_place = np.zeros((2, side * side, side * side))
  on_place[:, np.arange(side * side), np.arange(side * side)[::-1]] = 1.0  # both heads look there
  even = np.full((2, side * side, side * side), 1.0 / (side * side))
  on_garment = np.zeros(side * side, bool)
  on_garment[::2] = True  # the even tokens show the garment, the odd ones the black around it
  hit = probe.look_scores(on_place, expected, queries, radius, on_garment)
  spread = probe.look_scores(even, expected, queries, radius, on_garment)
  n = queries.sum()
  assert hit["n"] == spread["n"] == n
  assert hit["near_mass"] / n == pytest.approx(1.0) and hit["centroid_error"] < 1e-9
  assert hit["peak_mass"] / n == pytest.approx(1.0)
  assert spread["peak_mass"] / n == pytest.approx(1 / side**2)
  assert spread["garment_mass"] == pytest.approx(spread["garment_mass_uniform"]) == n / 2
  mirrored = (side * side - 1 - np.arange(side * side))[queries]  # where each scored query looks
  assert hit["garment_mass"] == pytest.approx(np.sum(mirrored % 2 == 0))
  # Even attention over the garment: as near the place as its garment tokens' share says.
  on_garment_even = np.where(on_garment, 2.0 / (side * side), 0.0)[None, None].repeat(side**2, 1)
  even_garment = probe.look_scores(on_garment_even.repeat(2, 0), expected, queries, radius,
                                   on_garment)
  assert even_garment["near_mass"] == pytest.approx(even_garment["near_mass_even_on_garment"])
  assert hit["near_mass"] > 3 * hit["near_mass_even_on_garment"]
  own = centres[queries]
  assert hit["expected_shift"] == pytest.approx(
      np.linalg.norm(expected[queries] - own, axis=-1).sum() * side)
  # Even attention puts on the place exactly the share of tokens near it, its centroid is the
  # grid's centre.
  assert spread["near_mass"] == pytest.approx(spread["near_mass_uniform"])
  assert spread["centroid_error"] == pytest.approx(spread["centroid_error_uniform"])
  assert spread["near_mass"] / n < 0.2
  # Against the unmoved place (the token's own), the mirrored look scores low.
  same = probe.look_scores(on_place, centres, queries, radius, on_garment)
  assert same["near_mass"] / n < 0.2 and same["centroid_error"] / n > 1.0


def test_pool_mask_keeps_tokens_that_are_mostly_garment():
  mask = np.zeros((8, 8), bool)
  mask[:4, :4] = True
  mask[4:6, 4:5] = True  # 2 of the 16 pixels of token (1, 1): not mostly garment
  np.testing.assert_array_equal(probe.pool_mask(mask, 2), [True, False, False, False])


def test_recorded_weights_are_the_ones_the_layer_attends_with():
  with nnx.use_eager_sharding(False):
    attn = layers.CrossAttention(16, 16, 8, rngs=nnx.Rngs(0), dtype=jnp.float32,
                                 position="fourier", grid_side=4)
  attn.out.kernel[...] = jax.random.normal(jax.random.key(5), (16, 16))
  x = jax.random.normal(jax.random.key(0), (2, 4, 4, 16))
  context = jax.random.normal(jax.random.key(1), (2, 4, 4, 16))
  plain = attn(x, context)
  attn.record_weights = True
  out, recorded = nnx.capture(attn, nnx.Intermediate)(x, context)
  (weights,) = recorded["weights"].get_value()
  np.testing.assert_allclose(np.asarray(out), np.asarray(plain), rtol=1e-5, atol=1e-5)
  assert weights.shape == (2, 2, 16, 16)
  np.testing.assert_allclose(np.asarray(weights.sum(-1)), 1.0, rtol=1e-5)
  # Rebuild the layer's output from the recorded weights and its own values.
  ctx = attn.context_norm(context).reshape(2, 16, 16)
  _, v = jnp.split(attn.kv(ctx), 2, axis=-1)
  mixed = jnp.einsum("bhts,bshd->bthd", weights, v.reshape(2, 16, 2, 8)).reshape(2, 16, 16)
  rebuilt = x + attn.out(mixed).reshape(2, 4, 4, 16)
  np.testing.assert_allclose(np.asarray(rebuilt), np.asarray(out), rtol=1e-4, atol=1e-4)


def test_probe_refuses_a_scanned_model_by_name():
  from configs import demo  # pylint: disable=g-import-not-at-top
  from tryon_jax.models import build_model  # pylint: disable=g-import-not-at-top
  cfg = demo.get_config().model
  cfg.update(resolution=16, channels=(8, 16), person_blocks=(1, 2), garment_blocks=(1, 2),
             attention=(False, True), head_dim=8, garment_decoder_levels=1, scan_blocks=True)
  with nnx.use_eager_sharding(False):
    model = build_model(cfg, nnx.Rngs(0))
  with pytest.raises(ValueError, match="model.scan_blocks=True"):
    probe.record_cross_attention(model, None, None, None)
