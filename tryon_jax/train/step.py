"""The train step: a pure, jitted function (state, batch) -> (state, metrics).

The diffusion noise for step ``s`` comes from ``fold_in(key(config.seed), s)`` with ``s`` read from
the optimizer's step counter inside the state, so the step needs no key argument and a resumed run
draws exactly the noise an uninterrupted run would.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from tryon_jax.parallel import sharding
from tryon_jax.train import optim
from tryon_jax.train.state import StateSpec

LossFn = Callable[..., tuple[jax.Array, dict]]  # (model_fn, batch, key, config) -> (loss, metrics)
EmaFn = Callable[[Any, Any, float], Any]  # (ema, params, decay) -> ema


def _default_fns() -> tuple[LossFn, EmaFn]:
  from tryon_jax.diffusion import ema as ema_lib  # pylint: disable=g-import-not-at-top
  from tryon_jax.diffusion import loss as loss_lib  # pylint: disable=g-import-not-at-top
  return loss_lib.diffusion_loss, ema_lib.ema_update


def step_key(seed: int, step: jax.Array) -> jax.Array:
  """The PRNG key of train step ``step`` (identical on every host)."""
  return jax.random.fold_in(jax.random.key(seed), step)


def make_train_step(config: ml_collections.ConfigDict, spec: StateSpec, *,
                    loss_fn: LossFn | None = None, ema_fn: EmaFn | None = None):
  """Returns ``train_step(state, batch) -> (state, metrics)``, jitted with shardings.

  state: nnx.State of the TrainState, sharded as ``spec.shardings``; donated (updated in place).
  batch: dict of global arrays [B, ...] (docs/ARCHITECTURE.md), B sharded over the batch axes.
  metrics: dict of replicated float32 scalars: loss, grad_norm, lr and the loss's own metrics.
  """
  default_loss, default_ema = _default_fns() if loss_fn is None or ema_fn is None else (None, None)
  loss_fn = loss_fn or default_loss
  ema_fn = ema_fn or default_ema
  schedule = optim.learning_rate_schedule(config.train)
  ema_decay = float(config.diffusion.ema_decay)
  ema_warmup_offset = float(config.diffusion.get("ema_warmup_offset", 0.0))
  from tryon_jax.diffusion import ema as ema_lib  # pylint: disable=g-import-not-at-top
  seed = int(config.seed)

  def train_step(state, batch):
    train_state = nnx.merge(spec.graphdef, state)
    step = train_state.optimizer.step.get_value()
    key = step_key(seed, step)

    def objective(model):
      return loss_fn(model, batch, key, config)

    (loss, loss_metrics), grads = nnx.value_and_grad(objective, has_aux=True)(train_state.model)
    train_state.optimizer.update(train_state.model, grads)
    new_state = nnx.state(train_state)
    decay = ema_lib.decay_at(step, ema_decay, ema_warmup_offset)
    new_state["ema"] = ema_fn(new_state["ema"], nnx.state(train_state.model, nnx.Param), decay)
    metrics = {k: jnp.asarray(v, jnp.float32) for k, v in dict(loss_metrics).items()}
    metrics.update(loss=loss.astype(jnp.float32), grad_norm=optax.global_norm(grads),
                   lr=jnp.asarray(schedule(step), jnp.float32))
    return new_state, metrics

  replicated = NamedSharding(spec.mesh, P())
  return jax.jit(train_step,
                 in_shardings=(spec.shardings, sharding.batch_sharding(spec.mesh)),
                 out_shardings=(spec.shardings, replicated),
                 donate_argnums=(0,))
