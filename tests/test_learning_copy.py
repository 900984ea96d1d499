"""The copy probe: its tasks, its scores, and that the cross-attention learns what it can learn."""

import json

import jax
import numpy as np
import pytest

import suite_env  # pylint: disable=unused-import

from benchmarks import learning_copy
from configs import learning

# 16 tokens, 2 heads: compiles in seconds
SHAPE = {"side": 4, "channels": 16, "head_dim": 8, "context_norm": "group"}


def test_place_task_copies_each_garment_token_to_its_own_place():
  x, context, target, read, scored, garment, pattern = learning_copy.make_batch(
      jax.random.key(0), "place", 3, 4, 16, 8)
  assert bool(np.all(np.asarray(garment)))  # the garment covers the grid by default
  np.testing.assert_array_equal(np.asarray(pattern), np.asarray(target))  # and has no colour
  assert x.shape == context.shape == target.shape == (3, 4, 4, 16)
  np.testing.assert_array_equal(np.asarray(target), np.asarray(context))
  np.testing.assert_array_equal(np.asarray(read), np.tile(np.arange(16), (3, 1)))
  assert bool(np.all(np.asarray(scored)))
  assert abs(float(np.corrcoef(np.ravel(x), np.ravel(context))[0, 1])) < 0.1  # x says nothing


def test_content_task_person_tokens_carry_the_tag_of_the_token_they_must_read():
  x, context, target, read, scored, _, _ = learning_copy.make_batch(jax.random.key(1), "content",
                                                                    3, 4, 16, 6)
  x, context, target, read = (np.asarray(a).reshape(3, 16, 16) if a.ndim == 4 else np.asarray(a)
                              for a in (x, context, target, read))
  scored = np.asarray(scored)
  np.testing.assert_array_equal(scored, np.arange(16) >= 6)
  for b in range(3):
    assert sorted(read[b]) == list(range(16))  # a permutation: every garment token read once
    assert not np.array_equal(read[b], np.arange(16))
    np.testing.assert_array_equal(x[b][:, :6], context[b][read[b]][:, :6])  # the tag
    np.testing.assert_array_equal(x[b][:, 6:], 0)  # nothing else
    np.testing.assert_array_equal(target[b][:, 6:], context[b][read[b]][:, 6:])  # the value
    np.testing.assert_array_equal(target[b][:, :6], 0)
  assert not np.array_equal(read[0], read[1])  # each example its own warp


def test_a_garment_fraction_leaves_a_square_garment_on_a_zero_background():
  b = learning_copy.make_batch(jax.random.key(2), "place", 64, 8, 4, 0, garment_fraction=0.25)
  x, context, target = (np.asarray(a).reshape(64, 64, -1) for a in (b.x, b.context, b.target))
  garment = np.asarray(b.garment)
  np.testing.assert_array_equal(x[..., 0], np.where(garment, 1.0, -1.0))  # x marks the garment
  assert learning_copy.garment_side(8, 0.25) == 4
  np.testing.assert_array_equal(garment.sum(axis=1), 16)  # a 4 x 4 square in every example
  for e in range(64):
    rows, cols = np.nonzero(garment[e].reshape(8, 8))
    assert np.ptp(rows) == np.ptp(cols) == 3
  np.testing.assert_array_equal(target, context)  # still the own-place copy
  np.testing.assert_array_equal(context[~garment], 0)
  assert np.all(context[garment] != 0)
  corners = {(int(np.nonzero(g.reshape(8, 8))[0][0]), int(np.nonzero(g.reshape(8, 8))[1][0]))
             for g in garment}
  assert len(corners) > 10  # the garment's place varies between examples
  quiet = learning_copy.make_batch(jax.random.key(2), "place", 64, 8, 4, 0, garment_fraction=0.25,
                                   person_noise=0.0)  # the agnostic box: black but for the mark
  np.testing.assert_array_equal(np.asarray(quiet.x).reshape(64, 64, -1)[..., 1:], 0)
  np.testing.assert_array_equal(np.asarray(quiet.x).reshape(64, 64, -1)[..., 0], x[..., 0])
  np.testing.assert_array_equal(np.asarray(quiet.target), np.asarray(b.target))
  assert learning_copy.garment_side(8, 0.06) == 2 and learning_copy.garment_side(4, 1e-3) == 1
  with pytest.raises(ValueError, match="garment_fraction"):
    learning_copy.make_batch(jax.random.key(2), "content", 2, 8, 4, 2, garment_fraction=0.5)


def test_a_pattern_share_gives_each_garment_one_colour_and_a_pattern_of_that_share():
  b = learning_copy.make_batch(jax.random.key(3), "place", 256, 4, 8, 0, garment_fraction=0.25,
                               pattern_share=0.2)
  target, pattern = (np.asarray(a).reshape(256, 16, 8) for a in (b.target, b.pattern))
  garment = np.asarray(b.garment)
  colour = target - pattern
  np.testing.assert_array_equal(colour[~garment], 0)
  for e in range(256):  # one colour per example, on its garment only
    np.testing.assert_allclose(colour[e][garment[e]], colour[e][garment[e]][:1].repeat(4, 0),
                               atol=1e-6)
  assert not np.allclose(colour[0][garment[0]][0], colour[1][garment[1]][0])
  inside = garment[..., None].repeat(8, -1)
  share = np.mean(pattern[inside] ** 2) / np.mean(target[inside] ** 2)
  assert share == pytest.approx(0.2, abs=0.02)
  # The colour alone scores r2 = 1 - share and pattern_r2 = 0; the copy scores 1 on both.
  even = np.full((256, 1, 16, 16), 1 / 16)
  alone = learning_copy.copy_scores(colour.reshape(b.target.shape), even, b)
  assert alone["r2"] == pytest.approx(0.8, abs=0.02) and alone["pattern_r2"] == pytest.approx(0)
  copy = learning_copy.copy_scores(b.target, even, b)
  assert copy["r2"] == copy["pattern_r2"] == 1.0


