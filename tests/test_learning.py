"""The learning study script runs end to end on a tiny setting and writes well-formed results."""

import argparse
import glob
import json
import os
import sys

import numpy as np
import pytest
from PIL import Image

from benchmarks import learning, learning_attention, learning_copy_pairs
from data_pipelines import synthetic, viton_hd
from tryon_jax.data import synthetic_render
from tryon_jax.diffusion import schedules

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_inference_support as support  # pylint: disable=wrong-import-position

TINY = ["--steps", "2", "--num_train", "8", "--num_test", "3", "--synthetic_resolution", "64",
        "--sample_steps", "2", "--grid_rows", "3",
        "--set", "model.channels=(16,32)", "--set", "model.person_blocks=(1,1)",
        "--set", "model.garment_blocks=(1,1)", "--set", "model.attention=(False,True)",
        "--set", "model.garment_decoder_levels=1", "--set", "model.cond_dim=32",
        "--set", "model.pose_embed_dim=16", "--set", "model.head_dim=8",
        "--set", "model.pool_heads=2", "--set", "train.batch_size=4"]


def test_learning_study_writes_results_grid_and_curves(tmp_path, monkeypatch):
  out = tmp_path / "out"
  argv = ["--workdir", str(tmp_path / "work"), "--out", str(out),
          "--inception_weights", str(tmp_path / "no_inception.npz"),
          "--noise_garments", "0.5"] + TINY
  real_other_garments = learning.other_garments
  swapped = []  # the batches whose garments were swapped, and what they were swapped to

  def spy_other_garments(batch):
    swapped.append((batch, real_other_garments(batch)))
    return swapped[-1][1]

  monkeypatch.setattr(learning, "other_garments", spy_other_garments)
  results = learning.main(argv)

  saved = json.loads((out / "results.json").read_text())
  assert saved["steps"] == 2 and saved["num_test"] == 3
  assert set(saved["variants"]) == {"parallel", "concat"}
  assert "no_inception.npz" in saved["inception_skipped"]  # FID/KID skipped, saying why
  assert "fid" not in saved["variants"]["parallel"]
  metric_names = ("psnr_garment", "ssim", "ssim_garment", "hist_l1_garment",
                  "detail_corr_garment", "pattern_corr_garment", "pattern_rms_garment")
  assert saved["pattern_scale"] == 1.0 and saved["noise_garments"] == 0.5
  made = {split: synthetic.read_settings(str(tmp_path / "work" / "data" / f"raw_{split}"), split)
          for split in ("train", "test")}
  assert made["train"]["noise_garments"] == 0.5 and made["test"]["noise_garments"] == 0.0
  args = learning.parse_args(argv)
  schedule = schedules.make_schedule(learning.make_config("parallel", args, "unused").diffusion)
  for name, run in saved["variants"].items():
    assert run["train_steps"] == 2 and run["train_seconds"] > 0, name
    assert [s for s, _ in run["loss_curve"]][-1] == 2, name
    assert np.isfinite(run["final_loss"])
    for metric in metric_names:
      assert np.isfinite(run[metric]) and run[metric + "_std"] >= 0, (name, metric)
    assert -1 <= run["ssim"] <= 1 and 0 <= run["hist_l1_garment"] <= 2
    assert -1 <= run["detail_corr_garment"] <= 1 and -1 <= run["pattern_corr_garment"] <= 1
    assert set(run["garment_reliance"]) == {f"t={t}" for t in learning.RELIANCE_LEVELS}, name
    for t in learning.RELIANCE_LEVELS:  # the level's noise, under the study's own schedule
      np.testing.assert_allclose(run["garment_reliance"][f"t={t}"]["logsnr"],
                                 float(schedule.logsnr(t)), rtol=1e-5)
    for level in run["garment_reliance"].values():
      assert 0 < level["mse_own"] <= 1 and 0 < level["mse_other"] <= 1, name
      np.testing.assert_allclose(level["reliance_db"],
                                 10 * np.log10(level["mse_other"] / level["mse_own"]), rtol=1e-5)
  # The concat variant is the smaller network (no garment UNet).
  assert saved["variants"]["concat"]["params"] < saved["variants"]["parallel"]["params"]
  assert set(saved["reference"]["copy_garment_input"]) >= set(metric_names)
  # The pattern-free references: the flat twin has no pattern to place, the mean colour no detail.
  twin, mean_colour = saved["reference"]["flat_twin"], saved["reference"]["mean_colour"]
  assert twin["per_example"]["pattern_corr_garment"] == [0.0] * 3
  assert max(twin["per_example"]["pattern_rms_garment"]) < 1e-6
  target = saved["reference"]["target"]  # the targets' own pattern: in place, at full contrast
  assert target["ssim_garment"] > 0.999 and target["pattern_rms_garment"] > 0.01
  assert all(c > 0.999 or r < 1e-4 for c, r in zip(target["per_example"]["pattern_corr_garment"],
                                                    target["per_example"]["pattern_rms_garment"]))
  assert np.abs(mean_colour["per_example"]["detail_corr_garment"]).max() < 1e-4
  # The soft twin: the flat twin blurred, scored like the outputs.
  assert set(saved["reference"]["flat_twin_soft"]) >= set(metric_names)
  assert mean_colour["psnr_garment"] > saved["reference"]["copy_garment_input"]["psnr_garment"]
  for name in metric_names:  # the paired difference is over the same held-out pairs
    per = [saved["variants"][v]["per_example"][name] for v in ("parallel", "concat")]
    assert len(per[0]) == len(per[1]) == 3
    np.testing.assert_allclose(saved["parallel_minus_concat"][name]["mean"],
                               np.mean(per[0]) - np.mean(per[1]), rtol=1e-5, atol=1e-6)
    assert saved["parallel_minus_concat"][name]["sem"] >= 0
  # How the scores move with the warp each pair needs: one shift per scored pair, both trends.
  assert len(saved["eval_pose_shift"]) == 3 and all(0 < s < 1 for s in saved["eval_pose_shift"])
  for trend in (saved["parallel_minus_concat_vs_pose_shift"],
                saved["reference"]["copy_garment_input_vs_pose_shift"]):
    assert set(trend) == set(metric_names)
    for name, t in trend.items():
      assert np.isfinite(t["small"]) and np.isfinite(t["large"]), (name, t)
      if t["spearman"] is None:  # undefined: the values are the same for all 3 pairs
        assert t["spearman_p"] is None and t["small"] == t["large"], (name, t)
      else:
        assert abs(t["spearman"]) <= 1 and 0 <= t["spearman_p"] <= 1, (name, t)

  # The saved samples are the ones scored: scoring them again gives the reported numbers.
  samples = np.load(out / "samples.npz")
  assert list(samples["ids"]) == saved["eval_ids"]
  for name, run in saved["variants"].items():
    again = learning.garment_metrics(samples[f"output_{name}"], samples["target"],
                                     samples["garment_mask"], samples["flat_twin"])
    for metric in metric_names:
      np.testing.assert_allclose(again["per_example"][metric], run["per_example"][metric],
                                 rtol=1e-5, atol=1e-6, err_msg=f"{name} {metric}")
  # The other-garment samples: each variant sampled the scored batch once more with the next
  # pair's I_c (the reliance score swaps its model inputs, which hold no target, once more).
  # Rescored, they give the reported zero, and own - other is the difference of the two.
  sampled = [new for old_batch, new in swapped if "person" in old_batch]
  assert len(sampled) == 2
  for new in sampled:
    np.testing.assert_array_equal(new["garment"], np.roll(samples["garment"], 1, axis=0))
  for name, run in saved["variants"].items():
    other = samples[f"output_{name}_other_garment"]
    again = learning.garment_metrics(other, samples["target"], samples["garment_mask"],
                                     samples["flat_twin"])
    for metric in metric_names:
      np.testing.assert_allclose(again["per_example"][metric],
                                 run["other_garment"]["per_example"][metric],
                                 rtol=1e-5, atol=1e-6, err_msg=f"{name} other {metric}")
      np.testing.assert_allclose(
          run["own_minus_other_garment"][metric]["mean"],
          np.mean(run["per_example"][metric]) - np.mean(again["per_example"][metric]),
          rtol=1e-5, atol=1e-6, err_msg=f"{name} own - other {metric}")
  soft = learning.garment_metrics(learning.soft_flat_twin(samples["flat_twin"]), samples["target"],
                                  samples["garment_mask"], samples["flat_twin"])
  for metric in metric_names:
    np.testing.assert_allclose(soft["per_example"][metric],
                               saved["reference"]["flat_twin_soft"]["per_example"][metric],
                               rtol=1e-5, atol=1e-6, err_msg=f"flat_twin_soft {metric}")

  grid = Image.open(out / "grid.png")
  # 5 columns (I_a, I_c, target, parallel, concat) x 3 rows of 32 px, upscaled 4x.
  assert grid.size == (5 * 32 * 4, 3 * 32 * 4)
  assert Image.open(out / "loss.png").size == (640, 360)

  # A finished run is reported, not trained again (variants may be trained by separate processes).
  config = learning.make_config("parallel", args, train_glob="unused")
  seconds, timed_steps = learning.train_variant(config, str(tmp_path / "work" / "parallel"))
  assert abs(seconds - results["variants"]["parallel"]["train_seconds"]) <= 0.05  # JSON rounds
  assert timed_steps == results["variants"]["parallel"]["timed_steps"] == 2

  # The cross-attention probe reads the same run back: one entry per person cross-attention
  # layer (attention at 16 px here: one encoder and one decoder block), scores in range.
  probe_json = tmp_path / "attention.json"
  looked = learning_attention.main(["--json", str(probe_json), "--"] + argv)
  assert json.loads(probe_json.read_text()) == json.loads(json.dumps(looked))
  assert looked["step"] == 2 and looked["num_pairs"] == 3
  assert set(looked["layers"]) == {"person_unet/encoder/1/0/cross_attn",
                                   "person_unet/decoder/0/0/cross_attn"}
  for name, layer in looked["layers"].items():
    assert layer["side"] == 16 and layer["queries"] > 0, name
    for key in ("near_mass", "near_mass_uniform", "near_mass_best_head", "near_mass_same_place"):
      assert 0 <= layer[key] <= 1, (name, key)
    assert layer["near_mass"] <= layer["near_mass_best_head"] + 1e-6
    assert 0 <= layer["centroid_error"] <= 16 * np.sqrt(2), name
    for key in ("near_minus_even_on_garment_by_pair", "near_minus_same_place_by_pair"):
      assert layer[key]["pairs"] == 3 and abs(layer[key]["mean"]) <= 1, (name, key)
      assert layer[key]["sem"] >= 0, (name, key)
  assert all(np.isfinite(v) for v in looked["affine_fit_rms_tokens"].values())
  with pytest.raises(ValueError, match="no garment token moves by --min_shift=2.0"):
    learning_attention.main(["--min_shift", "2", "--"] + argv)  # nothing moves by 2 image sides
  # Scored against the model's own part maps instead: the same attention read (its masses), the
  # places it should read from the part maps.
  by_parts = learning_attention.main(["--expected", "pose_parts", "--"] + argv)
  assert by_parts["expected"] == "pose_parts" and looked["expected"] == "keypoint_affine"
  for name, layer in by_parts["layers"].items():
    for key in ("garment_mass", "peak_mass"):
      np.testing.assert_allclose(layer[key], looked["layers"][name][key], rtol=1e-5, err_msg=key)
    assert 0 <= layer["near_mass"] <= 1 and layer["expected_shift"] >= 0, name
    # The places are the part maps', not the all-keypoint fit's: across poses they move elsewhere.
    assert abs(layer["expected_shift"] - looked["layers"][name]["expected_shift"]) > 1e-3, name
  # A named checkpoint step is the one read back; a step the run did not save is refused.
  at_step = learning_attention.main(["--checkpoint_step", "2", "--"] + argv)
  assert at_step["step"] == 2 and at_step["layers"] == looked["layers"]
  with pytest.raises(FileNotFoundError, match=r"no checkpoint at step 7 .* holds steps \[2\]"):
    learning_attention.main(["--checkpoint_step", "7", "--"] + argv)

  # One cross-attention layer trained by regression on the same data (learning_copy_pairs): the
  # same held-out pairs and references, a curve per position code, the code's projections extra.
  copy_json = tmp_path / "copy_pairs.json"
  copied = learning_copy_pairs.main(["--json", str(copy_json), "--eval_every", "1", "--"] + argv)
  assert json.loads(copy_json.read_text()) == json.loads(json.dumps(copied))
  assert copied["eval_ids"] == saved["eval_ids"]
  assert (copied["reference"]["copy_garment_input"]["per_example"]
          == saved["reference"]["copy_garment_input"]["per_example"])
  assert set(copied["runs"]) == {"none", "fourier"}
  for position, run in copied["runs"].items():
    assert [c["step"] for c in run["curve"]] == [0, 1, 2], position
    assert all(np.isfinite(c["train_loss"]) for c in run["curve"][1:]), position
    assert run["curve"][-1]["pattern_corr_garment"] == run["pattern_corr_garment"], position
    assert all(np.isfinite(run[m]) for m in metric_names), position
  assert copied["runs"]["fourier"]["params"] > copied["runs"]["none"]["params"]

  # --eval_split=train scores training pairs with the same finished run; FID/KID with a stand-in
  # for Inception pool3.
  from tryon_jax.eval import fid as fid_lib  # pylint: disable=g-import-not-at-top
  weights, features = support.stand_in_inception(monkeypatch, tmp_path)
  train_argv = ["--workdir", str(tmp_path / "work"), "--out", str(tmp_path / "train"),
                "--variants", "parallel", "--eval_split", "train", "--inception_weights", weights,
                "--noise_garments", "0.5"]
  on_train = learning.main(train_argv + TINY)
  train_ids = set(_record_ids(str(tmp_path / "work" / "data" / "records_train")))
  assert on_train["eval_split"] == "train" and len(on_train["eval_ids"]) == 3
  assert set(on_train["eval_ids"]) <= train_ids
  made_train = synthetic.read_settings(str(tmp_path / "work" / "data" / "raw_train"), "train")
  assert on_train["eval_noise_garment"] == [  # which scored training pairs wear noise
      synthetic_render.render_example(int(pair_id[:6]), resolution=32, seed=made_train["seed"],
                                      noise_garments=0.5).meta["pattern"] == "noise"
      for pair_id in on_train["eval_ids"]]
  assert "eval_noise_garment" not in saved  # the held-out pairs keep their patterns
  run = on_train["variants"]["parallel"]
  assert run["train_seconds"] == results["variants"]["parallel"]["train_seconds"]
  assert all(np.isfinite(run[m]) for m in metric_names)
  # Other pairs (ids restart at 0 in each split, so they cannot tell the splits apart):
  assert run["per_example"]["psnr_garment"] != saved["variants"]["parallel"]["per_example"][
      "psnr_garment"]
  # The grids' target columns (I_a, I_c, target, parallel; 32 px cells upscaled 4x by nearest
  # neighbour): the training split's first people, not the held-out ones.
  def column(grid_dir, col):
    cells = np.asarray(Image.open(grid_dir / "grid.png"))[::4, ::4]
    return np.stack([cells[32 * i:32 * i + 32, 32 * col:32 * col + 32] for i in range(3)])

  train_args = learning.parse_args(train_argv + TINY)
  first_train, _ = learning.eval_batch(learning.make_config("parallel", train_args, "unused"),
                                       learning.prepare_data(train_args), "train", 3)
  target, tryon = column(tmp_path / "train", 2), column(tmp_path / "train", 3)
  np.testing.assert_array_equal(target, learning.to_uint8(first_train["person"]))
  assert not np.array_equal(target, column(out, 2))
  # FID/KID are those of the outputs against the targets.
  fake, real = features(list(tryon)), features(list(target))
  np.testing.assert_allclose(run["fid"], fid_lib.fid_from_stats(
      fid_lib.stats_from_features(fake), fid_lib.stats_from_features(real)), rtol=1e-3)
  np.testing.assert_allclose(run["kid"], fid_lib.kid_from_features(fake, real).mean,
                             rtol=1e-3, atol=1e-3)
  assert run["fid"] > 0.01 and "inception_skipped" not in on_train


