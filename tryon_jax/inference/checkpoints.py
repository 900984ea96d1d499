"""Trained stages -> a ``Cascade``: find a stage's checkpoint, read its config, restore its EMA
parameters (only those: the optimizer state, twice the parameters' size, is never read).

A stage is given as a training workdir (its newest checkpoint is used), its ``checkpoints/`` folder,
or one ``checkpoints/<step>/`` folder (train/checkpoint.py writes ``state`` and ``config`` there).
The stage's network is rebuilt from the config JSON saved in the checkpoint, so inference needs no
config file that matches the training run. Every problem is a ``CheckpointError`` whose one-line
message names the flag and the path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
import dataclasses
import os
from typing import Any

import jax
import ml_collections
from flax import nnx

STAGE_ORDER = ("base128", "sr256", "sr1024")


class CheckpointError(ValueError):
  """A stage checkpoint that cannot be used; the message names the flag and the path."""


@dataclasses.dataclass
class StageCheckpoint:
  """A resolved (not yet restored) stage checkpoint."""
  flag: str  # the flag that named it, e.g. "--ckpt_base128" (for messages)
  step_dir: str  # .../checkpoints/<step>
  step: int
  config: ml_collections.ConfigDict  # the training config saved with the checkpoint

  @property
  def stage(self) -> str:
    return str(self.config.get("stage", self.config.get("name", "?")))


def _is_step_dir(path: str) -> bool:
  return os.path.isdir(os.path.join(path, "state")) and os.path.isdir(os.path.join(path, "config"))


def _newest_step_dir(checkpoints_dir: str) -> str | None:
  # Orbax finalizes a checkpoint by renaming its temporary folder to the bare step number, so
  # only all-digit names are complete checkpoints.
  steps = sorted((int(n) for n in os.listdir(checkpoints_dir)
                  if n.isdigit() and _is_step_dir(os.path.join(checkpoints_dir, n))), reverse=True)
  return os.path.join(checkpoints_dir, str(steps[0])) if steps else None


def resolve_step_dir(path: str, flag: str) -> str:
  """A workdir, its checkpoints/ folder or a checkpoints/<step>/ folder -> the step folder."""
  if not path:
    raise CheckpointError(f"{flag}: empty path")
  if not os.path.exists(path):
    raise CheckpointError(f"{flag}: {path} does not exist")
  if not os.path.isdir(path):
    raise CheckpointError(f"{flag}: {path} is not a directory")
  if _is_step_dir(path):
    return os.path.abspath(path)
  for candidate in (os.path.join(path, "checkpoints"), path):
    if os.path.isdir(candidate):
      found = _newest_step_dir(candidate)
      if found:
        return os.path.abspath(found)
  raise CheckpointError(f"{flag}: no checkpoint in {path} (want a training workdir, its "
                        "checkpoints/ folder or one checkpoints/<step>/ folder)")


def _tuples(value: Any) -> Any:
  """JSON lists back to the tuples the configs use (model code indexes and compares tuples)."""
  if isinstance(value, dict):
    return {k: _tuples(v) for k, v in value.items()}
  if isinstance(value, list):
    return tuple(_tuples(v) for v in value)
  return value


def read_config(step_dir: str, flag: str) -> ml_collections.ConfigDict:
  """The training config saved in ``step_dir/config`` (Orbax JsonSave)."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top  # slow import
  try:
    raw = ocp.Checkpointer(ocp.JsonCheckpointHandler()).restore(os.path.join(step_dir, "config"))
  except Exception as e:  # pylint: disable=broad-except  # any unreadable file: one message.
    raise CheckpointError(f"{flag}: cannot read the config saved in {step_dir}/config "
                          f"({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
  if not isinstance(raw, dict) or "model" not in raw or "diffusion" not in raw:
    raise CheckpointError(f"{flag}: {step_dir}/config is not a tryon-jax training config")
  return ml_collections.ConfigDict(_tuples(raw))


def resolve(path: str, flag: str, expected_stage: str | None = None) -> StageCheckpoint:
  """Finds the checkpoint and reads its config; checks that it is the stage the flag names."""
  step_dir = resolve_step_dir(path, flag)
  ckpt = StageCheckpoint(flag=flag, step_dir=step_dir, step=int(os.path.basename(step_dir)),
                         config=read_config(step_dir, flag))
  if expected_stage is not None and ckpt.stage != expected_stage:
    raise CheckpointError(f"{flag}: {step_dir} holds a {ckpt.stage!r} stage, not "
                          f"{expected_stage!r}")
  return ckpt


def restore_ema_model(ckpt: StageCheckpoint) -> tuple[nnx.GraphDef, tuple[Any, ...]]:
  """(graphdef, states) of the stage's network with its EMA parameters, on the default device.

  Reads only ``state/ema`` (and the model's non-parameter variables, if it has any) from the
  checkpoint. Raises CheckpointError when the arrays do not match the saved config's network.
  """
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  from tryon_jax import models  # pylint: disable=g-import-not-at-top

  with nnx.use_eager_sharding(False):
    abstract = nnx.eval_shape(lambda: models.build_model(ckpt.config.model, nnx.Rngs(0)))
  graphdef, params, rest = nnx.split(abstract, nnx.Param, ...)
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  on_device = lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=device)
  item = {"ema": jax.tree.map(on_device, params)}
  if jax.tree.leaves(rest):  # e.g. batch statistics; the EMA holds Params only.
    item["model"] = jax.tree.map(on_device, rest)
  restore_args = {k: ocp.checkpoint_utils.construct_restore_args(v) for k, v in item.items()}
  try:
    restored = ocp.PyTreeCheckpointer().restore(
        os.path.join(ckpt.step_dir, "state"),
        args=ocp.args.PyTreeRestore(item=item, restore_args=restore_args, partial_restore=True))
  except Exception as e:  # pylint: disable=broad-except
    raise CheckpointError(
        f"{ckpt.flag}: cannot restore the EMA parameters from {ckpt.step_dir}/state "
        f"({type(e).__name__}: {str(e).splitlines()[0][:300]}); pass an earlier "
        "checkpoints/<step> folder if this one is damaged") from None
  return graphdef, (restored["ema"], restored.get("model", rest))