def test_stripes_give_each_garment_two_colours_in_bands_of_the_period():
  b = learning_copy.make_batch(jax.random.key(5), "place", 64, 8, 3, 0, stripe_period=4)
  np.testing.assert_array_equal(np.asarray(b.target), np.asarray(b.context))  # the own place
  context = np.asarray(b.context).reshape(64, 64, 3)
  direction = context[:, :1] * np.sign(context[:, :1, :1])  # each example's stripe colour
  wave = context[..., 0] / direction[..., 0]
  np.testing.assert_allclose(np.abs(wave), 1.0, rtol=1e-5)  # two colours: +d and -d
  np.testing.assert_allclose(context, wave[..., None] * direction, rtol=1e-5, atol=1e-6)
  assert 0.3 < np.mean(wave > 0) < 0.7  # stripe and ground about equal (period 4: 2 + 2)
  assert not np.allclose(direction[0], direction[1])
  # Neighbours mostly agree (white noise: half the time); tokens half a period apart mostly not.
  grid = wave.reshape(64, 8, 8)
  along_rows = np.mean(grid[:, :, 1:] == grid[:, :, :-1])
  along_cols = np.mean(grid[:, 1:] == grid[:, :-1])
  assert (along_rows + along_cols) / 2 > 0.6
  white = np.asarray(learning_copy.make_batch(jax.random.key(5), "place", 64, 8, 3, 0).context)
  assert np.mean(np.sign(white[:, :, 1:]) == np.sign(white[:, :, :-1])) < 0.55
  with pytest.raises(ValueError, match="stripe_period"):
    learning_copy.make_batch(jax.random.key(5), "content", 2, 8, 4, 2, stripe_period=4)


def test_the_token_copier_embeds_tokens_of_a_few_channels_for_the_layer():
  from benchmarks import learning_copy_pairs  # pylint: disable=g-import-not-at-top
  copier = learning_copy.make_token_copier(SHAPE, "fourier", 0, token_channels=3)
  b = learning_copy.make_batch(jax.random.key(6), "place", 2, 4, 3, 0)
  assert copier(b.x, b.context).shape == (2, 4, 4, 3)
  assert copier.normed_context(b.context).shape == (2, 4, 4, 16)
  assert copier.attn.num_heads == 2 and copier.attn.grid_side == 4
  # The study's copier is this network at the learning config's level 0, on RGB pixels.
  config = learning.get_config("parallel")
  pairs = learning_copy_pairs.make_copier(config, "fourier", 0)
  assert pairs.embed_garment.kernel.shape == (1, 1, 3, config.model.channels[0])
  assert pairs.attn.grid_side == config.model.resolution


def test_scale_position_code_multiplies_the_place_projections_only():
  from flax import nnx  # pylint: disable=g-import-not-at-top
  copier = learning_copy.make_token_copier(SHAPE, "fourier", 0, token_channels=3)
  def params():
    return {path: np.array(v.get_value())
            for path, v in nnx.to_flat_state(nnx.state(copier, nnx.Param))}

  before = params()
  learning_copy.scale_position_code(copier.attn, 3.0)
  after = params()
  scaled = 0
  for path, value in before.items():
    ratio = 3.0 if path[-2] in ("position_q", "position_k") else 1.0
    scaled += ratio == 3.0
    np.testing.assert_allclose(after[path], ratio * value, rtol=1e-6, err_msg=str(path))
  assert scaled == 2
  blind = learning_copy.make_token_copier(SHAPE, "none", 0, token_channels=3)
  learning_copy.scale_position_code(blind.attn, 3.0)  # no position code: nothing to scale


def test_read_bound_is_one_for_the_raw_garment_and_lower_when_a_norm_divides_out_its_colour():
  from flax import nnx  # pylint: disable=g-import-not-at-top
  from tryon_jax.models import layers  # pylint: disable=g-import-not-at-top
  with nnx.use_eager_sharding(False):
    norm = layers.GroupNorm(64, rngs=nnx.Rngs(0))  # as the layer's context norm starts
  plain = learning_copy.make_batch(jax.random.key(4), "place", 16, 16, 64, 0)
  coloured = learning_copy.make_batch(jax.random.key(4), "place", 16, 16, 64, 0,
                                      pattern_share=0.1)
  assert learning_copy.read_bound(coloured.context, coloured) == pytest.approx(1.0, abs=1e-4)
  assert learning_copy.read_bound(norm(plain.context), plain) > 0.99
  # Each example's colour sets its GroupNorm statistics, so its pattern's scale is lost.
  assert learning_copy.read_bound(norm(coloured.context), coloured) < 0.8


