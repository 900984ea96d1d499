"""Networks: shapes and dtypes, the garment-pose mask, cross-attention reach, FiLM, pooling, counts."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import suite_env

from configs import demo, sr1024, sr256
from tryon_jax.models import build_model, count_params, layers, parallel_unet
from tryon_jax.models.pose import AttentionPool1D, keypoint_affine, part_maps

B, K = 2, 18


def tiny_parallel(variant="parallel", resolution=16, attention=(False, True), **overrides):
  c = demo.get_config(variant).model
  c.resolution = resolution
  c.channels = (16, 32)
  c.person_blocks = (1, 1)
  c.garment_blocks = (1, 1)
  c.garment_decoder_levels = 1
  c.attention = attention
  c.head_dim = 8
  c.pose_embed_dim = 16
  c.cond_dim = 32
  c.pool_heads = 2
  c.update(overrides)
  return c


def tiny_efficient(**overrides):
  c = sr1024.get_config().model
  c.channels = (8, 16)
  c.blocks = (1, 2)
  c.cond_dim = 16
  c.update(overrides)
  return c


def make_cond(cfg, resolution, seed=0):
  ks = jax.random.split(jax.random.key(seed), 6)
  cond = dict(
      agnostic=jax.random.normal(ks[0], (B, resolution, resolution, 3)),
      garment=jax.random.normal(ks[1], (B, resolution, resolution, 3)),
      person_pose=jax.random.uniform(ks[2], (B, K, 2)),
      person_pose_mask=jnp.ones((B, K)),
      garment_pose=jax.random.uniform(ks[3], (B, K, 2)),
      garment_pose_mask=jnp.ones((B, K)),
      noise_aug_levels=jax.random.uniform(ks[4], (B, len(cfg.cond_images))),
      lowres=jax.random.normal(ks[5], (B, resolution, resolution, 3)))
  return cond


def randomized(model, seed=1, scale=0.2):
  """The model with every parameter redrawn at random: zero-initialized output layers would
  otherwise make every output and gradient identically zero."""
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  leaves = [scale * jax.random.normal(k, x.shape, x.dtype) for k, x in zip(keys, leaves)]
  return nnx.merge(graphdef, jax.tree.unflatten(treedef, leaves), rest)


def build(cfg, seed=0):
  with nnx.use_eager_sharding(False):
    return build_model(cfg, nnx.Rngs(seed))


@nnx.jit
def apply(model, x, t, cond):
  return model(x, t, cond)


@pytest.fixture(scope="module")
def parallel_model():
  cfg = tiny_parallel()
  return cfg, randomized(build(cfg))


def test_parallel_unet_shapes_and_dtype(parallel_model):
  cfg, model = parallel_model
  x = jnp.ones((B, 16, 16, 3))
  out = apply(model, x, jnp.full((B,), 0.5), make_cond(cfg, 16))
  assert out.shape == (B, 16, 16, 3) and out.dtype == jnp.float32
  assert np.isfinite(np.asarray(out)).all() and float(jnp.std(out)) > 0


@pytest.mark.parametrize("cfg", [
    tiny_parallel("concat"),
    tiny_parallel(concat_lowres=True, cond_images=("agnostic", "garment", "lowres")),
], ids=["concat", "sr256_like"])
def test_variants_shapes(cfg):
  model = build(cfg)
  out = apply(model, jnp.ones((B, 16, 16, 3)), jnp.full((B,), 0.5), make_cond(cfg, 16))
  assert out.shape == (B, 16, 16, 3) and out.dtype == jnp.float32


def test_sr256_paper_config_takes_lowres_and_three_levels():
  cfg = sr256.get_config().model
  assert cfg.concat_lowres and tuple(cfg.cond_images) == ("agnostic", "garment", "lowres")


def test_bf16_compute_keeps_float32_params_and_matches_float32(parallel_model):
  cfg, model32 = parallel_model
  cfg16 = tiny_parallel(dtype="bfloat16")
  model16 = build(cfg16)
  nnx.update(model16, nnx.state(model32, nnx.Param))
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(nnx.state(model16, nnx.Param)))
  cond, x, t = make_cond(cfg, 16), jax.random.normal(jax.random.key(3), (B, 16, 16, 3)), jnp.full((B,), 0.3)
  out32 = np.asarray(apply(model32, x, t, cond))
  out16 = np.asarray(apply(model16, x, t, cond))
  assert out16.dtype == np.float32
  rel = np.linalg.norm(out16 - out32) / np.linalg.norm(out32)
  assert 0 < rel < 0.05, rel  # bf16 differs (so it ran in bf16) but only by rounding


def test_garment_pose_mask_removes_garment_pose_influence(parallel_model):
  cfg, model = parallel_model
  cond = make_cond(cfg, 16)
  x, t = jnp.ones((B, 16, 16, 3)), jnp.full((B,), 0.5)
  other_pose = jax.random.uniform(jax.random.key(9), (B, K, 2))
  absent = dict(cond, garment_pose_mask=jnp.zeros((B, K)))
  out_a = apply(model, x, t, absent)
  out_b = apply(model, x, t, dict(absent, garment_pose=other_pose))
  np.testing.assert_array_equal(np.asarray(out_a), np.asarray(out_b))
  # With the mask on, the same change of garment pose does change the output.
  out_c = apply(model, x, t, cond)
  out_d = apply(model, x, t, dict(cond, garment_pose=other_pose))
  assert float(jnp.max(jnp.abs(out_c - out_d))) > 1e-4


def test_remat_policies_keep_the_gradients_and_recompute_less_as_they_save_more(parallel_model):
  cfg, model = parallel_model
  cond, x, t = make_cond(cfg, 16), jnp.ones((B, 16, 16, 3)), jnp.full((B,), 0.5)
  params = nnx.state(model, nnx.Param)

  def lowered_grads(remat, policy):
    m = build(tiny_parallel(remat=remat, remat_policy=policy))
    nnx.update(m, params)
    graphdef, state = nnx.split(m)

    def grads(state):
      return nnx.grad(lambda m: jnp.sum(m(x, t, cond) ** 2))(nnx.merge(graphdef, state))
    return jax.jit(grads).lower(state), state

  flops, reference = {}, None
  for remat, policy in ((False, "nothing_saveable"), (True, "dots_saveable"),
                        (True, "nothing_saveable")):
    lowered, state = lowered_grads(remat, policy)
    flops[(remat, policy)] = lowered.cost_analysis()["flops"]
    leaves = [np.asarray(g) for g in jax.tree.leaves(lowered.compile()(state))]
    if reference is None:
      reference = leaves
    for a, b in zip(leaves, reference):
      # Recomputing the forward changes float32 round-off (fusion order): tolerate it relative to
      # the leaf's largest gradient; a wrong recomputation would be off by that order.
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6 * float(np.max(np.abs(b))))
  # Full recomputation repeats every conv and matmul of the forward pass; dots_saveable keeps
  # them and repeats only the norms, activations and softmaxes between them.
  assert (flops[(False, "nothing_saveable")] < flops[(True, "dots_saveable")]
          < flops[(True, "nothing_saveable")]), flops


def _scan_config(**overrides):
  """Two levels whose runs of same-shaped blocks scan: encoder level 0 (2 blocks), level 1 after
  its first block (which widens 16 -> 32 channels), and every decoder level; cross-attention at
  level 1."""
  return tiny_parallel(person_blocks=(2, 3), garment_blocks=(2, 3), **overrides)


def _copy_into_scanned(plain, scanned):
  """Sets ``scanned``'s parameters to ``plain``'s: block b of a level goes to entry b - start of the
  ScannedBlocks holding it (stacked), every other parameter to the same path."""
  flat = dict(nnx.to_flat_state(nnx.state(plain, nnx.Param)))
  for path, var in nnx.to_flat_state(nnx.state(scanned, nnx.Param)):
    if not any(kind in path for kind in ("encoder", "decoder")):
      var.set_value(flat[path].get_value())
  for trunk in ("person_unet", "garment_unet"):
    for kind in ("encoder", "decoder"):
      for plain_level, scanned_level in zip(getattr(getattr(plain, trunk), kind),
                                            getattr(getattr(scanned, trunk), kind)):
        b = 0
        for item in scanned_level:
          if isinstance(item, parallel_unet.ScannedBlocks):
            states = [nnx.state(plain_level[b + i], nnx.Param) for i in range(item.count)]
            nnx.update(item.blocks, jax.tree.map(lambda *xs: jnp.stack(xs), *states))
            b += item.count
          else:
            nnx.update(item, nnx.state(plain_level[b], nnx.Param))
            b += 1
  return scanned


def test_scanned_blocks_compute_the_unrolled_network_and_compile_each_level_once():
  cfg = _scan_config()
  plain = randomized(build(cfg))
  scanned = build(_scan_config(scan_blocks=True, remat=True))
  scan_counts = [[item.count for item in level if isinstance(item, parallel_unet.ScannedBlocks)]
                 for level in (*scanned.person_unet.encoder, *scanned.person_unet.decoder)]
  assert scan_counts == [[2], [2], [3], [2]], scan_counts  # encoder 0, 1; decoder 1, 0
  _copy_into_scanned(plain, scanned)
  cond, x, t = make_cond(cfg, 16), jax.random.normal(jax.random.key(3), (B, 16, 16, 3)), \
      jnp.array([0.2, 0.8])

  def loss_and_grads(model):
    graphdef, state = nnx.split(model)
    fn = jax.jit(lambda s: nnx.value_and_grad(lambda m: jnp.mean(m(x, t, cond) ** 2))(
        nnx.merge(graphdef, s)))
    return fn.lower(state), fn(state)

  (plain_lowered, (plain_loss, plain_grads)) = loss_and_grads(plain)
  (scan_lowered, (scan_loss, scan_grads)) = loss_and_grads(scanned)
  np.testing.assert_allclose(scan_loss, plain_loss, rtol=1e-5)
  # The parameter gradients too (through remat inside the scan), laid out as the scanned tree.
  plain_grad_model = build(cfg)
  nnx.update(plain_grad_model, plain_grads)
  expected = nnx.state(_copy_into_scanned(plain_grad_model, build(_scan_config(scan_blocks=True))),
                       nnx.Param)
  for want, got in zip(jax.tree.leaves(expected), jax.tree.leaves(scan_grads)):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6 * float(np.max(np.abs(want))))
  # XLA gets one body per scanned run: fewer convolutions in the program than the unrolled one.
  convs = [lowered.as_text().count("stablehlo.convolution")
           for lowered in (plain_lowered, scan_lowered)]
  assert convs[1] < convs[0], convs


def test_remat_policy_names_are_checked():
  assert layers.remat_policy(tiny_parallel(remat=False, remat_policy="no_such")) is None
  assert layers.remat_policy(tiny_parallel(remat=True)) is jax.checkpoint_policies.nothing_saveable
  with pytest.raises(ValueError, match="model.remat_policy='no_such'"):
    build(tiny_parallel(remat=True, remat_policy="no_such"))
  with pytest.raises(ValueError, match="model.remat_policy='no_such'"):
    build(tiny_efficient(remat=True, remat_policy="no_such"))


def _garment_gradient(model, cfg, resolution):
  """|d output[0, 0, 0] / d garment[0]|, max over colour channels: [resolution, resolution]."""
  cond = make_cond(cfg, resolution)
  x, t = jnp.ones((B, resolution, resolution, 3)), jnp.full((B,), 0.5)

  def corner_output(garment):
    return jnp.sum(model(x, t, dict(cond, garment=garment))[0, 0, 0, :])

  g = jax.jit(jax.grad(corner_output))(cond["garment"])
  return np.abs(np.asarray(g[0])).max(axis=-1)


def test_cross_attention_reaches_far_garment_pixels_concatenation_does_not():
  # Attention only where the variants differ: the concat model has no attention at all here, so
  # its reach is its convolutional receptive field; the parallel model adds cross-attention only
  # (its garment UNet is convolutional too). GroupNorm statistics span the whole image, so a far
  # pixel's gradient is never exactly zero; compare far-to-near influence instead.
  res, far, near = 32, (31, 31), (1, 1)
  par_cfg = tiny_parallel(resolution=res)
  par = randomized(build(par_cfg))
  cat_cfg = tiny_parallel("concat", resolution=res, attention=(False, False))
  cat = randomized(build(cat_cfg))
  par_grad = _garment_gradient(par, par_cfg, res)
  cat_grad = _garment_gradient(cat, cat_cfg, res)
  par_ratio = par_grad[far] / par_grad[near]
  cat_ratio = cat_grad[far] / cat_grad[near]
  assert par_ratio > 0.1, par_ratio  # measured ~1: the far pixel matters as much as a near one
  assert cat_ratio < 0.01, cat_ratio  # measured ~1e-3: only via normalization statistics


def _cross_attention(position):
  with nnx.use_eager_sharding(False):
    attn = layers.CrossAttention(16, 16, 8, rngs=nnx.Rngs(0), dtype=jnp.float32, position=position,
                                 grid_side=8)
  attn.out.kernel[...] = jax.random.normal(jax.random.key(5), (16, 16))  # zero-initialized
  return attn


@pytest.mark.parametrize("position", layers.CROSS_ATTENTION_POSITIONS)
def test_cross_attention_sees_garment_places_only_with_a_position_code(position):
  # Without a position code, attention over garment tokens is a function of the set of tokens:
  # moving the garment's features around its grid cannot change what a person token reads. With
  # "fourier" the keys carry their place, so the same move changes the output.
  attn = _cross_attention(position)
  x = jax.random.normal(jax.random.key(0), (2, 8, 8, 16))
  context = jax.random.normal(jax.random.key(1), (2, 8, 8, 16))
  moved = jnp.flip(context, axis=(1, 2))  # the garment turned half a turn: same tokens, new places
  maps = _identity_maps(position, 2)  # read by the "pose_*" codes only
  change = float(jnp.max(jnp.abs(attn(x, context, maps) - attn(x, moved, maps))))
  if position == "none":
    assert change < 1e-5, change
  else:
    assert change > 1e-2, change


IDENTITY_AFFINE = jnp.eye(3, 2)


def _identity_maps(position, b):
  """Place maps that send every person place to itself, of the kind ``position`` reads."""
  if position != "pose_parts":
    return jnp.broadcast_to(IDENTITY_AFFINE, (b, 3, 2))
  square = jnp.array([[0.2, 0.2], [0.8, 0.2], [0.8, 0.8], [0.2, 0.8]])
  return layers.PartMaps(jnp.broadcast_to(IDENTITY_AFFINE, (b, 2, 3, 2)),
                         jnp.broadcast_to(square, (b, 4, 2)), jnp.ones((b,)),
                         jnp.broadcast_to(jnp.array([[[0.1, 0.1], [0.1, 0.9]]]), (b, 1, 2, 2)),
                         jnp.ones((b, 1)))


def test_pose_affine_codes_each_query_at_the_garment_place_it_maps_to():
  # The "fourier" and "pose_affine" layers built alike share their parameters. With the identity
  # map they are the same layer; with a map moving every person place two tokens right and one
  # down, a pose_affine query's code is the fourier code of the token it maps to: its garment
  # place, which moved with the garment.
  fourier, affine = _cross_attention("fourier"), _cross_attention("pose_affine")
  x = jax.random.normal(jax.random.key(0), (2, 8, 8, 16))
  context = jax.random.normal(jax.random.key(1), (2, 8, 8, 16))
  identity = jnp.broadcast_to(IDENTITY_AFFINE, (2, 3, 2))
  np.testing.assert_allclose(np.asarray(affine(x, context, identity)),
                             np.asarray(fourier(x, context)), atol=1e-5)
  shift = identity.at[:, 2].set(jnp.array([2 / 8, 1 / 8]))
  assert float(jnp.max(jnp.abs(affine(x, context, shift) - fourier(x, context)))) > 1e-2
  places = layers.grid_places(8, 8)
  mapped = jnp.concatenate([places, jnp.ones((64, 1))], -1) @ shift[0]
  grid = np.asarray(layers.grid_fourier_features(8, 8)).reshape(8, 8, -1)
  codes = np.asarray(layers.fourier_features(mapped, 8)).reshape(8, 8, -1)
  np.testing.assert_allclose(codes[:7, :6], grid[1:, 2:], atol=1e-5)  # (row, col) + (1, 2)
  with pytest.raises(ValueError, match="needs the pose maps"):
    affine(x, context)


def test_keypoint_affine_fits_the_shared_torso_keypoints_and_is_the_identity_without_them():
  rng = np.random.default_rng(0)
  person = rng.uniform(0.2, 0.8, (3, K, 2))
  true_map = np.array([[0.9, 0.1], [-0.05, 1.1], [0.03, -0.02]])
  garment = np.concatenate([person, np.ones((3, K, 1))], -1) @ true_map
  garment[:, 0] += 0.3  # a keypoint outside the fitted set, far off the map: ignored
  person_mask, garment_mask = np.ones((3, K)), np.ones((3, K))
  person_mask[1, 2] = 0  # one torso keypoint missing from the person: four are left
  garment_mask[2] = 0  # a lay-flat garment: no pose
  torso = (1, 2, 5, 8, 11)
  maps = np.asarray(keypoint_affine(*map(jnp.asarray, (person, person_mask, garment,
                                                       garment_mask)), torso, 1e-4))
  np.testing.assert_allclose(maps[0], true_map, atol=1e-3)
  np.testing.assert_allclose(maps[1], true_map, atol=1e-3)
  np.testing.assert_allclose(maps[2], np.eye(3, 2), atol=1e-6)


# COCO-18 indices of the keypoints part_maps reads in these tests.
NECK, R_SHO, R_ELB, R_WRI, L_SHO, L_ELB, L_WRI, R_HIP, L_HIP = 1, 2, 3, 4, 5, 6, 7, 8, 11
TORSO, OUTLINE = (NECK, R_SHO, L_SHO, R_HIP, L_HIP), (R_SHO, L_SHO, L_HIP, R_HIP)
LIMBS = ((R_SHO, R_ELB), (R_ELB, R_WRI), (L_SHO, L_ELB), (L_ELB, L_WRI))


def _arm_poses():
  """Person and garment poses [1, K, 2]: in the garment image the body is 0.05 to the right and
  the right forearm (elbow -> wrist) a quarter turn round its elbow."""
  person = np.random.default_rng(0).uniform(0.0, 1.0, (1, K, 2))  # head, legs: not read
  for index, place in ((NECK, (0.5, 0.2)), (R_SHO, (0.35, 0.22)), (L_SHO, (0.65, 0.22)),
                       (R_ELB, (0.2, 0.35)), (R_WRI, (0.1, 0.5)), (L_ELB, (0.8, 0.35)),
                       (L_WRI, (0.9, 0.5)), (R_HIP, (0.4, 0.6)), (L_HIP, (0.6, 0.6))):
    person[0, index] = place
  garment = person + np.array([0.05, 0.0])
  forearm = person[0, R_WRI] - person[0, R_ELB]
  garment[0, R_WRI] = garment[0, R_ELB] + np.array([-forearm[1], forearm[0]])
  return person, garment


def test_part_maps_send_each_place_by_the_body_part_nearest_it():
  person, garment = _arm_poses()
  mask = np.ones((1, K))
  places = jnp.array([[0.5, 0.4],  # inside the torso: the torso's shift
                      [0.15, 0.425]])  # the forearm's middle: turned with it
  parts = part_maps(*map(jnp.asarray, (person, mask, garment, mask)), TORSO, OUTLINE, LIMBS, 1e-4)
  assert parts.maps.shape == (1, 5, 3, 2) and parts.limbs.shape == (1, 4, 2, 2)
  forearm_middle = garment[0, R_ELB] + (garment[0, R_WRI] - garment[0, R_ELB]) / 2
  np.testing.assert_allclose(np.asarray(layers.part_places(places, parts))[0],
                             [[0.55, 0.4], forearm_middle], atol=1e-3)
  # Without the garment's wrist the forearm takes no place: its middle follows the upper arm.
  no_wrist = mask.copy()
  no_wrist[0, R_WRI] = 0
  parts = part_maps(*map(jnp.asarray, (person, mask, garment, no_wrist)), TORSO, OUTLINE, LIMBS,
                    1e-4)
  np.testing.assert_allclose(np.asarray(layers.pose_places(places, parts))[0],
                             [[0.55, 0.4], [0.2, 0.425]], atol=1e-3)
  # With no limbs (or no torso outline) every place takes the torso's map: "pose_affine"'s.
  no_outline = mask.copy()
  no_outline[0, R_HIP] = 0
  for limbs, person_mask in (((), mask), (LIMBS, no_outline)):
    parts = part_maps(*map(jnp.asarray, (person, person_mask, garment, mask)), TORSO, OUTLINE,
                      limbs, 1e-4)
    torso_map = keypoint_affine(*map(jnp.asarray, (person, person_mask, garment, mask)), TORSO,
                                1e-4)
    np.testing.assert_allclose(np.asarray(layers.pose_places(places, parts)),
                               np.asarray(layers.map_places(places, torso_map)), atol=1e-6)


def test_parallel_unet_passes_the_pose_affine_maps_to_its_cross_attention():
  # Same parameters, "fourier" against "pose_affine": equal where the garment's torso keypoints
  # are the person's (the identity map), different once the garment's are moved.
  cfg_f = tiny_parallel(cross_attention_position="fourier")
  cfg_a = tiny_parallel(cross_attention_position="pose_affine")
  fourier, affine = randomized(build(cfg_f)), randomized(build(cfg_a))
  cond = make_cond(cfg_f, 16)
  cond["garment_pose"] = cond["person_pose"]
  x, t = jnp.ones((B, 16, 16, 3)), jnp.full((B,), 0.5)
  np.testing.assert_allclose(np.asarray(apply(affine, x, t, cond)),
                             np.asarray(apply(fourier, x, t, cond)), atol=1e-4)
  cond["garment_pose"] = cond["person_pose"] * 0.8 + 0.1
  gap = jnp.abs(apply(affine, x, t, cond) - apply(fourier, x, t, cond))
  assert float(gap.max()) > 1e-3, float(gap.max())


def test_parallel_unet_with_pose_parts_moves_the_places_on_a_limb_with_it():
  # Same parameters, "pose_affine" against "pose_parts": equal while every part moves as the
  # torso does, different once only the right forearm is turned (the tokens nearest it move).
  cfg_a = tiny_parallel(cross_attention_position="pose_affine")
  cfg_p = tiny_parallel(cross_attention_position="pose_parts")
  affine, parts = randomized(build(cfg_a)), randomized(build(cfg_p))
  person, garment = _arm_poses()
  cond = make_cond(cfg_a, 16)
  cond["person_pose"] = jnp.asarray(np.repeat(person, B, axis=0), jnp.float32)
  cond["garment_pose"] = cond["person_pose"] + jnp.array([0.05, 0.0])
  x, t = jnp.ones((B, 16, 16, 3)), jnp.full((B,), 0.5)
  np.testing.assert_allclose(np.asarray(apply(parts, x, t, cond)),
                             np.asarray(apply(affine, x, t, cond)), atol=1e-4)
  cond["garment_pose"] = jnp.asarray(np.repeat(garment, B, axis=0), jnp.float32)
  gap = jnp.abs(apply(parts, x, t, cond) - apply(affine, x, t, cond))
  assert float(gap.max()) > 1e-3, float(gap.max())


def test_grid_fourier_features_tell_every_token_apart_and_refuse_another_grid():
  f = np.asarray(layers.grid_fourier_features(8, 8))
  assert f.shape == (64, layers.grid_fourier_size(8))
  distance = np.linalg.norm(f[:, None] - f[None], axis=-1) + np.eye(64) * 1e9
  assert distance.min() > 0.1, distance.min()  # no two tokens share a code
  attn = _cross_attention("fourier")
  with pytest.raises(ValueError, match="8-token grid got person 4x4"):
    attn(jnp.zeros((1, 4, 4, 16)), jnp.zeros((1, 4, 4, 16)))
  with pytest.raises(ValueError, match="model.cross_attention_position='learned'"):
    layers.CrossAttention(16, 16, 8, rngs=nnx.Rngs(0), dtype=jnp.float32, position="learned")


@pytest.mark.parametrize("context_norm", tuple(layers.CROSS_ATTENTION_CONTEXT_NORMS))
def test_token_context_norm_keeps_each_garment_token_to_itself(context_norm):
  # A bright patch elsewhere on the garment grid rescales every token's normalised features under
  # the grid-wide GroupNorm; under the per-token norm the other tokens stay as they were.
  with nnx.use_eager_sharding(False):
    attn = layers.CrossAttention(16, 16, 8, rngs=nnx.Rngs(0), dtype=jnp.float32,
                                 context_norm=context_norm)
  context = jax.random.normal(jax.random.key(1), (2, 8, 8, 16))
  patched = context.at[:, :2, :2].multiply(10.0)
  change = jnp.abs(attn.context_norm(patched) - attn.context_norm(context))[:, 2:, 2:]
  normed = attn.context_norm(context).reshape(-1, 16)
  if context_norm == "token":
    assert float(change.max()) < 1e-5, float(change.max())
    np.testing.assert_allclose(np.asarray(normed.mean(-1)), 0.0, atol=1e-5)
    np.testing.assert_allclose(np.asarray(normed.std(-1)), 1.0, atol=1e-3)
  else:
    assert float(change.max()) > 1e-1, float(change.max())
  with pytest.raises(ValueError, match="model.cross_attention_context_norm='batch'"):
    layers.CrossAttention(16, 16, 8, rngs=nnx.Rngs(0), dtype=jnp.float32, context_norm="batch")


def test_parallel_unet_builds_the_configured_context_norm():
  cfg = tiny_parallel(cross_attention_context_norm="token")
  norms = {type(m.context_norm) for _, m in nnx.iter_modules(build(cfg))
           if isinstance(m, layers.CrossAttention)}
  assert norms == {layers.TokenNorm}, norms


def test_parallel_unet_sizes_each_position_code_to_its_level():
  # Two attention levels (16 and 8 tokens at resolution 32): each cross-attention's position
  # projections take the Fourier features of its own grid, and the model runs.
  cfg = tiny_parallel(resolution=32, attention=(False, True, True), channels=(16, 32, 32),
                      person_blocks=(1, 1, 1), garment_blocks=(1, 1, 1), garment_decoder_levels=2,
                      cross_attention_position="fourier")
  model = build(cfg)
  widths = {}
  for path, module in nnx.iter_modules(model):
    if isinstance(module, layers.CrossAttention):
      widths[module.grid_side] = module.position_q.kernel[...].shape[0]
  assert widths == {16: layers.grid_fourier_size(16), 8: layers.grid_fourier_size(8)}
  cond = make_cond(cfg, 32)
  out = apply(randomized(model), jnp.ones((B, 32, 32, 3)), jnp.full((B,), 0.5), cond)
  assert out.shape == (B, 32, 32, 3) and bool(jnp.all(jnp.isfinite(out)))


def test_film_is_full_per_channel_scale_and_shift():
  with nnx.use_eager_sharding(False):
    film = layers.FiLM(6, 5, rngs=nnx.Rngs(0), dtype=jnp.float32)
  film.proj.kernel[...] = jax.random.normal(jax.random.key(0), (6, 10))
  film.proj.bias[...] = jax.random.normal(jax.random.key(1), (10,))
  h = jax.random.normal(jax.random.key(2), (2, 3, 3, 5))
  cond = jax.random.normal(jax.random.key(3), (2, 6))
  ss = jax.nn.swish(cond) @ film.proj.kernel[...] + film.proj.bias[...]
  scale, shift = ss[:, :5], ss[:, 5:]
  assert len(np.unique(np.round(np.asarray(scale[0]), 5))) == 5  # 5 distinct per-channel scales
  want = h * (1 + scale[:, None, None, :]) + shift[:, None, None, :]
  np.testing.assert_allclose(np.asarray(film(h, cond)), np.asarray(want), rtol=1e-5, atol=1e-5)


def test_attention_pool_shape_and_masked_tokens_are_ignored():
  with nnx.use_eager_sharding(False):
    pool = AttentionPool1D(5, 8, 12, 2, rngs=nnx.Rngs(0), dtype=jnp.float32)
  tokens = jax.random.normal(jax.random.key(0), (3, 5, 8))
  mask = jnp.array([[1, 1, 0, 0, 1]] * 3, jnp.float32)
  out = pool(tokens, mask)
  assert out.shape == (3, 12)
  changed = tokens.at[:, 2:4].set(100.0)  # only masked tokens change
  np.testing.assert_allclose(np.asarray(pool(changed, mask)), np.asarray(out), rtol=1e-5, atol=1e-6)
  assert float(jnp.max(jnp.abs(pool(changed, jnp.ones_like(mask)) - out))) > 1e-3


def test_efficient_unet_is_fully_convolutional():
  cfg = tiny_efficient()
  model = randomized(build(cfg))
  for size in (16, 24):
    cond = {"lowres": jnp.ones((1, size, size, 3)), "noise_aug_levels": jnp.zeros((1, 1))}
    out = apply(model, jnp.ones((1, size, size, 3)), jnp.full((1,), 0.5), cond)
    assert out.shape == (1, size, size, 3) and out.dtype == jnp.float32
  with pytest.raises(ValueError, match="not divisible by 4"):
    model(jnp.ones((1, 18, 18, 3)), jnp.full((1,), 0.5),
          {"lowres": jnp.ones((1, 18, 18, 3)), "noise_aug_levels": jnp.zeros((1, 1))})


def test_resblock_parameter_count_matches_formula():
  c, d = 8, 16
  cfg = tiny_efficient(channels=(c,), blocks=(1,), cond_dim=d)
  counts = count_params(cfg)
  res = counts["encoder"]  # one ResBlock(c -> c): norm1, conv1, norm2, FiLM, conv2, 1x1 skip
  want = (2 * c) + (9 * c * c + c) + (2 * c) + (d * 2 * c + 2 * c) + (9 * c * c + c) + (c * c + c)
  assert res == want
  assert counts["params"] == sum(v for k, v in counts.items() if k != "params")


def test_bad_configs_name_the_field():
  with pytest.raises(ValueError, match="model.person_blocks"):
    build(tiny_parallel(person_blocks=(1,)))
  with pytest.raises(ValueError, match="garment_blocks"):
    build(tiny_parallel(garment_blocks=(1, 2)))
  with pytest.raises(ValueError, match="model.variant"):
    build(tiny_parallel(variant="warp"))
  with pytest.raises(ValueError, match="model.attention_impl='flash'"):
    build(tiny_parallel(attention_impl="flash"))
  with pytest.raises(ValueError, match="model.cross_attention_pose_keypoints"):
    build(tiny_parallel(cross_attention_position="pose_affine",
                        cross_attention_pose_keypoints=("neck", "r_shoulder", "waist")))
  with pytest.raises(ValueError, match=r"model.cross_attention_pose_limbs=\('r_elbow',\): need "
                                       "exactly 2"):
    build(tiny_parallel(cross_attention_position="pose_parts",
                        cross_attention_pose_limbs=(("r_shoulder", "r_elbow"), ("r_elbow",))))


def test_attention_impl_auto_is_xla_off_gpu_and_forced_choices_are_kept():
  # This suite runs on CPU: "auto" must not pick cuDNN (it would fail to compile here).
  assert jax.default_backend() != "gpu"
  for dtype in (jnp.float32, jnp.bfloat16):
    assert layers.attention_implementation("auto", dtype) == "xla"
  assert layers.attention_implementation("cudnn", jnp.float32) == "cudnn"
  block = build(tiny_parallel(attention_impl="xla")).person_unet.encoder[1][0]
  assert block.self_attn.implementation == "xla" == block.cross_attn.implementation


def test_cudnn_branch_attends_to_the_masked_keys_only(monkeypatch):
  """The cuDNN branch reorders keys (keys_attended_first) and passes per-row key counts; run here
  through XLA's kernel, its output and gradients equal the masked attention's."""
  b, t, s, heads, dim = 3, 5, 9, 2, 4
  q, k, v = (jax.random.normal(jax.random.key(i), (b, n, heads * dim))
             for i, n in enumerate((t, s, s)))
  kv_mask = jnp.array([[1, 0, 1, 1, 0, 0, 1, 1, 0],  # gaps anywhere, at least one key per row
                       [0, 0, 0, 0, 0, 0, 0, 0, 1],
                       [1, 1, 1, 1, 1, 1, 1, 1, 1]], jnp.float32)
  real = jax.nn.dot_product_attention
  calls = []

  def as_xla(*args, implementation=None, **kwargs):
    calls.append((implementation, sorted(kwargs)))
    return real(*args, implementation="xla", **kwargs)

  def loss(impl, q, k, v):
    return jnp.sum(jnp.sin(layers.multi_head_attention(q, k, v, heads, kv_mask, impl)))

  want, want_grads = jax.value_and_grad(loss, argnums=(1, 2, 3))("xla", q, k, v)
  monkeypatch.setattr(jax.nn, "dot_product_attention", as_xla)
  got, got_grads = jax.value_and_grad(loss, argnums=(1, 2, 3))("cudnn", q, k, v)
  assert calls == [("cudnn", ["key_value_seq_lengths"])]
  np.testing.assert_allclose(got, want, rtol=1e-5)
  for g, w in zip(got_grads, want_grads):
    np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-6)
  k2, _, lengths = layers.keys_attended_first(k, v, kv_mask)
  assert lengths.tolist() == [5, 1, 9]
  np.testing.assert_array_equal(k2[1, 0], k[1, 8])  # row 1's only attended key moves first


SHARDED_INIT = r"""
import jax
from flax import nnx
from jax.sharding import PartitionSpec as P
import sys
sys.path.insert(0, "tests")
from test_models import tiny_parallel
from tryon_jax.models import build_model
from tryon_jax.parallel import sharding

