"""Shared helpers of the train/main tests (no tests here): a tiny config and an in-memory dataset.

The dataset stands in for tryon_jax.data.pipeline where a test needs no records on disk: a Grain
pipeline of seeded random examples, checkpointable like the real one.
"""

from __future__ import annotations

import os
import subprocess
import sys

import grain
import ml_collections
import numpy as np

import suite_env

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.dirname(os.path.abspath(__file__))


def tiny_config(**train_overrides) -> ml_collections.ConfigDict:
  """configs/demo.py shrunk to a 16px, two-level Parallel-UNet (compiles in seconds)."""
  sys.path.insert(0, REPO) if REPO not in sys.path else None
  from configs import demo  # pylint: disable=g-import-not-at-top
  c = demo.get_config()
  m = c.model
  m.resolution = 16
  m.channels = (8, 16)
  m.person_blocks = (1, 1)
  m.garment_blocks = (1, 1)
  m.garment_decoder_levels = 1
  m.attention = (False, True)
  m.head_dim = 8
  m.pose_embed_dim = 8
  m.cond_dim = 16
  m.pool_heads = 2
  c.data.resolution = 16
  c.data.synthetic_num = 16
  c.diffusion.sample_steps = 2
  t = c.train
  t.batch_size = 8
  t.num_steps = 6
  t.warmup_steps = 2
  t.log_every_steps = 1
  t.checkpoint_every_steps = 2
  t.sample_every_steps = 0
  t.sample_num = 2
  t.sample_steps = 2
  t.max_to_keep = 3
  for k, v in train_overrides.items():
    setattr(t, k, v)
  return c


# The same overrides as command-line flags, for subprocess runs of tryon_jax.main.
TINY_FLAGS = [
    "--config.model.resolution=16", "--config.model.channels=(8,16)",
    "--config.model.person_blocks=(1,1)", "--config.model.garment_blocks=(1,1)",
    "--config.model.garment_decoder_levels=1", "--config.model.attention=(False,True)",
    "--config.model.head_dim=8", "--config.model.pose_embed_dim=8", "--config.model.cond_dim=16",
    "--config.model.pool_heads=2", "--config.data.resolution=16", "--config.data.synthetic_num=16",
    "--config.train.batch_size=8", "--config.train.warmup_steps=2",
    "--config.train.log_every_steps=1", "--config.train.sample_every_steps=0",
    "--config.train.sample_num=2", "--config.train.sample_steps=2",
]


def random_example(index: int, resolution: int = 16, keypoints: int = 18) -> dict:
  rng = np.random.default_rng(index)
  image = lambda: rng.uniform(-1, 1, (resolution, resolution, 3)).astype(np.float32)
  return {
      "person": image(), "agnostic": image(), "garment": image(),
      "person_pose": rng.uniform(0, 1, (keypoints, 2)).astype(np.float32),
      "person_pose_mask": (rng.uniform(size=keypoints) > 0.2).astype(np.float32),
      "garment_pose": rng.uniform(0, 1, (keypoints, 2)).astype(np.float32),
      "garment_pose_mask": (rng.uniform(size=keypoints) > 0.2).astype(np.float32),
  }


def fake_dataset(config, *, process_index: int, process_count: int, nan_from: int | None = None):
  """Per-host batches of random examples; batches from index ``nan_from`` on hold NaN images."""
  local = config.train.batch_size // process_count
  res = config.data.resolution

  def make(i):
    ex = random_example(int(i), res)
    if nan_from is not None and i >= nan_from * config.train.batch_size:
      ex["person"] = np.full_like(ex["person"], np.nan)
    return ex

  ds = grain.MapDataset.range(10**6)[process_index::process_count].map(make)
  return ds.batch(local, drop_remainder=True).to_iter_dataset()


def run_python(args: list[str], *, devices: int | None = None, timeout: float = 300,
               cwd: str = REPO) -> subprocess.CompletedProcess:
  """Runs ``python ARGS`` in a child (see subprocess_env) and returns it with captured output."""
  return subprocess.run([sys.executable, *args], env=subprocess_env(devices), cwd=cwd,
                        capture_output=True, text=True, timeout=timeout, check=False)


def subprocess_env(devices: int | None = None) -> dict:
  """Environment for a child python: repo + tests importable, and the suite's JAX settings
  (tests/suite_env.py: fast compiles, a shared compilation cache, optional fake CPU devices)."""
  env = suite_env.child_env(os.environ, devices)
  env["PYTHONPATH"] = os.pathsep.join([REPO, TESTS, env.get("PYTHONPATH", "")])
  return env
