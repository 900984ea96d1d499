"""Train-system unit tests: LR schedule, checkpoint fallback and retention, sample grids, and (in
one child process, since they compile the model) NaN stop and SIGTERM save/resume."""

from __future__ import annotations

import functools
import json
import os
import signal
import sys

import grain
import jax
import jax.numpy as jnp
import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_train_support as support  # pylint: disable=wrong-import-position

from tryon_jax.train import checkpoint as checkpoint_lib  # pylint: disable=wrong-import-position
from tryon_jax.train import loop  # pylint: disable=wrong-import-position
from tryon_jax.train import optim  # pylint: disable=wrong-import-position


def test_learning_rate_warms_up_linearly_then_stays_constant():
  config = support.tiny_config(lr=1e-4, warmup_steps=10_000)
  schedule = optim.learning_rate_schedule(config.train)
  assert float(schedule(0)) == 0.0
  np.testing.assert_allclose(float(schedule(2_500)), 2.5e-5, rtol=1e-6)
  np.testing.assert_allclose(float(schedule(10_000)), 1e-4, rtol=1e-6)
  np.testing.assert_allclose(float(schedule(400_000)), 1e-4, rtol=1e-6)


def test_optimizer_clips_the_gradient_norm_before_adam():
  grads = {"w": jnp.full(4, 100.0)}  # global norm 200
  nu = {}
  for clip in (1.0, 0.0):
    config = support.tiny_config(grad_clip_norm=clip)
    tx = optim.make_optimizer(config.train)
    _, state = tx.update(grads, tx.init({"w": jnp.zeros(4)}))
    adam_state = state[1][0] if clip else state[0]
    nu[clip] = np.asarray(adam_state.nu["w"])
  b2 = support.tiny_config().train.adam_b2
  # Adam's second moment sees the clipped gradient (each entry 0.5) or the raw one (100).
  np.testing.assert_allclose(nu[1.0], (1 - b2) * 0.25, rtol=1e-5)
  np.testing.assert_allclose(nu[0.0], (1 - b2) * 1e4, rtol=1e-5)


# ------------------------------------------------------------------------------ checkpoints


def _toy_iter():
  return iter(grain.MapDataset.range(100).batch(2).to_iter_dataset())


def _toy_state(value: float) -> dict:
  return {"w": jnp.full((4, 3), value, jnp.float32), "step": jnp.asarray(int(value), jnp.int32)}


def _abstract(state):
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)


def _save_steps(ckpt, steps, data_iter):
  for s in steps:
    next(data_iter)
    ckpt.save(s, _toy_state(float(s)), data_iter=data_iter, config_json={"step": s})
  ckpt.wait()


def test_max_to_keep_keeps_only_the_newest(tmp_path):
  ckpt = checkpoint_lib.Checkpointer(str(tmp_path / "checkpoints"), max_to_keep=2)
  _save_steps(ckpt, [1, 2, 3, 4], _toy_iter())
  assert ckpt.all_steps() == [3, 4]
  ckpt.close()
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["3", "4"]


def _save_with_broken_newest(directory) -> None:
  """Checkpoints 1-3 in ``directory``, the newest damaged, and a half-written 4."""
  ckpt = checkpoint_lib.Checkpointer(str(directory), max_to_keep=3)
  _save_steps(ckpt, [1, 2, 3], _toy_iter())
  ckpt.close()
  # Corrupt the newest: delete the array data files (a finalized but damaged checkpoint) ...
  for root, _, files in os.walk(directory / "3" / "state"):
    for name in files:
      if name != "_METADATA":
        os.remove(os.path.join(root, name))
  # ... and leave a half-written one behind, as a crash during a save does (or a save in progress
  # by a job still training there).
  (directory / "4.orbax-checkpoint-tmp-123").mkdir()


def test_corrupt_latest_checkpoint_falls_back_to_previous(tmp_path, caplog):
  directory = tmp_path / "checkpoints"
  _save_with_broken_newest(directory)
  ckpt = checkpoint_lib.Checkpointer(str(directory), max_to_keep=3)
  with caplog.at_level("WARNING"):
    step, state, data_iter = ckpt.restore_latest(_abstract(_toy_state(0.0)), _toy_iter)
  assert step == 2
  np.testing.assert_array_equal(np.asarray(state["w"]), np.full((4, 3), 2.0))
  assert next(data_iter).tolist() == [4, 5]  # two batches consumed before checkpoint 2
  assert any("cannot be restored" in r.getMessage() and "/3" in r.getMessage()
             for r in caplog.records)
  # The broken checkpoint is moved aside (not deleted), and a new save at its step works.
  assert ckpt.all_steps() == [1, 2]
  assert [n.split("-")[0] for n in os.listdir(tmp_path / "checkpoints_corrupt")] == ["3"]
  ckpt.save(3, _toy_state(30.0))
  ckpt.wait()
  assert ckpt.all_steps() == [1, 2, 3]
  ckpt.close()


