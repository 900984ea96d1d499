"""A real two-process (two-"host") run of ``python -m tryon_jax.main`` on localhost: jax.distributed
over gloo, 4 fake CPU devices per process (one 8-device mesh), per-host Grain batches assembled
into global arrays, and a checkpoint written by both processes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_train_support as support  # pylint: disable=wrong-import-position


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def test_two_processes_train_and_checkpoint(tmp_path):
  workdir = tmp_path / "work"
  port = _free_port()
  command = ["-m", "tryon_jax.main", "--config=configs/demo.py", f"--workdir={workdir}",
             *support.TINY_FLAGS, "--config.train.num_steps=3",
             "--config.train.checkpoint_every_steps=3", "--config.mesh.shape=(2,2,2)",
             f"--coordinator_address=localhost:{port}", "--num_processes=2"]
  children = [subprocess.Popen([sys.executable, *command, f"--process_id={i}"],
                               env=support.subprocess_env(devices=4), cwd=support.REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for i in range(2)]
  outputs = []
  try:
    for child in children:
      outputs.append(child.communicate(timeout=600))
  finally:
    for child in children:
      if child.poll() is None:
        child.kill()
  for child, (_, err) in zip(children, outputs):
    assert child.returncode == 0, err[-5000:]
  log0 = outputs[0][1]
  assert "process 0 of 2, 4 local / 8 global devices" in log0
  assert "step 3/3 | loss" in log0
  assert "step 3/3" not in outputs[1][1]  # only process 0 reports
  step_dir = workdir / "checkpoints" / "3"
  iterator_states = {n for n in os.listdir(step_dir / "data_iter") if n.startswith("process_")}
  assert iterator_states == {"process_0-of-2.json", "process_1-of-2.json"}  # one per host
  assert (step_dir / "state").is_dir()
