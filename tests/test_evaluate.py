"""--mode=eval: the real CLI on a tiny trained stage writes well-formed JSON and TensorBoard with
SSIM/PSNR in range and FID/KID skipped with the reason; with stand-in networks whose output is
known, the metrics are those of the right images (paired, unpaired, lone SR stage)."""

from __future__ import annotations

import glob
import json
import math
import os
import shutil
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_inference_support as support  # pylint: disable=wrong-import-position

from configs import demo  # pylint: disable=wrong-import-position
from tryon_jax.eval import evaluate  # pylint: disable=wrong-import-position
from tryon_jax.inference import checkpoints  # pylint: disable=wrong-import-position
from tryon_jax.inference import inputs  # pylint: disable=wrong-import-position
from tryon_jax.inference import options  # pylint: disable=wrong-import-position
from tryon_jax.inference import tryon  # pylint: disable=wrong-import-position


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  return support.shared_setup(tmp_path_factory)


@pytest.fixture(autouse=True)
def no_default_inception_weights(tmp_path, monkeypatch):
  """The default weights path must not depend on this machine's ~/.cache (here and in children)."""
  monkeypatch.setenv("TRYON_INCEPTION_NPZ", str(tmp_path / "no_inception_here.npz"))


def _own_workdir(setup, tmp_path) -> str:
  """A copy of the trained base workdir (eval writes eval/ and tb/ into its workdir)."""
  workdir = str(tmp_path / "workdir")
  shutil.copytree(setup["base"], workdir)
  return workdir


def test_cli_eval_writes_json_and_tensorboard_and_says_fid_was_skipped(setup, tmp_path):
  workdir = _own_workdir(setup, tmp_path)
  proc = support.run_main(["--mode=eval", "--config=configs/demo.py", f"--workdir={workdir}",
                           f"--records={setup['data']['records']}", "--steps=2",
                           "--batch_size=3"])  # 4 records: the second batch is padded
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "FID/KID skipped" in proc.stderr and "no_inception_here.npz" in proc.stderr
  assert "python -m tryon_jax.eval.convert_inception" in proc.stderr  # how to enable them
  line = json.loads(proc.stdout.strip().splitlines()[-1])
  path = os.path.join(workdir, "eval", "base128_step2_paired.json")
  assert line["eval"] == path
  with open(path, encoding="utf-8") as f:
    results = json.load(f)
  assert results["setting"] == "paired" and results["num_examples"] == 4
  assert results["psnr_exact_matches"] == 0
  assert results["resolution"] == 16
  metrics = results["metrics"]
  assert -1.0 <= metrics["ssim"] <= 1.0 and metrics["ssim"] == line["ssim"]
  assert math.isfinite(metrics["psnr"]) and 0.0 < metrics["psnr"] < 100.0
  assert "fid" not in metrics and "--inception_weights" in results["skipped"]["fid"]
  assert results["skipped"]["kid"] == results["skipped"]["fid"]
  assert results["stages"] == [{
      "stage": "base128", "checkpoint": os.path.join(workdir, "checkpoints", "2"), "step": 2,
      "sampler": "ddpm", "steps": 2, "guidance_weight": 2.0}]
  assert not [n for n in os.listdir(os.path.join(workdir, "eval")) if n.endswith(".tmp")]
  content = b"".join(open(p, "rb").read()
                     for p in glob.glob(os.path.join(workdir, "tb", "events.out.tfevents.*")))
  for tag in (b"eval/base128_step2_paired/ssim", b"eval/base128_step2_paired/psnr",
              b"eval/base128_step2_paired/person_garment_tryon"):
    assert tag in content, tag


def test_ssim_psnr_of_identical_and_of_different_images():
  rng = np.random.default_rng(0)
  a = rng.integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
  ssim, psnr = evaluate.ssim_psnr(a, a)
  np.testing.assert_allclose(ssim, 1.0, atol=1e-5)
  assert np.all(np.isinf(psnr))
  b = np.clip(a.astype(int) + 16, 0, 255).astype(np.uint8)
  ssim, psnr = evaluate.ssim_psnr(a, b)
  assert np.all(ssim < 1.0)
  # an offset of 16 on every unclipped pixel: MSE <= (16/255)^2, so PSNR >= 24 dB.
  assert np.all(psnr >= 20 * np.log10(255 / 16) - 1e-3)


# ------------------------------------------------------------------------------ stand-ins


@pytest.fixture
def stand_in_cascade(monkeypatch):
  monkeypatch.setattr(checkpoints, "build_cascade", support.stand_in_build_cascade)