mesh = sharding.make_mesh((2, 2, 2))
cfg = tiny_parallel()
init = lambda: build_model(cfg, nnx.Rngs(0))
with sharding.rules_context():
  graphdef, abstract = nnx.get_abstract_model(init, mesh)
shardings = sharding.state_shardings(abstract, mesh)
with sharding.mesh_context(mesh):
  state = jax.jit(lambda: nnx.state(init()), out_shardings=shardings)()
model = nnx.merge(graphdef, state)
blk = model.person_unet.encoder[1][0]
got = {
  "res_conv": blk.res.conv1.kernel.get_value().sharding.spec,
  "conv_in": model.garment_unet.conv_in.kernel.get_value().sharding.spec,
  "qkv": blk.self_attn.qkv.kernel.get_value().sharding.spec,
  "attn_out": blk.self_attn.out.kernel.get_value().sharding.spec,
  "film": blk.res.film.proj.kernel.get_value().sharding.spec,
  "norm": blk.res.norm1.norm.scale.get_value().sharding.spec,
}
want = {
  "res_conv": P(None, None, "fsdp", "tensor"),   # [kh, kw, conv_in, conv_out]
  "conv_in": P(None, None, None, "tensor"),       # 3 input channels: fsdp (2) does not divide
  "qkv": P("fsdp", "tensor"),                     # [embed, heads]
  "attn_out": P("tensor", "fsdp"),                # [heads, embed]
  "film": P("fsdp", "tensor"),                    # [embed, mlp]
  "norm": P(None),
}
assert got == want, (got, want)
assert len(blk.res.conv1.kernel.get_value().addressable_shards) == 8

