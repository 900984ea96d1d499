"""The optimizer of all three stages: Adam with the paper's warm-up-then-constant learning rate."""

from __future__ import annotations

import ml_collections
import optax


def learning_rate_schedule(train_config: ml_collections.ConfigDict) -> optax.Schedule:
  """Paper: linear warm-up 0 -> ``train.lr`` over ``train.warmup_steps``, then constant.

  ``optax.linear_schedule`` holds ``end_value`` after ``transition_steps``, which is exactly that.
  """
  return optax.linear_schedule(init_value=0.0, end_value=train_config.lr,
                               transition_steps=max(int(train_config.warmup_steps), 1))


def make_optimizer(train_config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """Global-norm gradient clipping (``train.grad_clip_norm``; 0 disables it), then Adam."""
  adam = optax.adam(learning_rate_schedule(train_config), b1=train_config.adam_b1,
                    b2=train_config.adam_b2, eps=train_config.adam_eps)
  if train_config.grad_clip_norm and train_config.grad_clip_norm > 0:
    return optax.chain(optax.clip_by_global_norm(train_config.grad_clip_norm), adam)
  return adam