def test_copy_scores_give_one_for_a_copy_and_zero_for_the_mean():
  rng = np.random.default_rng(0)
  target = rng.normal(size=(2, 4, 4, 8))
  read = np.tile(np.arange(16)[::-1], (2, 1))
  on_place = np.zeros((2, 2, 16, 16))
  on_place[:, :, np.arange(16), read[0]] = 1.0
  scored = np.arange(8) >= 2
  batch = learning_copy.CopyBatch(x=None, context=None, target=target, read=read, scored=scored,
                                  garment=np.ones((2, 16), bool), pattern=target)
  hit = learning_copy.copy_scores(target, on_place, batch)
  assert hit == {"r2": 1.0, "pattern_r2": 1.0, "right_mass": 1.0}
  even = np.full((2, 2, 16, 16), 1 / 16)
  miss = learning_copy.copy_scores(np.zeros_like(target), even, batch)
  assert miss["r2"] == 0.0 and miss["right_mass"] == pytest.approx(1 / 16)
  # right_mass counts the person tokens inside the garment only.
  half = np.tile(np.arange(16) < 8, (2, 1))
  mixed = np.where(half[:, None, :, None], on_place, even)
  assert learning_copy.copy_scores(target, mixed, batch._replace(garment=half))[
      "right_mass"] == 1.0
  # Only the scored channels count: errors elsewhere change nothing.
  noisy = target + 5.0 * (~scored)
  assert learning_copy.copy_scores(noisy, on_place, batch)["r2"] == 1.0


def test_position_code_lets_the_layer_copy_by_place_and_nothing_else_does():
  config = learning.get_config("parallel")
  kw = {"steps": 500, "eval_every": 250, "tag_channels": 0, "eval_batch": 8, "seed": 0}
  coded = learning_copy.train_copy(config, SHAPE, "place", "fourier", 0.0, **kw)
  blind = learning_copy.train_copy(config, SHAPE, "place", "none", 0.0, **kw)
  assert [c["step"] for c in coded["curve"]] == [0, 250, 500]
  assert abs(coded["curve"][0]["r2"]) < 0.05  # the output projection starts at zero
  assert coded["final_r2"] > 0.9 and coded["final_right_mass"] > 0.5
  assert coded["steps_to_r2_0.9"] in (250, 500)
  # Without the code the layer cannot tell garment places apart: no better than the mean.
  assert blind["final_r2"] < 0.1 and blind["steps_to_r2_0.5"] is None
  assert blind["final_right_mass"] == pytest.approx(1 / 16, abs=0.02)


def test_main_writes_one_run_per_task_position_and_noise(tmp_path):
  out = tmp_path / "copy.json"
  runs = learning_copy.main(["--json", str(out), "--steps", "2", "--eval_every", "1",
                             "--tasks", "content", "--target_noise", "0", "2",
                             "--set", "model.resolution=8", "--set", "model.channels=(16,32)",
                             "--set", "model.head_dim=8", "--eval_batch", "2"])
  saved = json.loads(out.read_text())
  assert saved["runs"] == json.loads(json.dumps(runs))
  assert [(r["position"], r["target_noise"]) for r in runs] == [
      ("none", 0.0), ("none", 2.0), ("fourier", 0.0), ("fourier", 2.0)]
  for r in runs:
    assert (r["side"], r["channels"], r["heads"], r["tag_channels"]) == (4, 32, 4, 16)
    assert [c["step"] for c in r["curve"]] == [0, 1, 2] and np.isfinite(r["final_r2"])
    assert r["even_right_mass"] == 1 / 16 and r["lr"] == learning.get_config().train.lr
    assert (r["garment_fraction"], r["garment_side"]) == (1.0, 4)
  small = ["--set", "model.resolution=8", "--set", "model.channels=(16,32)", "--set",
           "model.head_dim=8", "--eval_batch", "2", "--steps", "1", "--tasks", "place",
           "--positions", "fourier"]
  runs = learning_copy.main(small + ["--garment_fraction", "1", "0.25", "--pattern_share", "1",
                                     "0.5"])
  assert [(r["garment_fraction"], r["garment_side"], r["pattern_share"]) for r in runs] == [
      (1.0, 4, 1.0), (1.0, 4, 0.5), (0.25, 2, 1.0), (0.25, 2, 0.5)]
  for r in runs:  # without a colour the two scores are one
    assert (r["final_pattern_r2"] == r["final_r2"]) == (r["pattern_share"] == 1.0)
    assert r["read_bound_pattern_r2"] <= 1.0
  runs = learning_copy.main(small + ["--token_channels", "3", "--stripe_period", "0", "2"])
  assert [(r["token_channels"], r["stripe_period"], r["channels"], r["heads"]) for r in runs] == [
      (3, 0.0, 32, 4), (3, 2.0, 32, 4)]
  for setting in ("--garment_fraction", "--pattern_share", "--stripe_period"):
    with pytest.raises(SystemExit):  # argparse: place-task settings
      learning_copy.main(small[:-4] + [setting, "0.5" if setting != "--stripe_period" else "3"])
  with pytest.raises(SystemExit):  # argparse: a period shorter than two tokens
    learning_copy.main(small + ["--stripe_period", "1"])
  with pytest.raises(SystemExit, match="--level=5"):
    learning_copy.main(["--level", "5"])