def _record_ids(records_dir: str) -> list[str]:
  from tryon_jax.data import schema, tfrecord  # pylint: disable=g-import-not-at-top
  return [schema.deserialize(raw).id for path in sorted(glob.glob(records_dir + "/*.tfrecord"))
          for _, raw in tfrecord.read_tfrecord(path)]


def test_loss_curve_of_a_resumed_run_keeps_the_rows_logged_after_the_resume(tmp_path):
  # Logged to step 5, stopped, resumed from the checkpoint at step 2: steps 3-6 are logged again.
  rows = [(s, 1.0) for s in range(1, 6)] + [(s, 2.0) for s in range(3, 7)]
  (tmp_path / "metrics.jsonl").write_text(
      "".join(json.dumps({"step": s, "loss": v, "lr": 0.1}) + "\n" for s, v in rows))
  assert learning.read_curve(str(tmp_path)) == [(1, 1.0), (2, 1.0), (3, 2.0), (4, 2.0), (5, 2.0),
                                                 (6, 2.0)]
  assert learning.read_curve(str(tmp_path / "absent")) == []


def test_a_run_past_the_asked_step_is_scored_at_its_checkpoint_there_not_trained(tmp_path,
                                                                                monkeypatch):
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from tryon_jax.train import checkpoint as checkpoint_lib  # pylint: disable=g-import-not-at-top
  from tryon_jax.train import loop  # pylint: disable=g-import-not-at-top
  workdir = tmp_path / "parallel"
  ckpt = checkpoint_lib.Checkpointer(str(workdir / "checkpoints"), max_to_keep=None)
  for step in (2, 4):
    ckpt.save(step, {"w": jnp.full((2,), float(step))})
  ckpt.close()
  monkeypatch.setattr(loop, "train", lambda *a, **k: pytest.fail("trained a run already past"))
  args = learning.parse_args(["--workdir", str(tmp_path)] + TINY)
  config = learning.make_config("parallel", args, train_glob="unused")
  assert config.train.num_steps == 2
  assert learning.train_variant(config, str(workdir)) is None  # no time: step 2 was not its last
  config.train.num_steps = 3
  with pytest.raises(FileNotFoundError, match=r"past step 3 .* holds steps \[2, 4\]"):
    learning.train_variant(config, str(workdir))