def stage_slots(given: Mapping[str, str], flag_prefix: str = "--ckpt_") -> list[tuple[str, str]]:
  """(stage name, path) of the given stages, in cascade order; empty paths are left out."""
  unknown = sorted(set(given) - set(STAGE_ORDER))
  if unknown:
    raise CheckpointError(f"unknown stage(s) {unknown}; expected {STAGE_ORDER}")
  return [(name, given[name]) for name in STAGE_ORDER if given.get(name)]


def resolve_all(given: Mapping[str, str]) -> list[StageCheckpoint]:
  """Resolves every given stage (checks paths and configs, restores nothing)."""
  return [resolve(path, f"--ckpt_{name}", name) for name, path in stage_slots(given)]


def build_cascade(ckpts: Sequence[StageCheckpoint], *, samplers: Sequence[str | None] = (),
                  steps: Sequence[int | None] = (), guidance_weights: Sequence[float | None] = ()
                  ) -> Any:
  """Restores every stage's EMA network and returns a diffusion.cascade.Cascade.

  samplers / steps / guidance_weights: one entry per stage (None = the checkpoint config's value).
  """
  from tryon_jax.diffusion import cascade  # pylint: disable=g-import-not-at-top
  stages = []
  for i, ckpt in enumerate(ckpts):
    graphdef, states = restore_ema_model(ckpt)
    pick = lambda values: values[i] if i < len(values) else None
    try:
      stages.append(cascade.Stage.from_graphdef(
          ckpt.config, graphdef, *states, sampler=pick(samplers), steps=pick(steps),
          guidance_weight=pick(guidance_weights), name=ckpt.stage))
    except ValueError as e:  # e.g. an unknown sampler name
      raise CheckpointError(f"{ckpt.flag}: {e}") from None
  return cascade.Cascade(stages)