def test_lined_up_garments_sit_where_the_target_shows_the_garment(tmp_path):
  from benchmarks import learning as study  # pylint: disable=g-import-not-at-top
  from benchmarks import learning_copy_pairs  # pylint: disable=g-import-not-at-top
  largs = study.parse_args(["--workdir", str(tmp_path), "--same_pose", "--num_train", "8",
                            "--num_test", "3", "--synthetic_resolution", "64",
                            "--set", "train.batch_size=4"])
  data = study.prepare_data(largs)
  config = study.make_config("parallel", largs, data["train"][0])
  batch, masks = study.eval_batch(config, data, "test", 3)
  lined = learning_copy_pairs.lined_up_garments(*data["test"], "test", study.batch_ids(batch), 32)
  assert lined.shape == batch["garment"].shape and lined.min() >= -1 and lined.max() <= 1

  def garment_error(garment):  # mean square error on the target's garment pixels
    return float(np.mean((garment - batch["person"])[masks] ** 2))

  # Cut with the person's crop, I_c lies on the target's garment; the record's own I_c (cut with
  # the garment's crop) is scaled and moved off it.
  assert garment_error(lined) < 0.5 * garment_error(batch["garment"])
  # Training batches: file order, every epoch the same records, I_c replaced by the lined-up one.
  batches = learning_copy_pairs.file_order_batches(config, *data["train"], "train", lined_up=True)
  epoch = [next(batches) for _ in range(2)]
  again = [next(batches) for _ in range(2)]
  ids = [study.batch_ids(b) for b in epoch]
  assert ids == [study.batch_ids(b) for b in again] and ids[0] != ids[1]
  train_lined = learning_copy_pairs.lined_up_garments(*data["train"], "train", ids[1], 32)
  np.testing.assert_array_equal(epoch[1]["garment"], train_lined)
  with pytest.raises(SystemExit):
    learning_copy_pairs.parse_args(["--lined_up", "--", "--workdir", str(tmp_path)])

  # The copier on these pairs: noise in place of the garments for the first step, then the
  # images, scored on the images throughout (--content_steps).
  def copier(*flags: str) -> dict:
    return learning_copy_pairs.main(
        ["--lined_up", "--target", "garment_input", "--loss_on", "garment", "--positions",
         "fourier", "--eval_every", "1", *flags, "--", "--workdir", str(tmp_path), "--same_pose",
         "--num_train", "8", "--num_test", "3", "--synthetic_resolution", "64", "--steps", "2",
         "--set", "train.batch_size=4"])
  images, noise = copier(), copier("--garment_content", "noise")
  switched = copier("--garment_content", "noise", "--content_steps", "1")
  mixed = copier("--garment_content", "noise", "--content_fraction", "0.5")
  assert switched["reference"] == mixed["reference"] == images["reference"] != noise["reference"]
  shares = [run["template_share"]["trained"] for run in (images, mixed, noise)]
  assert shares[0] > shares[1] > shares[2]  # half the training garments are noise
  image_curve = images["runs"]["fourier"]["curve"]
  switched_curve = switched["runs"]["fourier"]["curve"]
  assert switched_curve[0] == image_curve[0] and switched_curve[1] != image_curve[1]
  assert noise["runs"]["fourier"]["curve"][1] != switched_curve[1]  # scored on other garments
  assert images["template_share"]["trained"] == images["template_share"]["images"]
  assert noise["template_share"]["trained"] != noise["template_share"]["images"]
  assert set(noise["pattern_correlation"]["trained"]) == {"1", "2", "4", "8"}
  assert "flat_twin_template_shifted" not in images["reference"]
  removed = copier("--garment_template", "remove")["reference"]["flat_twin_template_shifted"]
  assert removed["pattern_corr_garment"] > 0  # the twin itself scores 0; shifted, it scores
  for bad in (["--content_steps", "1"], ["--garment_content", "noise", "--content_steps", "2"]):
    with pytest.raises(SystemExit):
      copier(*bad)


def tiny_copier_pairs(seed: int, rows: slice, cols: slice) -> tuple:
  """A 16 x 16 copier's config, two random image pairs and a rectangular garment mask."""
  config = learning.get_config("parallel")
  config.model.resolution, config.model.channels, config.model.head_dim = 16, (16, 32), 8
  rng = np.random.default_rng(seed)
  images = {k: rng.uniform(-1, 1, (2, 16, 16, 3)).astype(np.float32)
            for k in ("agnostic", "garment", "person")}
  mask = np.zeros((2, 16, 16), bool)
  mask[:, rows, cols] = True
  return config, images, mask


def test_a_garment_loss_ignores_the_target_outside_the_garment():
  from benchmarks import learning_copy_pairs  # pylint: disable=g-import-not-at-top
  config, images, mask = tiny_copier_pairs(0, slice(4, 10), slice(5, 11))
  held_out = (images, mask, images["person"])

  def batches(outside: float):  # the same batch, its target changed outside the garment only
    while True:
      yield {**images, "garment_mask": mask,
             "person": np.where(mask[..., None], images["person"], outside)}

  def train(outside: float, loss_on: str) -> dict:
    return learning_copy_pairs.train_copier(config, "fourier", 3, 3, held_out, 0,
                                            batches(outside), loss_on)

  dark, bright = train(-1.0, "garment"), train(1.0, "garment")
  assert dark["loss_on"] == "garment"
  assert dark["curve"][-1] == bright["curve"][-1]  # the same loss, the same trained layer
  assert dark["curve"][-1]["psnr_garment"] != dark["curve"][0]["psnr_garment"]  # it trained
  assert train(-1.0, "image")["curve"][-1] != train(1.0, "image")["curve"][-1]