# model.scan_blocks: a scanned level's stacked kernels keep their sharding behind the stack axis.
cfg = tiny_parallel(person_blocks=(1, 2), garment_blocks=(1, 2), scan_blocks=True)
init = lambda: build_model(cfg, nnx.Rngs(0))
with sharding.rules_context():
  graphdef, abstract = nnx.get_abstract_model(init, mesh)
with sharding.mesh_context(mesh):
  shardings = sharding.state_shardings(abstract, mesh)
  state = jax.jit(lambda: nnx.state(init()), out_shardings=shardings)()
stack = nnx.merge(graphdef, state).person_unet.decoder[0][0]  # level 1's 2 decoder blocks
kernel = stack.blocks.res.conv1.kernel.get_value()
assert kernel.shape[0] == 2 and kernel.sharding.spec == P(None, None, None, "fsdp", "tensor"), (
    kernel.shape, kernel.sharding.spec)
print("SHARDED_INIT_OK")
"""


def test_sharded_init_on_fake_8_device_mesh_follows_annotations(tmp_path):
  import os
  import subprocess
  import sys
  script = tmp_path / "sharded_init.py"
  script.write_text(SHARDED_INIT)
  env = suite_env.child_env(os.environ, devices=8)
  env["PYTHONPATH"] = os.getcwd()
  proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env,
                        cwd=os.getcwd(), timeout=600)
  assert "SHARDED_INIT_OK" in proc.stdout, proc.stderr[-3000:]