def test_a_resumed_run_is_timed_over_the_steps_its_process_trained(tmp_path, monkeypatch):
  # A process stopped at step 2 wrote no time; the resumed one trains steps 3-4 in 8 s.
  import types  # pylint: disable=g-import-not-at-top
  from tryon_jax.train import loop  # pylint: disable=g-import-not-at-top
  clock = iter([100.0, 108.0])  # learning's own clock: the time module stays as it is
  monkeypatch.setattr(learning, "time", types.SimpleNamespace(perf_counter=lambda: next(clock)))
  monkeypatch.setattr(loop, "train", lambda *a, **k: types.SimpleNamespace(step=4, start_step=2))
  args = learning.parse_args(["--workdir", str(tmp_path)] + TINY + ["--steps", "4"])
  config = learning.make_config("parallel", args, train_glob="unused")
  assert config.train.num_steps == 4
  assert learning.train_variant(config, str(tmp_path)) == (8.0, 2)
  # Kept: the finished run is reported again without training.
  monkeypatch.setattr(loop, "train", lambda *a, **k: pytest.fail("trained a finished run"))
  assert learning.train_variant(config, str(tmp_path)) == (8.0, 2)


def test_garment_metrics_score_a_perfect_output_best():
  rng = np.random.default_rng(0)
  target = rng.uniform(-1, 1, (2, 16, 16, 3)).astype(np.float32)
  masks = np.zeros((2, 16, 16), bool)
  masks[:, 4:12, 4:12] = True
  perfect = learning.garment_metrics(target, target, masks)
  noisy = learning.garment_metrics(np.clip(target + 0.3 * rng.standard_normal(target.shape), -1, 1),
                                   target, masks)
  assert perfect["hist_l1_garment"] == 0 and perfect["ssim_garment"] > 0.99
  assert noisy["psnr_garment"] < perfect["psnr_garment"]
  assert noisy["hist_l1_garment"] > 0.1 and noisy["ssim_garment"] < 0.9
  assert perfect["detail_corr_garment"] > 0.999 and noisy["detail_corr_garment"] < 0.95