def test_place_weights_read_the_weight_at_and_around_each_pixels_own_place():
  from benchmarks import learning_copy_pairs  # pylint: disable=g-import-not-at-top
  r, n = 6, 36
  mask = np.zeros((2, r, r), bool)
  mask[:, 2:4, 1:5] = True  # away from the edge: every pixel has its 8 neighbours
  rows, cols = np.divmod(np.arange(n), r)
  to_own = np.broadcast_to(np.eye(n), (2, 2, n, n))  # 2 heads on each pixel's own place
  on_right = np.zeros((n, n))  # all weight on the pixel to the right (wrapping at the edge)
  on_right[np.arange(n), rows * r + (cols + 1) % r] = 1
  far = np.zeros((n, n))  # all weight two rows down
  far[np.arange(n), ((rows + 2) % r) * r + cols] = 1
  even = np.full((2, 2, n, n), 1 / n)
  own = learning_copy_pairs.place_weights(to_own, mask)
  assert own == {"own_place_weight": 1.0, "near_place_weight": 1.0}
  right = learning_copy_pairs.place_weights(np.broadcast_to(on_right, (2, 2, n, n)), mask)
  assert right == {"own_place_weight": 0.0, "near_place_weight": 1.0}
  heads = np.stack([np.eye(n), far])[None].repeat(2, axis=0)  # one head at the place, one far
  assert learning_copy_pairs.place_weights(heads, mask) == {"own_place_weight": 0.5,
                                                            "near_place_weight": 0.5}
  spread = learning_copy_pairs.place_weights(even, mask)
  np.testing.assert_allclose(list(spread.values()), [1 / n, 9 / n], rtol=1e-6)


def test_place_weights_with_pose_maps_read_where_each_pixel_is_sent():
  from benchmarks import learning_copy_pairs  # pylint: disable=g-import-not-at-top
  r, n = 6, 36
  mask = np.zeros((2, r, r), bool)
  mask[:, 2:4, 1:4] = True
  rows, cols = np.divmod(np.arange(n), r)
  on_right = np.zeros((n, n))
  on_right[np.arange(n), rows * r + (cols + 1) % r] = 1
  weights = np.broadcast_to(on_right, (2, 2, n, n))
  one_right = np.broadcast_to(np.array([[1.0, 0.0], [0.0, 1.0], [1 / r, 0.0]]), (2, 3, 2))
  sent = learning_copy_pairs.place_weights(weights, mask, one_right)
  assert sent == {"own_place_weight": 1.0, "near_place_weight": 1.0}
  assert learning_copy_pairs.place_weights(weights, mask)["own_place_weight"] == 0.0
  two_right = one_right.copy()
  two_right[:, 2, 0] = 2 / r
  assert learning_copy_pairs.place_weights(weights, mask, two_right) == {
      "own_place_weight": 0.0, "near_place_weight": 1.0}


def test_warp_garments_moves_each_pixel_by_its_pose_map():
  from benchmarks import learning_copy_pairs  # pylint: disable=g-import-not-at-top
  r = 8
  garments = np.random.default_rng(0).uniform(-1, 1, (2, r, r, 3)).astype(np.float32)
  maps = np.broadcast_to(np.eye(3, 2), (2, 3, 2)).copy()
  np.testing.assert_allclose(learning_copy_pairs.warp_garments(garments, maps), garments,
                             atol=1e-6)
  maps[1, 2] = [2 / r, 1 / r]  # pair 1: each person pixel shows I_c two right and one down
  warped = learning_copy_pairs.warp_garments(garments, maps)
  np.testing.assert_allclose(warped[1, :-1, :-2], garments[1, 1:, 2:], atol=1e-6)
  np.testing.assert_allclose(warped[1, -1], -1.0)  # sent off I_c: black
  config = learning.get_config("parallel")
  poses = {"person_pose": np.random.default_rng(1).uniform(0.2, 0.8, (2, 18, 2))}
  poses["garment_pose"] = poses["person_pose"] + np.array([2 / r, 1 / r])
  poses["person_pose_mask"] = poses["garment_pose_mask"] = np.ones((2, 18))
  np.testing.assert_allclose(learning_copy_pairs.pose_maps(config, poses)[1], maps[1],
                             atol=1e-3)  # the ridge's pull: 2e-4 here
  # Moved as a whole, every body part has the torso's map: the per-part warp is the same (a
  # shift by a pixel and a half, so that no pixel lands on I_c's edge, where 1e-4 decides).
  poses["garment_pose"] = poses["person_pose"] + np.array([1.5 / r, 0.5 / r])
  by_parts, by_torso = (learning_copy_pairs.warp_garments(
      garments, learning_copy_pairs.pose_maps(config, poses, position))
                        for position in ("pose_parts", "pose_affine"))
  np.testing.assert_allclose(by_parts, by_torso, atol=1e-2)  # the torso map's ridge: 2e-4
  assert np.abs(by_torso - garments).max() > 0.5


