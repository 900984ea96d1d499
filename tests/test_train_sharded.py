"""Sharding of the train system on 8 fake CPU devices (in a child process, so that the device count
does not leak into other tests): the sharded step equals the single-device step, and a checkpoint
written on mesh (2, 2, 2) restores onto (1, 8, 1) and onto one device."""

from __future__ import annotations

import json
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_train_support as support  # pylint: disable=wrong-import-position


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
  out = tmp_path_factory.mktemp("sharded")
  proc = support.run_python([os.path.abspath(__file__), str(out)], devices=8, timeout=600)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
  return json.loads((out / "result.json").read_text())


def test_state_is_actually_sharded_over_the_mesh(sharded):
  assert sharded["devices"] == 8
  assert sharded["sharded_leaves"] > 0  # some parameters are split (fsdp / tensor) ...
  assert sharded["largest_leaf_shards"] > 1  # ... over several devices.
  assert sharded["batch_shards"] == 4  # batch over data x fsdp = 2 x 2.


def test_init_is_the_same_on_8_devices_and_on_one(sharded):
  assert sharded["init_max_abs_diff"] == 0.0


def test_sharded_step_loss_equals_single_device_loss(sharded):
  assert sharded["loss_8"] == pytest.approx(sharded["loss_1"], rel=1e-5)
  assert sharded["grad_norm_8"] == pytest.approx(sharded["grad_norm_1"], rel=1e-4)
  assert sharded["params_max_abs_diff"] < 1e-5


@pytest.mark.parametrize("target", ["mesh_1x8x1", "one_device"])
def test_checkpoint_restores_onto_another_mesh(sharded, target):
  restored = sharded["restore"][target]
  assert restored["max_abs_diff"] == 0.0
  assert restored["mesh_shape"] == {"mesh_1x8x1": [1, 8, 1], "one_device": [1, 1, 1]}[target]
  assert restored["step"] == 1


def _worker(out_dir: str) -> None:
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from tryon_jax.parallel import sharding  # pylint: disable=g-import-not-at-top
  from tryon_jax.train import checkpoint as checkpoint_lib  # pylint: disable=g-import-not-at-top
  from tryon_jax.train import state as state_lib  # pylint: disable=g-import-not-at-top
  from tryon_jax.train import step as step_lib  # pylint: disable=g-import-not-at-top

  config = support.tiny_config()
  host_batch = next(iter(support.fake_dataset(config, process_index=0, process_count=1)))
  leaves = lambda state: [np.asarray(x) for x in jax.tree.leaves(state)]
  max_diff = lambda a, b: max(float(np.max(np.abs(x.astype(np.float64) - y)))
                              for x, y in zip(leaves(a), leaves(b)))

  def one_step(mesh):
    spec = state_lib.state_spec(config, mesh)
    state = state_lib.init_state(config, spec)
    init = leaves(state)
    batch = sharding.host_local_to_global(host_batch, sharding.batch_sharding(mesh))
    with jax.set_mesh(mesh):
      state, metrics = step_lib.make_train_step(config, spec)(state, batch)
    return spec, init, state, jax.device_get(metrics), batch

  mesh8 = sharding.make_mesh((2, 2, 2))
  mesh1 = sharding.make_mesh((1, 1, 1), devices=jax.devices()[:1])
  spec8, init8, state8, metrics8, batch8 = one_step(mesh8)
  _, init1, state1, metrics1, _ = one_step(mesh1)
  arrays8 = jax.tree.leaves(state8)
  result = {
      "devices": jax.device_count(),
      "sharded_leaves": sum(not a.sharding.is_fully_replicated for a in arrays8),
      "largest_leaf_shards": max(len({str(s.index) for s in a.addressable_shards})
                                 for a in arrays8),
      "batch_shards": len({str(s.index) for s in batch8["person"].addressable_shards}),
      "init_max_abs_diff": max(float(np.max(np.abs(x - y))) for x, y in zip(init8, init1)),
      "loss_8": float(metrics8["loss"]), "loss_1": float(metrics1["loss"]),
      "grad_norm_8": float(metrics8["grad_norm"]), "grad_norm_1": float(metrics1["grad_norm"]),
      "params_max_abs_diff": max_diff(state8, state1),
  }

  ckpt = checkpoint_lib.Checkpointer(os.path.join(out_dir, "checkpoints"), max_to_keep=2)
  ckpt.save(1, state8)
  ckpt.wait()
  result["restore"] = {}
  for name, mesh in (("mesh_1x8x1", sharding.make_mesh((1, 8, 1))), ("one_device", mesh1)):
    spec = state_lib.state_spec(config, mesh)
    restored = ckpt.restore(1, spec.abstract)["state"]
    meshes = {tuple(a.sharding.mesh.devices.shape) for a in jax.tree.leaves(restored)}
    result["restore"][name] = {
        "max_abs_diff": max_diff(restored, state8),
        "mesh_shape": list(meshes.pop()) if len(meshes) == 1 else sorted(meshes),
        "step": state_lib.step_of(restored)}
  ckpt.close()
  with open(os.path.join(out_dir, "result.json"), "w", encoding="utf-8") as f:
    json.dump(result, f)


if __name__ == "__main__":
  _worker(sys.argv[1])
