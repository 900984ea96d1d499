"""The train state (model + optimizer + EMA parameters) and its sharded initialization.

The full state is never built on one host: its shapes come from ``nnx.eval_shape``, its shardings
from the parameters' logical axes (``tryon_jax.parallel.sharding.state_shardings``), and the
initializer runs under ``jax.jit(..., out_shardings=...)`` so that every device computes only its
own shards.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from tryon_jax import models
from tryon_jax.parallel import sharding
from tryon_jax.train import optim


class TrainState(nnx.Module):
  """``model`` (the trained network), ``optimizer`` (nnx.Optimizer over its Params, with the step
  counter) and ``ema`` (an exponential moving average of the Params, used for sampling)."""

  def __init__(self, config: ml_collections.ConfigDict, *, seed: int):
    self.model = models.build_model(config.model, rngs=nnx.Rngs(seed))
    self.optimizer = nnx.Optimizer(self.model, optim.make_optimizer(config.train), wrt=nnx.Param)
    self.ema = nnx.data(jax.tree.map(jnp.copy, nnx.state(self.model, nnx.Param)))


@dataclasses.dataclass(frozen=True)
class StateSpec:
  """What is known about the train state before any array exists.

  graphdef: static structure of TrainState (for ``nnx.merge``);
  model_graphdef: static structure of the model alone (for sampling with EMA params);
  abstract: nnx.State of ShapeDtypeStructs carrying their NamedShardings (Orbax restore target);
  shardings: the same tree of NamedShardings (jit in/out shardings).
  """
  graphdef: Any
  model_graphdef: Any
  abstract: Any
  shardings: Any
  mesh: jax.sharding.Mesh


def _build(config: ml_collections.ConfigDict) -> TrainState:
  # Eager sharding off: shardings are decided once, by sharding.state_shardings, and imposed by
  # jit's out_shardings; flax's eager path would need every dimension to divide its mesh axes.
  with nnx.use_eager_sharding(False):
    return TrainState(config, seed=config.seed)


def state_spec(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh) -> StateSpec:
  """Shapes and shardings of the train state on ``mesh``; allocates nothing."""
  def split() -> tuple[Any, Any]:
    state = _build(config)  # one abstract build gives both structures (each build costs seconds)
    return nnx.split(state), nnx.graphdef(state.model)

  (graphdef, abstract), model_graphdef = nnx.eval_shape(split)
  shardings = sharding.state_shardings(abstract, mesh)
  abstract = jax.tree.map(
      lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings)
  return StateSpec(graphdef=graphdef, model_graphdef=model_graphdef, abstract=abstract,
                   shardings=shardings, mesh=mesh)


def init_state(config: ml_collections.ConfigDict, spec: StateSpec) -> Any:
  """A freshly initialized train state (nnx.State of sharded jax.Arrays), built shard-wise."""
  init = jax.jit(lambda: nnx.state(_build(config)), out_shardings=spec.shardings)
  with jax.set_mesh(spec.mesh):
    return init()


def step_of(state: Any) -> int:
  """The number of optimizer steps taken, read from a (concrete) train state."""
  return int(jax.device_get(state["optimizer"]["step"].get_value()))


def ema_model(spec: StateSpec, state: Any) -> nnx.Module:
  """The network with its EMA parameters (non-Param variables, if any, from the live model).

  Usable inside jit: ``state`` may hold tracers.
  """
  return nnx.merge(spec.model_graphdef, nnx.merge_state(state["model"], state["ema"]))