def test_a_pose_parts_copier_is_the_fourier_one_where_the_poses_agree():
  from benchmarks import learning_copy_pairs  # pylint: disable=g-import-not-at-top
  config, images, mask = tiny_copier_pairs(3, slice(3, 12), slice(2, 13))
  config.train.lr = 3e-2  # three steps that move the layer's read enough to tell the codes apart
  rng = np.random.default_rng(3)
  images["person_pose"] = rng.uniform(0.2, 0.8, (2, 18, 2)).astype(np.float32)
  images["person_pose_mask"] = images["garment_pose_mask"] = np.ones((2, 18), np.float32)

  def train(position: str, garment_pose: np.ndarray) -> dict:
    batch = {**images, "garment_pose": garment_pose, "garment_mask": mask}
    return learning_copy_pairs.train_copier(config, position, 3, 3, (batch, mask, images["person"]),
                                            0, iter(lambda: batch, None), "garment")

  fourier = train("fourier", images["person_pose"])
  same = train("pose_parts", images["person_pose"])
  moved = train("pose_parts", images["person_pose"] * 0.7 + 0.15)
  for score in ("psnr_garment", "own_place_weight", "near_place_weight"):
    np.testing.assert_allclose(same[score], fourier[score], rtol=1e-6)  # the identity maps
  # Moved, the codes differ: 2.8e-4 dB after three steps, where the identity maps give 0.0.
  assert abs(moved["psnr_garment"] - fourier["psnr_garment"]) > 1e-4


def test_the_garment_input_target_trains_the_copier_on_i_c_not_the_person():
  from benchmarks import learning_copy_pairs  # pylint: disable=g-import-not-at-top
  config, images, mask = tiny_copier_pairs(1, slice(3, 11), slice(4, 12))

  def train(person: np.ndarray, target: str) -> dict:
    batch = {**images, "person": person, "garment_mask": mask}
    held_out = (batch, mask, images["garment"])
    return learning_copy_pairs.train_copier(config, "fourier", 3, 3, held_out, 0,
                                            iter(lambda: batch, None), "garment", target)

  one, other = train(images["person"], "garment_input"), train(-images["person"], "garment_input")
  assert one["target"] == "garment_input"
  assert one["curve"] == other["curve"]  # the person image is neither trained on nor scored
  assert train(images["person"], "person")["curve"][-1] != one["curve"][-1]
  assert 0 < one["own_place_weight"] < one["near_place_weight"] < 1


def test_without_key_content_the_attention_does_not_depend_on_the_garment_pixels():
  from benchmarks import learning_copy_pairs  # pylint: disable=g-import-not-at-top
  config, images, mask = tiny_copier_pairs(2, slice(2, 12), slice(3, 13))
  batch = {**images, "garment_mask": mask}
  other = {**batch, "garment": np.random.default_rng(9).uniform(-1, 1, (2, 16, 16, 3))}

  def weights(held_out: dict, key_content: bool) -> tuple:
    run = learning_copy_pairs.train_copier(
        config, "fourier", 2, 2, (held_out, mask, held_out["garment"]), 0,
        iter(lambda: batch, None), "garment", "garment_input", key_content)
    return run["own_place_weight"], run["near_place_weight"]

  assert weights(batch, False) == weights(other, False)  # where it looks: position only
  assert weights(batch, True) != weights(other, True)
  with pytest.raises(SystemExit):
    learning_copy_pairs.parse_args(["--no_key_content", "--", "--same_pose"])