def test_detail_correlation_scores_placement_not_colour_or_contrast():
  rng = np.random.default_rng(1)
  target = rng.uniform(0, 1, (40, 3))
  assert abs(learning.detail_correlation(0.5 * target + 0.2, target) - 1) < 1e-9  # any contrast
  assert abs(learning.detail_correlation(1 - target, target) + 1) < 1e-9  # the pattern inverted
  flat = np.broadcast_to(target.mean(0), target.shape)
  assert learning.detail_correlation(flat, target) == 0.0  # the right colour, no pattern
  # Hand-computed: two pixels, one channel varying.
  pred = np.array([[0.0, 0, 0], [1.0, 0, 0]])
  targ = np.array([[0.0, 0, 0], [0.5, 0.5, 0]])
  # centred: pred (-.5,0,0), (.5,0,0); target (-.25,-.25,0), (.25,.25,0) -> .25 / sqrt(.5 * .25)
  assert abs(learning.detail_correlation(pred, targ) - 0.25 / np.sqrt(0.5 * 0.25)) < 1e-12


def test_pattern_correlation_scores_the_pattern_beyond_the_flat_twin():
  rng = np.random.default_rng(2)
  yy, xx = np.mgrid[0:16, 0:16] / 16
  shading = 0.3 * (xx + yy)[..., None] - 0.6  # smooth cloth shading, in [-1, 1] pixel units
  twin = np.broadcast_to(shading + np.array([0.2, -0.1, 0.0]), (2, 16, 16, 3)).copy()
  stripes = 0.3 * np.sign(np.sin(2 * np.pi * xx / 0.25))[..., None]  # a 4 px period
  target = twin + stripes
  masks = np.zeros((2, 16, 16), bool)
  masks[:, 2:14, 2:14] = True

  def score(pred):  # the study's images are float32
    return learning.garment_metrics(pred.astype(np.float32), target.astype(np.float32), masks,
                                    twin.astype(np.float32))["pattern_corr_garment"]

  assert score(target) > 0.999
  assert score(twin + 0.2 + 0.5 * stripes) > 0.999  # another colour, weaker stripes: in place
  # No pattern, whatever the colour and contrast of the shading:
  assert score(twin) == 0.0 and score(twin + 0.2) == 0.0 and score(0.5 * twin - 0.1) == 0.0
  assert score(learning.mean_colour_targets(target, masks)) == 0.0
  assert score(twin + np.roll(stripes, 2, axis=1)) < -0.5  # the stripes out of place by half
  # pattern_rms: how much pattern is drawn, in place or not; none for the twin at any colour.
  def rms(pred):
    return learning.garment_metrics(pred.astype(np.float32), target.astype(np.float32), masks,
                                    twin.astype(np.float32))["pattern_rms_garment"]

  assert abs(rms(target) - 0.3 / 2) < 0.01  # stripes of +-0.3 in [-1, 1]: 0.15 in [0, 1] units
  assert abs(rms(twin + np.roll(stripes, 2, axis=1)) - rms(target)) < 0.01
  assert abs(rms(twin + 0.5 * stripes) - rms(target) / 2) < 0.01
  assert rms(twin + 0.2) < 1e-6 and rms(learning.mean_colour_targets(target, masks)) < 1e-6
  noisy = twin + 0.3 * rng.standard_normal(twin.shape)  # detail, but not the pattern
  assert abs(score(noisy)) < 0.3
  # detail_corr counts the shading too: the flat twin scores high there, 0 here.
  assert learning.garment_metrics(twin, target, masks)["detail_corr_garment"] > 0.2
  assert "pattern_corr_garment" not in learning.garment_metrics(twin, target, masks)