def _expected(records, refs, resolution, make_output):
  ssim, psnr = [], []
  for ref in refs:
    ex = records.example(ref, resolution)
    s, p = evaluate.ssim_psnr(make_output(ex)[None], tryon.to_uint8(ex["person"])[None])
    ssim.append(float(s[0]))
    psnr.append(float(p[0]))
  return np.mean(ssim), np.mean(psnr)


def test_unpaired_pairs_file_has_no_ssim_psnr(setup, tmp_path, stand_in_cascade):
  workdir = _own_workdir(setup, tmp_path)
  pairs = tmp_path / "test_pairs.txt"
  pairs.write_text("000000_00.jpg 000001_01.jpg\n000001_00.jpg 000002_01.jpg\n")
  opts = options.EvalOptions(records=setup["data"]["records"], pairs=str(pairs))
  results = evaluate.evaluate(demo.get_config(), workdir, opts)
  assert results["setting"] == "unpaired" and results["num_examples"] == 2
  assert results["metrics"] == {}  # no ground truth, and no Inception weights
  assert set(results["skipped"]) == {"ssim", "psnr", "fid", "kid"}
  assert results["name"] == "base128_step2_unpaired"


def test_lone_sr_stage_is_scored_on_the_downsampled_ground_truth(
    setup, tmp_path, stand_in_cascade):
  workdir = _own_workdir(setup, tmp_path)
  opts = options.EvalOptions(records=setup["data"]["records"], ckpt={"sr1024": setup["sr"]},
                             batch_size=4)
  results = evaluate.evaluate(demo.get_config(), workdir, opts)
  # tiny sr1024: data.resolution 64, lowres_factor 4 -> starts from the photo at 16 px.
  assert results["resolution"] == 64 and results["setting"] == "paired"
  assert results["stages"][0]["stage"] == "sr1024"
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from tryon_jax.diffusion import conditioning  # pylint: disable=g-import-not-at-top

  def upsampled_lowres(ex):
    small = conditioning.resize(jnp.asarray(ex["person"])[None], 16)
    return tryon.to_uint8(np.clip(np.asarray(conditioning.resize(small, 64))[0], -1, 1))

  records = inputs.RecordSet(setup["data"]["records"])
  ssim, psnr = _expected(records, records.paired(), 64, upsampled_lowres)
  np.testing.assert_allclose(results["metrics"]["ssim"], ssim, rtol=1e-3)
  np.testing.assert_allclose(results["metrics"]["psnr"], psnr, rtol=1e-3)
  assert psnr < 60.0  # a blurred copy of the photo, not the photo
  with pytest.raises(options.OptionError, match="can only be evaluated paired"):
    evaluate.evaluate(demo.get_config(), workdir, options.EvalOptions(
        records=setup["data"]["records"], ckpt={"sr1024": setup["sr"]}, unpaired=True))


def test_paired_metrics_are_those_of_the_outputs_against_their_own_photos(
    setup, tmp_path, stand_in_cascade, monkeypatch):
  """SSIM/PSNR per pair and FID/KID over the set, with a stand-in feature extractor."""
  from tryon_jax.eval import fid as fid_lib  # pylint: disable=g-import-not-at-top
  weights, features = support.stand_in_inception(monkeypatch, tmp_path)
  workdir = _own_workdir(setup, tmp_path)
  opts = options.EvalOptions(records=setup["data"]["records"], batch_size=3, max_examples=3,
                             inception_weights=str(weights), name="oracle")
  results = evaluate.evaluate(demo.get_config(), workdir, opts)
  assert results["num_examples"] == 3 and results["setting"] == "paired"
  assert os.path.isfile(os.path.join(workdir, "eval", "oracle.json"))
  records = inputs.RecordSet(setup["data"]["records"])
  refs = records.paired()[:3]
  ssim, psnr = _expected(records, refs, 16, lambda ex: tryon.to_uint8(ex["agnostic"]))
  np.testing.assert_allclose(results["metrics"]["ssim"], ssim, rtol=1e-4)
  np.testing.assert_allclose(results["metrics"]["psnr"], psnr, rtol=1e-4)
  examples = [records.example(r, 16) for r in refs]
  fake = features([tryon.to_uint8(e["agnostic"]) for e in examples])  # the oracle's output
  real = features([tryon.to_uint8(e["person"]) for e in examples])
  want_fid = fid_lib.fid_from_stats(fid_lib.stats_from_features(fake),
                                    fid_lib.stats_from_features(real))
  want_kid = fid_lib.kid_from_features(fake, real)
  np.testing.assert_allclose(results["metrics"]["fid"], want_fid, rtol=1e-3)
  np.testing.assert_allclose(results["metrics"]["kid"], want_kid.mean, rtol=1e-3, atol=1e-3)
  assert results["metrics"]["fid"] > 0.01  # agnostic images are not the photos
  assert results["skipped"] == {}