def test_garment_content_noise_and_shuffle_keep_shape_and_colours_and_lose_the_pattern():
  from benchmarks import learning_copy_pairs  # pylint: disable=g-import-not-at-top
  garments = np.full((2, 32, 32, 3), -1.0, np.float32)  # black, as I_c's background
  rows = np.arange(32)[:, None]
  stripe = np.where((rows // 6) % 2 == 0, 0.3, -0.3) * np.ones((1, 32))  # a smooth pattern
  garments[0, 4:28, 6:26] = (stripe[4:28, 6:26, None] + np.array([0.1, -0.2, 0.0])) * 0.5
  garments[1, 10:20, 10:20] = 0.2  # one flat colour
  region = garments[0, 4:28, 6:26]
  on = garments > learning_copy_pairs.GARMENT_FLOOR

  def row_corr(x):  # of each pixel's channel mean with the pixel's below
    x = x.mean(-1)
    return np.corrcoef(x[:-1].ravel(), x[1:].ravel())[0, 1]

  def replace(content, ids=("a", "b"), seed=0):
    return learning_copy_pairs.replace_garment_content(garments, list(ids), seed, content)

  np.testing.assert_array_equal(replace("image"), garments)
  assert row_corr(region) > 0.5
  for content in ("noise", "shuffle"):  # no arrangement left
    new = replace(content)
    np.testing.assert_array_equal(new[~on], garments[~on])  # the black is untouched
    inside = new[0, 4:28, 6:26]
    np.testing.assert_allclose(inside.mean((0, 1)), region.mean((0, 1)), atol=0.02)
    np.testing.assert_allclose(inside.std((0, 1)), region.std((0, 1)), atol=0.02)
    assert abs(row_corr(inside)) < 0.1  # neighbouring rows no longer agree: the stripe is gone
    np.testing.assert_allclose(new[1], garments[1], atol=1e-6)  # no spread, nothing to move
    np.testing.assert_array_equal(replace(content), new)  # fixed per record
    assert not np.array_equal(replace(content, ("c", "b"))[0], new[0])
    assert not np.array_equal(replace(content, seed=1)[0], new[0])
  noise, shuffled = replace("noise")[0, 4:28, 6:26], replace("shuffle")[0, 4:28, 6:26]
  # Shuffled, the garment keeps its two colours exactly; noise spreads them.
  np.testing.assert_array_equal(np.unique(shuffled.reshape(-1, 3), axis=0),
                                np.unique(region.reshape(-1, 3), axis=0))
  assert len(np.unique(noise.reshape(-1, 3), axis=0)) > 100
  # Blurred noise: the same colour and spread, and neighbours agree again.
  blurred = learning_copy_pairs.replace_garment_content(garments, ["a", "b"], 0, "noise", 1.0)
  inside = blurred[0, 4:28, 6:26]
  np.testing.assert_allclose(inside.mean((0, 1)), region.mean((0, 1)), atol=0.05)
  np.testing.assert_allclose(np.sqrt(np.mean((inside - inside.mean((0, 1))) ** 2)),
                             np.sqrt(np.mean((region - region.mean((0, 1))) ** 2)), rtol=0.05)
  assert row_corr(inside) > 0.5
  np.testing.assert_array_equal(blurred[~on], garments[~on])
  # Tiled noise: every value recurs P pixels on, in both directions, and not one pixel on.
  tiled = learning_copy_pairs.replace_garment_content(garments, ["a", "b"], 0, "noise",
                                                      noise_period=4)[0, 4:28, 6:26]
  np.testing.assert_array_equal(tiled[4:], tiled[:-4])
  np.testing.assert_array_equal(tiled[:, 4:], tiled[:, :-4])
  assert np.abs(tiled[1:] - tiled[:-1]).max() > 0.1
  np.testing.assert_allclose(tiled.mean((0, 1)), region.mean((0, 1)), atol=0.1)
  # Phases drawn at random: the garment's colour and spread, the black untouched, and a stripe
  # stays a stripe of its period and direction, moved along it.
  phased = replace("phase")
  np.testing.assert_array_equal(phased[~on], garments[~on])
  np.testing.assert_allclose(phased[0, 4:28, 6:26].mean((0, 1)), region.mean((0, 1)), atol=0.05)
  np.testing.assert_allclose(np.sqrt(np.mean((phased[0, 4:28, 6:26] - region.mean((0, 1))) ** 2)),
                             np.sqrt(np.mean((region - region.mean((0, 1))) ** 2)), rtol=1e-5)
  np.testing.assert_array_equal(replace("phase"), phased)
  full = np.broadcast_to(np.where((rows // 2) % 2 == 0, 0.3, -0.3)[..., None], (1, 32, 32, 3))
  moved = learning_copy_pairs.replace_garment_content(full, ["a"], 0, "phase")[0]
  along_rows = np.broadcast_to(moved[:, :1], moved.shape)
  np.testing.assert_allclose(moved, along_rows, atol=1e-5)  # constant along each row
  np.testing.assert_allclose(moved[4:], moved[:-4], atol=1e-5)  # period 4 down the columns
  assert np.abs(moved - full[0]).max() > 0.05
  # keep_ring: the outline's pixels (next to black) are the image's again, the inside is not.
  ringed = learning_copy_pairs.replace_garment_content(garments, ["a", "b"], 0, "noise",
                                                       keep_ring=True)
  same = (ringed == garments).all(-1)[0]
  assert same[4, 6:26].all() and same[27, 6:26].all() and same[4:28, 6].all()
  assert not same[5:27, 7:25].any() and same[~on[0].any(-1)].all()
  with pytest.raises(SystemExit):
    learning_copy_pairs.parse_args(["--lined_up", "--keep_ring", "--", "--same_pose"])
  with pytest.raises(SystemExit):
    learning_copy_pairs.parse_args(["--garment_content", "noise", "--", "--same_pose"])
  with pytest.raises(SystemExit):
    learning_copy_pairs.parse_args(["--lined_up", "--garment_content", "shuffle", "--noise_blur",
                                    "1", "--", "--same_pose"])
  with pytest.raises(SystemExit):
    learning_copy_pairs.parse_args(["--lined_up", "--noise_period", "4", "--", "--same_pose"])
  with pytest.raises(ValueError, match="content='checks'"):
    replace("checks")


def test_pattern_template_is_the_patterns_shared_by_place_and_can_be_taken_away():
  from benchmarks import learning_copy_pairs  # pylint: disable=g-import-not-at-top
  rows = np.arange(16)[:, None, None]
  stripe = np.where(rows % 4 < 2, 0.2, -0.2) * np.ones((1, 8, 3))  # mean 0 over 8 rows
  garments = np.full((3, 16, 16, 3), -1.0, np.float32)
  garments[0, 4:12, 4:12] = stripe[4:12] + np.array([0.1, -0.3, 0.2])  # its own colour
  garments[1, 4:12, 4:12] = stripe[4:12] + np.array([-0.2, 0.0, 0.3])
  garments[2, 4:12, 4:12] = 0.4  # a flat garment brings no pattern, only its colour
  template, share = learning_copy_pairs.pattern_template(garments)
  # Two of three garments carry the stripe at the same place: the template is 2/3 of it, and
  # leaves a third of the stripe in each of them and -2/3 of it in the flat garment.
  np.testing.assert_allclose(template[4:12, 4:12], 2 / 3 * stripe[4:12], atol=1e-6)
  assert not template[:4].any() and not template[:, 12:].any()  # no garment covers these
  shared = 2 * 64 * 3 * 0.04  # the patterns' summed squares
  left = 2 * 64 * 3 * (0.2 / 3) ** 2 + 64 * 3 * (0.4 / 3) ** 2
  np.testing.assert_allclose(share, 1 - left / shared, rtol=1e-5)
  opposite = garments[:2].copy()  # the same stripe, and its negative: nothing shared by place
  opposite[1, 4:12, 4:12] = -stripe[4:12] + np.array([-0.2, 0.0, 0.3])
  template, share = learning_copy_pairs.pattern_template(opposite)
  assert np.abs(template).max() < 1e-6 and abs(share) < 1e-6
  # Taken away, the template leaves each striped garment its colour and a third of the stripe;
  # the black stays black, and nothing is left shared.
  template = learning_copy_pairs.pattern_template(garments)[0]
  removed = learning_copy_pairs.replace_garment_content(garments, ["a", "b", "c"], 0, "image",
                                                        template_shift=-template)
  np.testing.assert_allclose(removed[0, 4:12, 4:12] - np.array([0.1, -0.3, 0.2]),
                             stripe[4:12] / 3, atol=1e-6)
  np.testing.assert_array_equal(removed[:, :4], garments[:, :4])
  np.testing.assert_allclose(removed[2, 4:12, 4:12], 0.4 - 2 / 3 * stripe[4:12], atol=1e-6)
  assert abs(learning_copy_pairs.pattern_template(removed)[1]) < 1e-6
  # Thirty copies of the striped garment: the template is the stripe. Noise in their place
  # shares next to nothing by place (about 1/30 by chance); with the stripe added, about half.
  many, ids = np.repeat(garments[:1], 30, axis=0), [str(i) for i in range(30)]
  template = learning_copy_pairs.pattern_template(many)[0]
  noise_only = learning_copy_pairs.replace_garment_content(many, ids, 0, "noise")
  added = learning_copy_pairs.replace_garment_content(many, ids, 0, "noise",
                                                      template_shift=template)
  np.testing.assert_allclose(added, np.where(many > -1, np.clip(noise_only + template, -1, 1), -1))
  assert learning_copy_pairs.pattern_template(noise_only)[1] < 0.1
  assert 0.3 < learning_copy_pairs.pattern_template(added)[1] < 0.7
  with pytest.raises(SystemExit):
    learning_copy_pairs.parse_args(["--garment_template", "remove", "--", "--same_pose"])


def test_pattern_correlation_is_how_alike_garment_pixels_are_at_a_distance():
  from benchmarks import learning_copy_pairs  # pylint: disable=g-import-not-at-top
  rows, cols = np.mgrid[:16, :16]
  checker = np.where((rows + cols) % 2 == 0, 0.3, -0.3)[..., None] * np.ones(3)
  garments = np.full((2, 16, 16, 3), -1.0, np.float32)
  garments[0, 2:14, 2:14] = 0.1 + checker[2:14, 2:14]  # alternates every pixel, both ways
  garments[1, 4:12, 4:12] = -0.4 + checker[4:12, 4:12]
  corr = learning_copy_pairs.pattern_correlation(garments, (1, 2, 3))
  np.testing.assert_allclose([corr["1"], corr["2"], corr["3"]], [-1, 1, -1], atol=1e-6)
  noise = learning_copy_pairs.replace_garment_content(garments, ["a", "b"], 0, "noise")
  assert abs(learning_copy_pairs.pattern_correlation(noise, (1,))["1"]) < 0.15
  blurred = learning_copy_pairs.replace_garment_content(garments, ["a", "b"], 0, "noise", 1.5)
  assert learning_copy_pairs.pattern_correlation(blurred, (1,))["1"] > 0.5


def test_mix_garments_changes_a_fixed_share_of_the_records():
  from benchmarks import learning_copy_pairs  # pylint: disable=g-import-not-at-top
  ids = [f"r{i}" for i in range(400)]
  images, changed = np.zeros((400, 2, 2, 3)), np.ones((400, 2, 2, 3))
  mixed = learning_copy_pairs.mix_garments(changed, images, ids, 0, 0.25)
  picked = mixed[:, 0, 0, 0] == 1
  assert (mixed == picked[:, None, None, None]).all()  # whole garments, one or the other
  assert 0.18 < picked.mean() < 0.32
  again = learning_copy_pairs.mix_garments(changed[::-1], images, ids[::-1], 0, 0.25)
  np.testing.assert_array_equal(again[::-1], mixed)  # per record, not per position
  other_seed = learning_copy_pairs.mix_garments(changed, images, ids, 1, 0.25)
  assert not np.array_equal(other_seed, mixed)
  for bad in (["--content_fraction", "0.5"],
              ["--garment_content", "noise", "--content_fraction", "1"]):
    with pytest.raises(SystemExit):
      learning_copy_pairs.parse_args(["--lined_up", *bad, "--", "--same_pose"])


def test_batch_keys_are_fresh_or_walk_a_fixed_set_in_order():
  def raw(keys):
    return [tuple(np.asarray(jax.random.key_data(k)).ravel()) for k in keys]
  fresh = raw(learning_copy.batch_keys(0, 6))
  assert len(set(fresh)) == 6
  fixed = raw(learning_copy.batch_keys(0, 7, train_batches=3))
  assert len(set(fixed[:3])) == 3 and fixed[3:6] == fixed[:3] and fixed[6] == fixed[0]
  assert raw(learning_copy.batch_keys(1, 3, train_batches=3)) != fixed[:3]
  with pytest.raises(SystemExit):
    learning_copy.parse_args(["--tasks", "content", "--train_batches", "4"])