def test_read_only_checkpointer_restores_any_step_and_changes_nothing_on_disk(tmp_path):
  directory = tmp_path / "checkpoints"
  _save_with_broken_newest(directory)
  before = sorted(os.listdir(directory))
  reader = checkpoint_lib.Checkpointer(str(directory), max_to_keep=None, async_save=False,
                                       read_only=True)
  step, state, _ = reader.restore_latest(_abstract(_toy_state(0.0)))
  assert step == 2  # the broken newest is skipped ...
  np.testing.assert_array_equal(np.asarray(reader.restore(1, _abstract(_toy_state(0.0)))
                                           ["state"]["w"]), np.full((4, 3), 1.0))
  reader.close()
  # ... and left where it is, as is the temporary, which may be a save in progress.
  assert sorted(os.listdir(directory)) == before
  assert not (tmp_path / "checkpoints_corrupt").exists()
  np.testing.assert_array_equal(np.asarray(state["w"]), np.full((4, 3), 2.0))


def test_no_restorable_checkpoint_is_an_error_not_a_fresh_start(tmp_path):
  directory = tmp_path / "checkpoints"
  ckpt = checkpoint_lib.Checkpointer(str(directory), max_to_keep=3)
  _save_steps(ckpt, [1], _toy_iter())
  ckpt.close()
  for root, _, files in os.walk(directory / "1" / "state"):
    for name in files:
      os.remove(os.path.join(root, name))
  ckpt = checkpoint_lib.Checkpointer(str(directory), max_to_keep=3)
  with pytest.raises(checkpoint_lib.NoRestorableCheckpointError, match="none of the checkpoints"):
    ckpt.restore_latest(_abstract(_toy_state(0.0)))
  ckpt.close()


def test_empty_directory_restores_nothing(tmp_path):
  ckpt = checkpoint_lib.Checkpointer(str(tmp_path / "checkpoints"), max_to_keep=3)
  assert ckpt.restore_latest(_abstract(_toy_state(0.0))) is None
  ckpt.close()


def test_sample_grid_puts_person_garment_tryon_side_by_side():
  n, r = 2, 4
  person = np.full((n, r, r, 3), -1.0)
  garment = np.zeros((n, 2 * r, 2 * r, 3))  # a different size is resized to the try-on's
  tryon = np.ones((n, r, r, 3))
  grid = loop.make_grid(person, garment, tryon)
  assert grid.shape == (n * r, 3 * r, 3) and grid.dtype == np.uint8
  assert (grid[:, :r] == 0).all() and (grid[:, r:2 * r] == 128).all()
  assert (grid[:, 2 * r:] == 255).all()


# ------------------------------------------------------------------------------ loop scenarios


@pytest.fixture(scope="module")
def loop_scenarios(tmp_path_factory):
  out = tmp_path_factory.mktemp("loop")
  proc = support.run_python([os.path.abspath(__file__), str(out)], timeout=600)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
  return json.loads((out / "result.json").read_text())


def test_nan_loss_stops_with_message_and_keeps_last_good_checkpoint(loop_scenarios):
  nan = loop_scenarios["nan"]
  assert "non-finite loss" in nan["error"] and "at step 4" in nan["error"]
  assert "checkpoints/2" in nan["error"]  # the message names the last good checkpoint
  assert nan["steps"] == [2]  # step 4 (a checkpoint step) was never written
  assert nan["restored_step"] == 2  # and step 2 restores fine


def test_sigterm_saves_then_the_same_call_resumes(loop_scenarios):
  term = loop_scenarios["sigterm"]
  assert term["preempted"] and term["step"] < 40
  assert term["step"] in term["steps"]  # saved at the step it stopped
  assert term["resumed_log"], "restart did not say it resumed"
  assert term["final_step"] == 40 and not term["final_preempted"]
  assert term["start_steps"] == [0, term["step"]]  # from scratch, then from the saved step


def test_ema_parameters_move_towards_the_trained_ones(loop_scenarios):
  ema = loop_scenarios["ema"]
  assert ema["ema_to_init"] > 0  # the EMA moved ...
  assert ema["ema_to_init"] < ema["params_to_init"]  # ... but lags behind the parameters


def test_init_fn_edits_the_fresh_state_only(loop_scenarios):
  init = loop_scenarios["init_fn"]
  assert init["calls"] == [0]  # once, on the fresh state; the resumed run did not call it
  # Two Adam steps at lr <= 3e-4 move the planted 0.25 by about 6e-4 at most.
  assert all(abs(b - 0.25) < 0.01 for b in init["bias"]["2"] + init["bias"]["4"])