def test_soft_flat_twin_blurs_each_image_and_channel_on_its_own():
  twin = np.zeros((2, 8, 8, 3), np.float32)
  twin[0, :, :, 0] = 0.5  # image 0: flat red, nothing in its other channels
  twin[1, ::2, ::2, 2] = 1.0  # image 1: a fine blue dot grid
  soft = learning.soft_flat_twin(twin)
  assert soft.shape == twin.shape and soft.dtype == np.float32
  np.testing.assert_allclose(soft[0], twin[0], atol=1e-6)  # a flat image stays as it is
  assert np.ptp(soft[1, ..., 2]) < 0.5 * np.ptp(twin[1, ..., 2])  # the dots are softened
  np.testing.assert_allclose(soft[1, ..., 2].mean(), twin[1, ..., 2].mean(), rtol=0.05)
  assert np.abs(soft[1, ..., :2]).max() == 0.0  # nothing leaks across channels or images


def test_other_garments_swap_only_what_i_c_brings():
  batch = {k: np.arange(3 * 2).reshape(3, 2) + 10 * i
           for i, k in enumerate(learning.GARMENT_KEYS + ("person", "agnostic", "person_pose"))}
  other = learning.other_garments(batch)
  for k in learning.GARMENT_KEYS:  # pair i gets pair i - 1's garment and garment pose
    np.testing.assert_array_equal(other[k], batch[k][[2, 0, 1]])
  for k in ("person", "agnostic", "person_pose"):
    assert other[k] is batch[k]
  assert batch["garment"][0, 0] == 0  # the input batch is left as it was


