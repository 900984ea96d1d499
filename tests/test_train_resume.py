"""End-to-end runs of ``python -m tryon_jax.main`` on the demo config (shrunk by overrides) with its
synthetic data: what a user watches, and a SIGKILLed run that resumes with exactly the losses of
an uninterrupted one."""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_train_support as support  # pylint: disable=wrong-import-position

NUM_STEPS = 8


def _command(workdir) -> list[str]:
  return ["-m", "tryon_jax.main", "--config=configs/demo.py", f"--workdir={workdir}",
          *support.TINY_FLAGS, f"--config.train.num_steps={NUM_STEPS}",
          "--config.train.checkpoint_every_steps=2",
          f"--config.train.sample_every_steps={NUM_STEPS}"]


def _losses(workdir) -> dict[int, float]:
  """step -> loss; a step logged twice (before a crash and after the resume) keeps the last."""
  losses = {}
  with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
    for line in f:
      record = json.loads(line)
      losses[record["step"]] = record["loss"]
  return losses


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("uninterrupted")
  proc = support.run_python(_command(workdir), timeout=600)
  assert proc.returncode == 0, proc.stderr[-5000:]
  return workdir, proc


def test_demo_generates_synthetic_records_once(uninterrupted):
  workdir, proc = uninterrupted
  assert glob.glob(os.path.join(workdir, "data", "records", "train-*-of-*.tfrecord"))
  assert "generating 16 synthetic pairs" in proc.stderr


def test_progress_lines_tensorboard_and_sample_grids(uninterrupted):
  workdir, proc = uninterrupted
  progress = [l for l in proc.stderr.splitlines() if f"/{NUM_STEPS} | loss" in l]
  assert len(progress) >= NUM_STEPS - 1
  assert all(k in progress[-1] for k in ("steps/s", "images/s", "ETA", "lr", "grad_norm"))
  assert "No checkpoint in" in proc.stderr
  assert "orbax-checkpoint-tmp" not in proc.stderr  # library chatter is filtered out
  events = glob.glob(os.path.join(workdir, "tb", "events.out.tfevents.*"))
  assert events and os.path.getsize(events[0]) > 0
  with open(events[0], "rb") as f:
    content = f.read()
  for tag in (b"train/loss", b"train/lr", b"train/grad_norm", b"train/images_per_sec",
              b"samples/person_garment_tryon"):
    assert tag in content, tag
  grid = os.path.join(workdir, "samples", f"step_{NUM_STEPS:07d}.png")
  from PIL import Image  # pylint: disable=g-import-not-at-top
  with Image.open(grid) as image:
    assert image.size == (3 * 16, 2 * 16)  # person | garment | try-on, sample_num = 2 rows
  assert sorted(int(s) for s in os.listdir(os.path.join(workdir, "checkpoints"))) == [4, 6, 8]


def test_sigkilled_run_resumes_with_the_uninterrupted_losses(uninterrupted, tmp_path):
  reference_dir, _ = uninterrupted
  workdir = tmp_path / "killed"
  child = subprocess.Popen([sys.executable, *_command(workdir)], env=support.subprocess_env(),
                           cwd=support.REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           text=True)
  deadline = time.time() + 400
  try:
    while not os.path.isdir(workdir / "checkpoints" / "2") and child.poll() is None:
      assert time.time() < deadline, "no checkpoint appeared"
      time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=60)
  finally:
    if child.poll() is None:
      child.kill()
  assert child.returncode == -signal.SIGKILL, "the run ended before it could be killed"
  before = _losses(workdir)
  assert max(before) < NUM_STEPS

  proc = support.run_python(_command(workdir), timeout=600)
  assert proc.returncode == 0, proc.stderr[-5000:]
  assert "Resuming from checkpoint" in proc.stderr
  assert "Synthetic records found" in proc.stderr  # the data set is not generated twice
  assert _losses(workdir) == _losses(reference_dir)


def test_sample_mode_writes_tryon_grids_from_the_checkpoint(uninterrupted):
  workdir, _ = uninterrupted
  records = os.path.join(workdir, "data", "records", "train-*-of-*.tfrecord")
  proc = support.run_python(
      ["-m", "tryon_jax.main", "--mode=sample", "--config=configs/demo.py",
       f"--workdir={workdir}", *support.TINY_FLAGS, "--config.diffusion.sample_steps=2",
       f"--sample_data={records}", "--num_samples=4"], timeout=600)
  assert proc.returncode == 0, proc.stderr[-5000:]
  paths = json.loads(proc.stdout.strip().splitlines()[-1])["samples"]
  assert [os.path.basename(p) for p in paths] == [f"sample_step{NUM_STEPS}_000.png",
                                                  f"sample_step{NUM_STEPS}_001.png"]
  assert all(os.path.getsize(p) > 0 for p in paths)
  assert f"checkpoint step {NUM_STEPS}" in proc.stderr