def _scenarios(out_dir: str) -> None:
  """Child process: NaN and SIGTERM runs of the real loop on the tiny model."""
  import logging as std_logging  # pylint: disable=g-import-not-at-top
  from absl import logging  # pylint: disable=g-import-not-at-top
  from flax import nnx  # pylint: disable=g-import-not-at-top
  from tryon_jax.parallel import sharding  # pylint: disable=g-import-not-at-top
  from tryon_jax.train import state as state_lib  # pylint: disable=g-import-not-at-top
  result = {}

  # NaN: batches from index 3 on are NaN, so step 4 (a checkpoint step) has a NaN loss.
  workdir = os.path.join(out_dir, "nan")
  config = support.tiny_config(num_steps=6, checkpoint_every_steps=2)
  try:
    loop.train(config, workdir, dataset_fn=functools.partial(support.fake_dataset, nan_from=3))
    result["nan"] = {"error": ""}
  except loop.NonFiniteLossError as e:
    result["nan"] = {"error": str(e)}
  ckpt = checkpoint_lib.Checkpointer(os.path.join(workdir, "checkpoints"), max_to_keep=3)
  spec = state_lib.state_spec(config, sharding.make_mesh(config.mesh.shape))
  result["nan"]["steps"] = ckpt.all_steps()
  result["nan"]["restored_step"] = ckpt.restore_latest(spec.abstract)[0]
  ckpt.close()

  # SIGTERM arrives (once) while batch 3 is read; the loop saves at the next step boundary and
  # returns; the same call again resumes.
  terminated = []

  def terminating_dataset(cfg, *, process_index, process_count):
    ds = support.fake_dataset(cfg, process_index=process_index, process_count=process_count)

    def maybe_terminate(batch):
      first_of_batch_3 = support.random_example(3 * 8)["person"][0, 0, 0]
      if not terminated and batch["person"][0, 0, 0, 0] == first_of_batch_3:
        terminated.append(True)
        os.kill(os.getpid(), signal.SIGTERM)
      return batch
    return ds.map(maybe_terminate)

  workdir = os.path.join(out_dir, "sigterm")
  config = support.tiny_config(num_steps=40, checkpoint_every_steps=100, log_every_steps=100)
  first = loop.train(config, workdir, dataset_fn=terminating_dataset)
  ckpt = checkpoint_lib.Checkpointer(os.path.join(workdir, "checkpoints"), max_to_keep=3)
  steps = ckpt.all_steps()
  ckpt.close()
  messages = []
  handler = type("H", (std_logging.Handler,), {"emit": lambda s, r: messages.append(
      r.getMessage())})()
  logging.get_absl_logger().addHandler(handler)
  logging.set_verbosity(logging.INFO)
  final = loop.train(config, workdir, dataset_fn=terminating_dataset)
  result["sigterm"] = {
      "preempted": first.preempted, "step": first.step, "steps": steps,
      "resumed_log": [m for m in messages if m.startswith("Resuming from checkpoint")],
      "final_step": final.step, "final_preempted": final.preempted,
      "start_steps": [first.start_step, final.start_step]}

  # EMA after 40 steps vs. the initial and the trained parameters.
  spec = state_lib.state_spec(config, sharding.make_mesh(config.mesh.shape))
  init = state_lib.init_state(config, spec)
  ckpt = checkpoint_lib.Checkpointer(os.path.join(workdir, "checkpoints"), max_to_keep=3)
  _, trained, _ = ckpt.restore_latest(spec.abstract)
  ckpt.close()
  dist = lambda a, b: float(sum(jnp.sum(jnp.abs(x - y)) for x, y in zip(
      jax.tree.leaves(a), jax.tree.leaves(b))))
  init_params = nnx.to_pure_dict(init["model"])
  result["ema"] = {"ema_to_init": dist(nnx.to_pure_dict(trained["ema"]), init_params),
                   "params_to_init": dist(nnx.to_pure_dict(trained["model"]), init_params)}
  # init_fn edits a fresh state before step 0, and a resumed run does not call it again.
  calls = []

  def init_fn(spec, state):
    calls.append(state_lib.step_of(state))
    train_state = nnx.merge(spec.graphdef, state, copy=True)
    bias = train_state.model.conv_out.bias
    bias[...] = jnp.full_like(bias[...], 0.25)
    return nnx.state(train_state)

  workdir = os.path.join(out_dir, "init_fn")
  config = support.tiny_config(num_steps=2, checkpoint_every_steps=2)
  loop.train(config, workdir, dataset_fn=support.fake_dataset, init_fn=init_fn)
  config = support.tiny_config(num_steps=4, checkpoint_every_steps=2)
  loop.train(config, workdir, dataset_fn=support.fake_dataset, init_fn=init_fn)
  spec = state_lib.state_spec(config, sharding.make_mesh(config.mesh.shape))
  ckpt = checkpoint_lib.Checkpointer(os.path.join(workdir, "checkpoints"), max_to_keep=3)
  bias = {}
  for step in (2, 4):
    restored = ckpt.restore(step, spec.abstract)["state"]
    bias[step] = np.asarray(restored["model"]["conv_out"]["bias"].get_value()).tolist()
  ckpt.close()
  result["init_fn"] = {"calls": calls, "bias": bias}
  with open(os.path.join(out_dir, "result.json"), "w", encoding="utf-8") as f:
    json.dump(result, f)


if __name__ == "__main__":
  from absl import flags as _flags  # pylint: disable=g-import-not-at-top
  _flags.FLAGS.mark_as_parsed()
  _scenarios(sys.argv[1])