def test_flat_twins_of_other_pairs_or_masks_are_refused(monkeypatch):
  batch = {"id": np.array([b"p0", b"p1"]), "person": np.zeros((2, 4, 4, 3), np.float32)}
  masks = np.zeros((2, 4, 4), bool)
  masks[:, 1:3, 1:3] = True
  twins = {"id": np.array([b"p0", b"p1"]), "person": np.ones((2, 4, 4, 3), np.float32)}
  made = {}
  monkeypatch.setattr(learning, "eval_batch",
                      lambda config, data, split, num: (made["batch"], made["masks"]))
  data = {"test_flat": ("/w/records_test_flat/*.tfrecord", "/w/raw_test_flat")}
  made.update(batch=twins, masks=masks)
  np.testing.assert_array_equal(learning.flat_twin_targets(None, data, "test", batch, masks),
                                twins["person"])
  for other in ({"batch": dict(twins, id=np.array([b"p0", b"p7"]))}, {"masks": ~masks}):
    made.update({"batch": twins, "masks": masks, **other})
    with pytest.raises(RuntimeError, match="records_test_flat.*not the scored pairs of test"):
      learning.flat_twin_targets(None, data, "test", batch, masks)


def test_a_workdir_made_with_another_pattern_scale_pose_control_or_noise_is_refused(tmp_path):
  def args(pattern_scale, same_pose=False):
    return argparse.Namespace(pattern_scale=pattern_scale, same_pose=same_pose)

  learning._check_made_with(str(tmp_path), "test", args(4.0), 0.5)  # nothing made yet: fine
  (tmp_path / "test_synthetic.json").write_text(json.dumps({"seed": 0}))  # made before the flags
  learning._check_made_with(str(tmp_path), "test", args(1.0), 0.0)
  with pytest.raises(SystemExit, match="--pattern_scale 4.0: .*made with 1.0"):
    learning._check_made_with(str(tmp_path), "test", args(4.0), 0.0)
  with pytest.raises(SystemExit, match="--same_pose True: .*made with False"):
    learning._check_made_with(str(tmp_path), "test", args(1.0, same_pose=True), 0.0)
  with pytest.raises(SystemExit, match="--noise_garments 0.5: .*made with 0.0"):
    learning._check_made_with(str(tmp_path), "test", args(1.0), 0.5)


