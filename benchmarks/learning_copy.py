"""Can the Parallel-UNet's cross-attention layer learn to copy? A toy task without diffusion.

  python -m benchmarks.learning_copy --json OUT.json [--level 1] [--steps 2000] [--target_noise 0 3]

The learning study's Parallel-UNet never placed I_c's pattern, not even with I_c lined up, attention
at 32 px and a position code (docs/learning/README.md). This probe takes the network out: one
``layers.CrossAttention``, built as the learning config builds it at model level --level (its grid
side, channels and head size), is trained alone with the training's optimizer (configs/learning.py's
``train``: Adam, warm-up, clipping, learning rate) to copy garment tokens to person tokens:

  * ``place``: person token p must output garment token p (I_c lined up). The person features are
    noise unrelated to the garment, so only a position code can say which garment token is p's.
    Without one (``--position none``) the layer cannot tell garment places apart; it is the control
    whose score must stay near 0.
  * ``content``: an arbitrary warp (a random permutation of the grid per example). Each garment
    token carries a random tag in its first ``tag_channels`` channels (what body point it shows)
    and its value (the pattern) in the rest; person token p carries the tag of the garment token
    it must read, pi(p), and must output that token's value. This is the paper's implicit warp:
    matching by content, not by place.

Each step draws a fresh batch (the task has no training set to overfit). ``--target_noise`` adds
Gaussian noise of that standard deviation to the training targets (never to the held-out ones): the
diffusion loss carries the pattern as a small part of a noisy target, and this shows how the noise
slows the copy. Every --eval_every steps, on a fixed held-out batch:
  * ``r2``: 1 - MSE / mean square of the target, over the scored channels (0 = the mean, 1 = a
    perfect copy);
  * ``right_mass``: the attention weight on the garment token to be read (head mean; even
    attention puts 1 / side^2 there).
Per run: the curve, the first evaluated step with r2 >= 0.5 and >= 0.9 (null if never), seconds.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence

import numpy as np

TASKS = ("place", "content")
POSITIONS = ("none", "fourier")
R2_MARKS = (0.5, 0.9)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--json", default="", help="also write every run's result here")
  p.add_argument("--level", type=int, default=1,
                 help="model level whose cross-attention is copied (0 = full resolution); its "
                      "grid side, channels and head size come from configs/learning.py")
  p.add_argument("--variant", default="parallel", help="configs/learning.py variant")
  p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
  p.add_argument("--positions", nargs="+", default=list(POSITIONS), choices=POSITIONS)
  p.add_argument("--target_noise", nargs="+", type=float, default=[0.0],
                 help="standard deviations of the noise added to the training targets")
  p.add_argument("--steps", type=int, default=2000)
  p.add_argument("--eval_every", type=int, default=100)
  p.add_argument("--tag_channels", type=int, default=0,
                 help="channels of the content task's tag (0: half the layer's channels)")
  p.add_argument("--eval_batch", type=int, default=32)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                 help="override in configs/learning.py (e.g. train.lr=3e-4)")
  args = p.parse_args(argv)
  if args.steps < 1 or args.eval_every < 1:
    p.error(f"--steps={args.steps} and --eval_every={args.eval_every} must be >= 1")
  if any(s < 0 for s in args.target_noise):
    p.error(f"--target_noise={args.target_noise}: standard deviations must be >= 0")
  return args


def layer_shape(config, level: int) -> dict[str, int]:
  """The cross-attention of model level ``level``: grid side, channels, head size."""
  m = config.model
  if not 0 <= level < len(m.channels):
    raise SystemExit(f"--level={level}: the model has levels 0..{len(m.channels) - 1}")
  return {"side": m.resolution >> level, "channels": m.channels[level], "head_dim": m.head_dim}


def make_batch(key, task: str, batch: int, side: int, channels: int, tag_channels: int):
  """One batch of the copy task.

  Returns (x [B, S, S, C] person features, context [B, S, S, C] garment features,
  target [B, S, S, C] what the layer must add to x, read [B, S*S] int32 the garment token each
  person token must read, scored [C] bool the channels scored).
  """
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  n = side * side
  k_x, k_ctx, k_perm = jax.random.split(key, 3)
  context = jax.random.normal(k_ctx, (batch, n, channels))
  if task == "place":
    read = jnp.broadcast_to(jnp.arange(n), (batch, n))
    x = jax.random.normal(k_x, (batch, n, channels))
    scored = jnp.ones(channels, bool)
  elif task == "content":
    read = jax.vmap(lambda k: jax.random.permutation(k, n))(jax.random.split(k_perm, batch))
    scored = jnp.arange(channels) >= tag_channels
  else:
    raise ValueError(f"task={task!r}: expected one of {TASKS}")
  to_read = jnp.take_along_axis(context, read[..., None], axis=1)  # pi(p)'s token at p
  if task == "content":
    x = jnp.where(scored, 0.0, to_read)  # p carries pi(p)'s tag, nothing else
  target = jnp.where(scored, to_read, 0.0)
  shape = (batch, side, side, channels)
  return x.reshape(shape), context.reshape(shape), target.reshape(shape), read, scored


def copy_scores(delta, target, weights, read, scored) -> dict[str, float]:
  """delta, target: [B, S, S, C]; weights: [B, heads, T, S'] ; read: [B, T] -> r2, right_mass."""
  d = np.asarray(delta)[..., np.asarray(scored)]
  t = np.asarray(target)[..., np.asarray(scored)]
  r2 = 1.0 - float(np.mean((d - t) ** 2) / np.mean(t ** 2))
  w = np.asarray(weights).mean(axis=1)  # [B, T, S']
  right = np.take_along_axis(w, np.asarray(read)[..., None], axis=-1)
  return {"r2": r2, "right_mass": float(right.mean())}


def train_copy(config, shape: dict[str, int], task: str, position: str, target_noise: float,
               steps: int, eval_every: int, tag_channels: int, eval_batch: int,
               seed: int) -> dict:
  """Trains one fresh cross-attention layer on the copy task; returns its curve and marks."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top
  from flax import nnx  # pylint: disable=g-import-not-at-top
  from tryon_jax.models import layers  # pylint: disable=g-import-not-at-top
  from tryon_jax.train import optim  # pylint: disable=g-import-not-at-top

  side, channels = shape["side"], shape["channels"]
  tags = tag_channels or channels // 2
  batch = config.train.batch_size
  with nnx.use_eager_sharding(False):
    attn = layers.CrossAttention(channels, channels, shape["head_dim"], rngs=nnx.Rngs(seed),
                                 dtype=jnp.float32, position=position, grid_side=side)
  graphdef, params = nnx.split(attn, nnx.Param)
  tx = optim.make_optimizer(config.train)
  opt_state = tx.init(params)

  def delta(p, x, context):
    return nnx.merge(graphdef, p)(x, context) - x

  @jax.jit
  def step(p, opt_state, key):
    k_batch, k_noise = jax.random.split(key)
    x, context, target, _, scored = make_batch(k_batch, task, batch, side, channels, tags)
    noisy = target + target_noise * jax.random.normal(k_noise, target.shape) * scored

    def loss_fn(p):
      return jnp.mean((delta(p, x, context) - noisy) ** 2)

    loss, grads = jax.value_and_grad(loss_fn)(p)
    updates, opt_state = tx.update(grads, opt_state, p)
    return optax.apply_updates(p, updates), opt_state, loss

  held_out = make_batch(jax.random.key(seed + 10_000), task, eval_batch, side, channels, tags)

  @jax.jit
  def evaluate(p):
    x, context, target, _, _ = held_out
    model = nnx.merge(graphdef, p)
    model.record_weights = True
    out, recorded = nnx.capture(model, nnx.Intermediate)(x, context)
    (weights,) = recorded["weights"].get_value()
    return out - x, weights

  def score(p):
    d, w = evaluate(p)
    return copy_scores(d, held_out[2], w, held_out[3], held_out[4])

  curve = [{"step": 0, **score(params)}]
  key = jax.random.key(seed)
  start = time.perf_counter()
  for i in range(1, steps + 1):
    key, sub = jax.random.split(key)
    params, opt_state, loss = step(params, opt_state, sub)
    if i % eval_every == 0 or i == steps:
      curve.append({"step": i, "train_loss": float(loss), **score(params)})
  seconds = time.perf_counter() - start
  marks = {f"steps_to_r2_{m}": next((c["step"] for c in curve if c["r2"] >= m), None)
           for m in R2_MARKS}
  return {"task": task, "position": position, "target_noise": target_noise, **shape,
          "heads": channels // shape["head_dim"], "tag_channels": tags if task == "content" else 0,
          "batch": batch, "lr": config.train.lr, "steps": steps, "seconds": round(seconds, 1),
          "final_r2": curve[-1]["r2"], "final_right_mass": curve[-1]["right_mass"],
          "even_right_mass": 1.0 / (side * side), **marks, "curve": curve}


def main(argv: Sequence[str] | None = None) -> list[dict]:
  args = parse_args(argv)
  from benchmarks import common  # pylint: disable=g-import-not-at-top
  from configs import learning  # pylint: disable=g-import-not-at-top
  config = learning.get_config(args.variant)
  common.apply_overrides(config, args.set)
  shape = layer_shape(config, args.level)
  if args.tag_channels >= shape["channels"]:
    raise SystemExit(f"--tag_channels={args.tag_channels} leaves no value channels of "
                     f"{shape['channels']}")
  results = []
  for task in args.tasks:
    for position in args.positions:
      for noise in args.target_noise:
        result = train_copy(config, shape, task, position, noise, args.steps, args.eval_every,
                            args.tag_channels, args.eval_batch, args.seed)
        common.emit({k: v for k, v in result.items() if k != "curve"})
        results.append(result)
  if args.json:
    with open(args.json, "w", encoding="utf-8") as f:
      json.dump({"command": common.command_line(), "level": args.level, "seed": args.seed,
                 "device": common.device_info(), "runs": results}, f, indent=1)
  return results


if __name__ == "__main__":
  main()
