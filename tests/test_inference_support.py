"""Shared helpers of the inference/eval tests (no tests here): synthetic inputs, records, and tiny
real checkpoints made by the training code."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_train_support as train_support  # pylint: disable=wrong-import-position

REPO = train_support.REPO
SYNTHETIC_RESOLUTION = 64  # the generator's photos: 48 x 64
RECORD_RESOLUTION = 32  # records: the tiny base stage (16 px) resizes them


def shared_setup(tmp_path_factory) -> dict:
  """make_data + make_checkpoints once per pytest session (process): the inference and the eval
  test modules both use it. Made in a temporary folder renamed into place when complete."""
  import tempfile  # pylint: disable=g-import-not-at-top
  base = tmp_path_factory.getbasetemp()
  final = os.path.join(base, "tryon_inference_setup")
  if not os.path.isdir(final):
    root = tempfile.mkdtemp(prefix=".tryon_inference_setup-", dir=base)
    data = make_data(root)
    make_checkpoints(root, data["records"])
    os.rename(root, final)
  data = make_data_paths(final)
  return {"root": final, "data": data, "base": os.path.join(final, "base"),
          "sr": os.path.join(final, "sr1024")}


def make_data_paths(root: str) -> dict:
  """The paths make_data returns, for a root made earlier."""
  from data_pipelines import synthetic  # pylint: disable=g-import-not-at-top
  raw = os.path.join(root, "raw")
  person = synthetic.example_paths(raw, "train", 0)
  garment = synthetic.example_paths(raw, "train", 1)
  return {
      "raw": raw, "records": os.path.join(root, "records", "train-*.tfrecord"),
      "person": person["image"], "person_parse": person["image-parse-v3"],
      "person_pose": person["openpose_json"], "garment": garment["cloth"],
      "garment_mask": garment["cloth-mask"], "garment_pose": garment["cloth-openpose_json"],
  }


def make_data(root: str, num: int = 4) -> dict:
  """Synthetic VITON-HD-layout pairs and their records. Returns paths: raw split dir, records
  glob, and the files of pair 0's person with pair 1's garment (an unpaired photo request)."""
  from data_pipelines import synthetic  # pylint: disable=g-import-not-at-top
  from data_pipelines import viton_hd  # pylint: disable=g-import-not-at-top
  raw = os.path.join(root, "raw")
  synthetic.generate(raw, num=num, resolution=SYNTHETIC_RESOLUTION, seed=0)
  records = os.path.join(root, "records")
  summary = viton_hd.convert(raw, "train", records, resolution=RECORD_RESOLUTION, progress=False)
  assert summary["written"] == num, summary
  return make_data_paths(root)


def make_checkpoints(root: str, records_glob: str) -> dict:
  """Real tiny stages in ROOT/base (two training steps of the tiny base stage, by the training
  loop on the records) and ROOT/sr1024 (an initialized tiny sr1024 stage), made in one child
  process so the compiled programs come from the tests' shared persistent cache."""
  proc = train_support.run_python([os.path.abspath(__file__), root, records_glob], timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return {"base": os.path.join(root, "base"), "sr": os.path.join(root, "sr1024")}


def _make_checkpoints_here(root: str, records_glob: str) -> None:
  from absl import flags  # pylint: disable=g-import-not-at-top
  from tryon_jax.train import loop  # pylint: disable=g-import-not-at-top
  flags.FLAGS.mark_as_parsed()
  config = train_support.tiny_config(num_steps=2, checkpoint_every_steps=2)
  config.data.path = records_glob
  loop.train(config, os.path.join(root, "base"))
  save_initial_checkpoint(os.path.join(root, "sr1024"), tiny_sr1024_config())


def tiny_sr1024_config():
  """configs/sr1024.py shrunk to a two-level Efficient-UNet (x4: the 16 px base -> 64 px)."""
  from configs import sr1024  # pylint: disable=g-import-not-at-top
  c = sr1024.get_config()
  c.model.channels = (8, 16)
  c.model.blocks = (1, 1)
  c.model.cond_dim = 16
  c.model.resolution = 16
  c.data.resolution = 64
  c.data.crop_size = 16
  c.data.lowres_size = 4
  c.diffusion.sample_steps = 2
  return c


def save_initial_checkpoint(workdir: str, config) -> str:
  """A checkpoint of a freshly initialized train state, written by the training code's own
  Checkpointer (same layout as a trained one; no train step to compile). Returns the workdir."""
  from tryon_jax.parallel import sharding  # pylint: disable=g-import-not-at-top
  from tryon_jax.train import checkpoint as checkpoint_lib  # pylint: disable=g-import-not-at-top
  from tryon_jax.train import state as state_lib  # pylint: disable=g-import-not-at-top
  spec = state_lib.state_spec(config, sharding.make_mesh(config.mesh.shape, config.mesh.axes))
  state = state_lib.init_state(config, spec)
  ckpt = checkpoint_lib.Checkpointer(os.path.join(workdir, "checkpoints"), max_to_keep=1,
                                     async_save=False)
  ckpt.save(1, state, config_json=json.loads(config.to_json_best_effort()))
  ckpt.close()
  return workdir


def oracle(config, source: str):
  """eps-model whose denoised estimate is cond[source] (0 under the null cond): with guidance
  weight 1 and no noise augmentation the sample is cond[source] itself."""
  from tryon_jax.diffusion import schedules  # pylint: disable=g-import-not-at-top
  schedule = schedules.make_schedule(config.diffusion)

  def model_fn(x, t, cond):
    alpha, sigma = schedule.alpha_sigma(t)
    return (x - alpha[:, None, None, None] * cond[source]) / sigma[:, None, None, None]

  return model_fn


def stand_in_inception(monkeypatch, tmp_path) -> tuple[str, Callable]:
  """Replaces the Inception pool3 extractor (tryon_jax.eval.fid.load_feature_fn) with 4x4 colour
  thumbnails projected to 8 dims. Returns a weights path that exists (the scorers check for the
  file) and the stand-in: uint8 images [N, H, W, 3] -> features [N, 8]."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top
  from tryon_jax.eval import fid as fid_lib  # pylint: disable=g-import-not-at-top
  projection = np.random.default_rng(0).normal(size=(4 * 4 * 3, 8))

  def features(images):
    thumbs = np.stack([np.asarray(Image.fromarray(i).resize((4, 4), Image.BOX)) for i in images])
    return (thumbs.reshape(len(images), -1) / 255.0) @ projection

  weights = os.path.join(str(tmp_path), "stand_in_inception.npz")
  with open(weights, "wb") as f:
    f.write(b"stand-in")
  monkeypatch.setattr(fid_lib, "load_feature_fn", lambda path: features)
  return weights, features


def stand_in_build_cascade(ckpts, **_):
  """A replacement for checkpoints.build_cascade: each checkpoint's network becomes an oracle
  (base: output = the agnostic image; SR: output = its low-res input, upsampled)."""
  from tryon_jax.diffusion import cascade  # pylint: disable=g-import-not-at-top
  stages = []
  for ckpt in ckpts:
    source = "lowres" if "lowres" in tuple(ckpt.config.model.cond_images) else "agnostic"
    stages.append(cascade.Stage.from_model_fn(
        ckpt.config, oracle(ckpt.config, source), steps=2, guidance_weight=1.0, noise_aug=0.0,
        name=ckpt.stage))
  return cascade.Cascade(stages)


def run_main(args: list[str], timeout: float = 300):
  """``python -m tryon_jax.main ARGS`` in a child process (captured output)."""
  return train_support.run_python(["-m", "tryon_jax.main", *args], timeout=timeout)


def start_main(args: list[str]):
  """Like run_main but not waited for (to run several short children at once)."""
  import subprocess  # pylint: disable=g-import-not-at-top
  return subprocess.Popen([sys.executable, "-m", "tryon_jax.main", *args],
                          env=train_support.subprocess_env(), cwd=REPO, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)


if __name__ == "__main__":
  _make_checkpoints_here(sys.argv[1], sys.argv[2])