def test_the_flat_twin_of_the_scored_split_has_as_many_pairs_as_the_split(tmp_path, monkeypatch):
  # The training records are written round-robin into several shards, read one after another, so
  # the first --num_test read are not ids 0..num_test-1; a twin set of the same size shards alike.
  made = {}

  def generate(raw, num, **kwargs):
    made[os.path.basename(raw)] = (num, kwargs["flat_garments"], kwargs["noise_garments"])

  monkeypatch.setattr(synthetic, "generate", generate)
  monkeypatch.setattr(viton_hd, "convert", lambda *a, **k: {"written": 0, "skipped": 0})
  for eval_split in ("train", "test"):
    made.clear()
    args = learning.parse_args(["--workdir", str(tmp_path / eval_split), "--num_train", "40",
                                "--num_test", "3", "--eval_split", eval_split,
                                "--noise_garments", "0.5"])
    learning.prepare_data(args)
    assert made == {"raw_train": (40, False, 0.5), "raw_test": (3, False, 0.0),
                    f"raw_{eval_split}_flat": ({"train": 40, "test": 3}[eval_split], True, 0.0)}


@pytest.mark.parametrize("share", ["-0.1", "1.5"])
def test_a_noise_share_outside_0_1_is_refused_before_anything_is_made(tmp_path, share):
  with pytest.raises(SystemExit, match=f"--noise_garments {float(share)}: a share, in \\[0, 1\\]"):
    learning.main(["--workdir", str(tmp_path / "work"), "--out", str(tmp_path / "out"),
                   "--noise_garments", share] + TINY)
  assert not (tmp_path / "work").exists() and not (tmp_path / "out").exists()


def test_pose_shift_is_the_mean_upper_body_keypoint_distance_over_shared_keypoints():
  from tryon_jax.data import labels  # pylint: disable=g-import-not-at-top
  k = labels.NUM_KEYPOINTS
  person = np.full((3, k, 2), 0.5, np.float32)
  garment = person.copy()
  upper = [labels.COCO18_NAMES.index(n) for n in learning.UPPER_BODY_KEYPOINTS]
  garment[0, upper, 0] += 0.1  # pair 0: every upper-body keypoint 0.1 to the right
  garment[1, upper[:2], 1] += 0.3  # pair 1: two keypoints moved 0.3, the rest in place ...
  garment[1, labels.COCO18_NAMES.index("nose")] = 0.0  # ... and the head does not count
  mask = np.ones((3, k), np.float32)
  garment_mask = mask.copy()
  garment_mask[1, upper[2:]] = 0  # pair 1: only the two moved keypoints are seen in I_c
  garment_mask[2] = 0  # pair 2: a lay-flat garment, no pose
  shift = learning.pose_shift({"person_pose": person, "garment_pose": garment,
                               "person_pose_mask": mask, "garment_pose_mask": garment_mask})
  np.testing.assert_allclose(shift[:2], [0.1, 0.3], rtol=1e-6)
  assert np.isnan(shift[2])


def test_trend_with_pose_shift_splits_at_the_median_and_ranks():
  shift = [0.4, 0.1, np.nan, 0.3, 0.2]  # the NaN pair (no pose) is left out
  trend = learning.trend_with_pose_shift({"grows": [4.0, 1.0, 99.0, 3.0, 2.0],
                                          "falls": [-8.0, 0.0, 99.0, -4.0, -1.0]}, shift)
  assert {k: trend["grows"][k] for k in ("spearman", "small", "large")} == {
      "spearman": 1.0, "small": 1.5, "large": 3.5}
  assert trend["falls"]["spearman"] == -1.0
  assert (trend["falls"]["small"], trend["falls"]["large"]) == (-0.5, -6.0)
  assert trend["grows"]["spearman_p"] == trend["falls"]["spearman_p"] < 0.01  # 4 pairs, in order
  other = learning.trend_with_pose_shift({"noise": [1.0, 1.0, 0.0, 2.0, 2.0],
                                          "same": [0.5] * 5}, [0.4, 0.1, None, 0.3, 0.2])
  assert other["noise"]["spearman"] == 0.0 and other["noise"]["spearman_p"] == 1.0
  assert other["same"] == {"spearman": None, "spearman_p": None, "small": 0.5, "large": 0.5}
  # Every shift the same: there is no trend and no "small" half to report.
  still = learning.trend_with_pose_shift({"grows": [4.0, 1.0, 3.0]}, [0.0, 0.0, 0.0])
  assert still["grows"] == {"spearman": None, "spearman_p": None, "small": None,
                            "large": pytest.approx(8 / 3)}


def test_learning_config_keeps_demo_networks_and_paper_configs_keep_paper_diffusion():
  from configs import base128, demo, learning as learning_config  # pylint: disable=g-import-not-at-top
  for variant in ("parallel", "concat"):
    study, small = learning_config.get_config(variant), demo.get_config(variant)
    assert study.model.to_dict() == small.model.to_dict(), variant  # only training settings differ
    assert study.model.variant == variant
    assert study.diffusion.train_noise_aug_max < 1.0
    assert study.diffusion.logsnr_shift < 0 and study.diffusion.logsnr_shift_interpolated
  for paper in (base128.get_config().diffusion, demo.get_config().diffusion):
    assert paper.train_noise_aug_max == 1.0  # paper: t_na ~ U[0, 1]
    assert paper.logsnr_shift == 0.0  # the unshifted cosine schedule


def test_planted_attention_starts_on_each_tokens_own_place_in_model_and_ema():
  import jax  # pylint: disable=g-import-not-at-top
  from flax import nnx  # pylint: disable=g-import-not-at-top
  from tryon_jax.models import layers  # pylint: disable=g-import-not-at-top
  from tryon_jax.parallel import sharding  # pylint: disable=g-import-not-at-top
  from tryon_jax.train import state as state_lib  # pylint: disable=g-import-not-at-top
  import test_train_support  # pylint: disable=g-import-not-at-top
  config = test_train_support.tiny_config()
  config.model.cross_attention_position = "fourier"
  config.model.head_dim = 16  # the 8-token grid has 16 position features
  spec = state_lib.state_spec(config, sharding.make_mesh(config.mesh.shape))
  fresh = state_lib.init_state(config, spec)
  planted = learning.plant_place_attention(2.0)(spec, fresh)
  model = nnx.merge(spec.graphdef, planted).model
  attention = [m for _, m in nnx.iter_modules(model) if isinstance(m, layers.CrossAttention)]
  assert len(attention) == 2  # one encoder and one decoder block at the 8-token level
  for m in attention:
    features = layers.grid_fourier_features(m.grid_side, m.grid_side)
    q = features @ m.position_q.kernel[...]
    k = features @ m.position_k.kernel[...]
    logits = np.asarray(q @ k.T)  # one head
    np.testing.assert_array_equal(logits.argmax(-1), np.arange(m.grid_side ** 2))
    np.testing.assert_allclose(np.diag(logits), 4.0 * np.sum(np.asarray(features) ** 2, -1),
                               rtol=1e-5)
  # The EMA starts equal to the planted model; everything but the position projections is the
  # fresh initialisation.
  ema, params = nnx.to_flat_state(planted["ema"]), nnx.to_flat_state(planted["model"])
  for (path, e), (path2, p) in zip(ema, params):
    assert path == path2
    np.testing.assert_array_equal(np.asarray(e.get_value()), np.asarray(p.get_value()))
  before = dict(nnx.to_flat_state(fresh["model"]))
  changed = [path for path, p in params
             if not np.array_equal(np.asarray(p.get_value()), np.asarray(before[path].get_value()))]
  assert changed and all(path[-2] in ("position_q", "position_k") for path in changed)
  config.model.head_dim = 8
  spec = state_lib.state_spec(config, sharding.make_mesh(config.mesh.shape))
  with pytest.raises(SystemExit, match="head_dim 8 < 16"):
    learning.plant_place_attention(2.0)(spec, state_lib.init_state(config, spec))
  config.model.cross_attention_position = "none"
  config.model.head_dim = 16
  spec = state_lib.state_spec(config, sharding.make_mesh(config.mesh.shape))
  with pytest.raises(SystemExit, match="cross_attention_position=fourier"):
    learning.plant_place_attention(2.0)(spec, state_lib.init_state(config, spec))
  del jax
