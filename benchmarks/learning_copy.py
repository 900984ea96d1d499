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

Two place-task settings make the grid more like the study's images, step by step:
  * ``--garment_fraction``: the garment covers about 6 % of the study's pixels and the rest of I_c
    is black. Each example's garment is a square of that share of the grid at a random place;
    garment tokens outside it are zero and so is the target there. The person features mark the
    square (channel 0 is +1 inside, -1 outside), as the agnostic image's grey region does.
  * ``--pattern_share``: a garment is mostly one colour, with the pattern a part of its variance
    (58 % of the garment pixels' in the study). Each garment token is sqrt(1 - share) x a colour
    drawn once per example plus sqrt(share) x its own token. Reading the garment evenly, without
    its place, gives the colour: r2 = 1 - share; only the read by place gives the pattern.

``--stripe_period P`` draws each garment's own part as the study's stripes are drawn: a square
wave of period P tokens at a random angle and phase, in one random direction of the channels (two
colours), instead of white noise. Neighbouring tokens then carry nearly the same value.

``--token_channels K`` makes the tokens K-dimensional, as the study's RGB pixels are (K = 3): the
person and garment tokens then pass through learned 1 x 1 embeddings to the layer's channels and a
1 x 1 projection brings its output back to K, the network of benchmarks.learning_copy_pairs
(``make_token_copier``). With the layer's own channels (the default) the tokens are fed to it as
they are.

``--person_noise`` sets the person tokens' standard deviation (1 by default). The copier's person
pixels inside the garment are the agnostic image's black; at 0 the person tokens are zero but for
the garment mark, and the copier's path from them through its embeddings is a constant.

``--position_init_scale`` starts the position code's query and key projections at a multiple of
their initialisation (the place logits at its square): how the plateau depends on where it starts.

Each step draws a fresh batch (the task has no training set to overfit), unless
``--train_batches N`` fixes a training set: N batches drawn once and walked in order, epoch after
epoch, as the copier walks the study's 1,024 pairs (128 batches of 8) in file order.
``--target_noise`` adds Gaussian noise of that standard deviation to the training targets (never
to the held-out ones): the diffusion loss carries the pattern as a small part of a noisy target,
and this shows how the noise slows the copy. Every --eval_every steps, on a fixed held-out batch:
  * ``r2``: 1 - MSE / mean square of the target, over the scored channels (0 = the mean, 1 = a
    perfect copy); ``pattern_r2``: 1 - MSE / mean square of the target's pattern (the target less
    its colour; r2 when there is no colour), 0 for the colour alone;
  * ``right_mass``: the attention weight on the garment token to be read (head mean, over the
    person tokens inside the garment; even attention puts 1 / side^2 there).
Per run: the curve, the first evaluated step with r2 (and pattern_r2) >= 0.5 and >= 0.9 (null if
never), seconds, and ``read_bound_pattern_r2``: the pattern_r2 a perfect read (all weight on the
right token) would give at best. The layer's context GroupNorm divides each example's garment
features by statistics taken over its grid, which a colour dominates: the copy's scale is lost.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

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
  p.add_argument("--garment_fraction", nargs="+", type=float, default=[1.0],
                 help="place task: share of the grid the garment covers (the rest is zero)")
  p.add_argument("--pattern_share", nargs="+", type=float, default=[1.0],
                 help="place task: share of each garment token's variance that is its own "
                      "(the pattern); the rest is one colour per example")
  p.add_argument("--stripe_period", nargs="+", type=float, default=[0.0],
                 help="place task: the garment tokens' own part is a square-wave stripe of this "
                      "period in tokens, at a random angle and phase (0: white noise)")
  p.add_argument("--token_channels", nargs="+", type=int, default=[0],
                 help="dimensions of the tokens, embedded by 1x1 maps as the copier's RGB pixels "
                      "(0: the layer's channels, no embedding)")
  p.add_argument("--person_noise", nargs="+", type=float, default=[1.0],
                 help="place task: standard deviation of the person tokens (0: only the garment "
                      "mark, as the agnostic image's black box)")
  p.add_argument("--position_init_scale", nargs="+", type=float, default=[1.0],
                 help="the position code's query and key projections start at this multiple of "
                      "their initialisation")
  p.add_argument("--train_batches", nargs="+", type=int, default=[0],
                 help="place task: a training set of this many fixed batches, walked in order "
                      "(0: a fresh batch every step)")
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
  if any(not 0 < f <= 1 for f in args.garment_fraction):
    p.error(f"--garment_fraction={args.garment_fraction}: shares must be in (0, 1]")
  if any(not 0 < f <= 1 for f in args.pattern_share):
    p.error(f"--pattern_share={args.pattern_share}: shares must be in (0, 1]")
  if any(not s > 0 for s in args.position_init_scale):
    p.error(f"--position_init_scale={args.position_init_scale} must be > 0 (at 0 the query and "
            "key projections, each other's only gradient, never move)")
  if any(k < 0 for k in args.token_channels):
    p.error(f"--token_channels={args.token_channels} must be >= 0")
  if any(0 < t < 2 or t < 0 for t in args.stripe_period):
    p.error(f"--stripe_period={args.stripe_period}: periods must be 0 (white noise) or >= 2 "
            "tokens")
  if any(n < 0 for n in args.train_batches):
    p.error(f"--train_batches={args.train_batches} must be >= 0")
  if any(s < 0 for s in args.person_noise):
    p.error(f"--person_noise={args.person_noise}: standard deviations must be >= 0")
  if ((min(args.garment_fraction + args.pattern_share) < 1 or max(args.stripe_period) > 0
       or args.person_noise != [1.0] or max(args.train_batches) > 0)
      and "content" in args.tasks):
    p.error("--garment_fraction and --pattern_share below 1, --stripe_period, --person_noise and "
            "--train_batches are place-task settings: pass --tasks place")
  return args


def layer_shape(config, level: int) -> dict[str, int | str]:
  """The cross-attention of model level ``level``: grid side, channels, head size, context norm."""
  m = config.model
  if not 0 <= level < len(m.channels):
    raise SystemExit(f"--level={level}: the model has levels 0..{len(m.channels) - 1}")
  return {"side": m.resolution >> level, "channels": m.channels[level], "head_dim": m.head_dim,
          "context_norm": m.get("cross_attention_context_norm", "group")}


def garment_side(side: int, garment_fraction: float) -> int:
  """Side of the square garment covering ``garment_fraction`` of a side x side grid."""
  return max(1, min(side, round(side * garment_fraction ** 0.5)))


class CopyBatch(NamedTuple):
  """One batch of the copy task (B examples, S x S tokens, C channels)."""
  x: Any  # [B, S, S, C] person features
  context: Any  # [B, S, S, C] garment features
  target: Any  # [B, S, S, C] what the layer must add to x
  read: Any  # [B, S*S] int32: the garment token each person token must read
  scored: Any  # [C] bool: the channels scored
  garment: Any  # [B, S*S] bool: the person tokens inside the garment, whose read is scored
  pattern: Any  # [B, S, S, C] the target less its colour: what only a read by place gives


def stripes(key, batch: int, side: int, channels: int, period: float):
  """[batch, side^2, channels]: per example, a square wave of ``period`` tokens at a random angle
  and phase (+1 / -1, the stripe and the ground) times one random direction of the channels."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  k_angle, k_phase, k_direction = jax.random.split(key, 3)
  angle = jax.random.uniform(k_angle, (batch, 1), maxval=jnp.pi)
  phase = jax.random.uniform(k_phase, (batch, 1), maxval=2 * jnp.pi)
  rows, cols = jnp.divmod(jnp.arange(side * side), side)
  across = rows * jnp.cos(angle) + cols * jnp.sin(angle)  # [batch, n] tokens across the stripes
  wave = jnp.where(jnp.sin(2 * jnp.pi * across / period + phase) >= 0, 1.0, -1.0)
  return wave[..., None] * jax.random.normal(k_direction, (batch, 1, channels))


def make_batch(key, task: str, batch: int, side: int, channels: int, tag_channels: int,
               garment_fraction: float = 1.0, pattern_share: float = 1.0,
               stripe_period: float = 0.0, person_noise: float = 1.0) -> CopyBatch:
  """One batch of the copy task. ``garment_fraction``, ``pattern_share``, ``stripe_period``
  (> 0: the garment tokens' own part is ``stripes`` of that period, not white noise) and
  ``person_noise`` (the standard deviation of the person tokens) apply to ``place``."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  n = side * side
  k_x, k_ctx, k_perm, k_place, k_colour, k_stripes = jax.random.split(key, 6)
  if stripe_period:
    context = stripes(k_stripes, batch, side, channels, stripe_period)
  else:
    context = jax.random.normal(k_ctx, (batch, n, channels))
  if task == "place":
    read = jnp.broadcast_to(jnp.arange(n), (batch, n))
    x = person_noise * jax.random.normal(k_x, (batch, n, channels))
    scored = jnp.ones(channels, bool)
  elif task == "content":
    if garment_fraction < 1 or pattern_share < 1 or stripe_period or person_noise != 1:
      raise ValueError(f"garment_fraction={garment_fraction}, pattern_share={pattern_share}, "
                       f"stripe_period={stripe_period}, person_noise={person_noise}: the content "
                       "task takes none of them")
    read = jax.vmap(lambda k: jax.random.permutation(k, n))(jax.random.split(k_perm, batch))
    scored = jnp.arange(channels) >= tag_channels
  else:
    raise ValueError(f"task={task!r}: expected one of {TASKS}")
  g = garment_side(side, garment_fraction)
  corner = jax.random.randint(k_place, (batch, 2, 1), 0, side - g + 1)  # top-left (row, col)
  rows, cols = jnp.divmod(jnp.arange(n), side)
  garment = ((rows >= corner[:, 0]) & (rows < corner[:, 0] + g)
             & (cols >= corner[:, 1]) & (cols < corner[:, 1] + g))  # [B, n]
  colour = (1.0 - pattern_share) ** 0.5 * jax.random.normal(k_colour, (batch, 1, channels))
  pattern = pattern_share ** 0.5 * context * garment[..., None]
  context = colour * garment[..., None] + pattern
  if garment_fraction < 1:  # as the agnostic image's grey region does, x marks the garment
    x = x.at[..., 0].set(jnp.where(garment, 1.0, -1.0))
  to_read = jnp.take_along_axis(context, read[..., None], axis=1)  # pi(p)'s token at p
  if task == "content":
    x = jnp.where(scored, 0.0, to_read)  # p carries pi(p)'s tag, nothing else
  target = jnp.where(scored, to_read, 0.0)
  pattern = jnp.where(scored, jnp.take_along_axis(pattern, read[..., None], axis=1), 0.0)
  shape = (batch, side, side, channels)
  return CopyBatch(x.reshape(shape), context.reshape(shape), target.reshape(shape), read, scored,
                   garment, pattern.reshape(shape))


def copy_scores(delta, weights, batch: CopyBatch) -> dict[str, float]:
  """delta: [B, S, S, C] the layer's output less x; weights: [B, heads, S*S, S*S].

  Returns ``r2`` (1 - MSE / mean square of the target) and ``pattern_r2`` (the same MSE over the
  mean square of the target's pattern: 0 for the colour alone) over the scored channels, and
  ``right_mass`` over the person tokens inside the garment.
  """
  scored = np.asarray(batch.scored)
  d, t, pattern = (np.asarray(a)[..., scored] for a in (delta, batch.target, batch.pattern))
  mse = float(np.mean((d - t) ** 2))
  w = np.asarray(weights).mean(axis=1)  # [B, T, S']
  right = np.take_along_axis(w, np.asarray(batch.read)[..., None], axis=-1)[..., 0]
  return {"r2": 1.0 - mse / float(np.mean(t ** 2)),
          "pattern_r2": 1.0 - mse / float(np.mean(pattern ** 2)),
          "right_mass": float(right[np.asarray(batch.garment)].mean())}


def read_bound(normed_context, batch: CopyBatch) -> float:
  """pattern_r2 of the best a layer can do that reads every token perfectly.

  normed_context: [B, S, S, C], the garment features as the layer's value projection sees them
  (after its context GroupNorm, whose statistics are each example's). Fits one affine map from
  them, read where ``batch.read`` says, to the target by least squares over the batch (the value
  and output projections are such a map) and scores it as ``copy_scores`` does.
  """
  from benchmarks import learning  # pylint: disable=g-import-not-at-top
  b, s, _, c = normed_context.shape
  z = np.asarray(normed_context).reshape(b, s * s, c)
  z = np.take_along_axis(z, np.asarray(batch.read)[..., None], axis=1).reshape(-1, c)
  scored = np.asarray(batch.scored)
  t = np.asarray(batch.target)[..., scored].reshape(z.shape[0], -1)
  pattern = np.asarray(batch.pattern)[..., scored]
  return 1.0 - float(np.mean(learning.pattern_residual(t, z) ** 2) / np.mean(pattern ** 2))


def make_token_copier(shape: dict[str, int | str], position: str, seed: int, token_channels: int):
  """``pred = x + out(attn(embed_person(x), embed_garment(context)))``: one CrossAttention of
  ``shape`` between learned 1 x 1 maps from and back to ``token_channels`` (3 for RGB pixels)."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from flax import nnx  # pylint: disable=g-import-not-at-top
  from tryon_jax.models import layers  # pylint: disable=g-import-not-at-top
  channels = shape["channels"]

  class Copier(nnx.Module):

    def __init__(self, rngs: nnx.Rngs):
      kw = {"rngs": rngs, "dtype": jnp.float32}
      self.embed_person = layers.conv(token_channels, channels, 1, **kw)
      self.embed_garment = layers.conv(token_channels, channels, 1, **kw)
      self.attn = layers.CrossAttention(channels, channels, shape["head_dim"], position=position,
                                        grid_side=shape["side"],
                                        context_norm=shape["context_norm"], **kw)
      self.out = layers.conv(channels, token_channels, 1, **kw)

    def __call__(self, x, context, query_to_context=None):
      """x, context: [B, S, S, token_channels] (query_to_context: the pose's maps, for the
      "pose_*" positions) -> the prediction [B, S, S, token_channels]."""
      return x + self.out(self.attn(self.embed_person(x), self.embed_garment(context),
                                    query_to_context))

    def normed_context(self, context):
      """The garment features as the attention's value projection sees them."""
      return self.attn.context_norm(self.embed_garment(context))

  with nnx.use_eager_sharding(False):
    return Copier(nnx.Rngs(seed))


def call_recording_weights(model, attn, x, context, *args):
  """``model(x, context, *args)`` and the attention weights [B, heads, T, S] of its one
  CrossAttention ``attn`` (which may be ``model`` itself), read back with nnx.capture; for use
  under jit."""
  from flax import nnx  # pylint: disable=g-import-not-at-top
  attn.record_weights = True
  out, recorded = nnx.capture(model, nnx.Intermediate)(x, context, *args)
  ((_, weights),) = nnx.to_flat_state(recorded)
  return out, weights.get_value()[0]


def scale_position_code(attn, scale: float) -> None:
  """Multiplies a CrossAttention's position-code query and key projections by ``scale`` (its
  place logits by scale^2), in place; nothing without a position code."""
  if attn.position_q is not None:
    for projection in (attn.position_q, attn.position_k):
      projection.kernel.value = scale * projection.kernel.value


def batch_keys(seed: int, steps: int, train_batches: int = 0) -> list:
  """The key of each training step's batch: a fresh one every step, or (``train_batches`` > 0)
  the keys of that many fixed batches, in order, epoch after epoch."""
  import jax  # pylint: disable=g-import-not-at-top
  if train_batches:
    fixed = [jax.random.fold_in(jax.random.key(seed), j) for j in range(train_batches)]
    return [fixed[i % train_batches] for i in range(steps)]
  keys, key = [], jax.random.key(seed)
  for _ in range(steps):
    key, sub = jax.random.split(key)
    keys.append(sub)
  return keys


def train_copy(config, shape: dict[str, int | str], task: str, position: str, target_noise: float,
               steps: int, eval_every: int, tag_channels: int, eval_batch: int,
               seed: int, garment_fraction: float = 1.0, pattern_share: float = 1.0,
               token_channels: int = 0, stripe_period: float = 0.0,
               position_init_scale: float = 1.0, person_noise: float = 1.0,
               train_batches: int = 0) -> dict:
  """Trains one fresh cross-attention layer on the copy task; returns its curve and marks.

  ``token_channels`` > 0: the tokens have that many dimensions and the layer sits in
  ``make_token_copier``; 0: the tokens have the layer's channels and are fed to it as they are.
  ``position_init_scale`` multiplies the position code's initial query and key projections.
  ``train_batches`` > 0: step i trains on batch i mod train_batches of a fixed set; 0: a fresh
  batch every step.
  """
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top
  from flax import nnx  # pylint: disable=g-import-not-at-top
  from tryon_jax.models import layers  # pylint: disable=g-import-not-at-top
  from tryon_jax.train import optim  # pylint: disable=g-import-not-at-top

  side = shape["side"]
  channels = token_channels or shape["channels"]
  tags = tag_channels or channels // 2
  batch = config.train.batch_size
  if token_channels:
    model = make_token_copier(shape, position, seed, token_channels)
    attn = model.attn
  else:
    with nnx.use_eager_sharding(False):
      model = attn = layers.CrossAttention(channels, channels, shape["head_dim"],
                                           rngs=nnx.Rngs(seed), dtype=jnp.float32,
                                           position=position, grid_side=side,
                                           context_norm=shape["context_norm"])
  scale_position_code(attn, position_init_scale)
  graphdef, params = nnx.split(model, nnx.Param)
  tx = optim.make_optimizer(config.train)
  opt_state = tx.init(params)

  def delta(p, x, context):
    return nnx.merge(graphdef, p)(x, context) - x

  @jax.jit
  def step(p, opt_state, key):
    k_batch, k_noise = jax.random.split(key)
    b = make_batch(k_batch, task, batch, side, channels, tags, garment_fraction, pattern_share,
                   stripe_period, person_noise)
    noisy = b.target + target_noise * jax.random.normal(k_noise, b.target.shape) * b.scored

    def loss_fn(p):
      return jnp.mean((delta(p, b.x, b.context) - noisy) ** 2)

    loss, grads = jax.value_and_grad(loss_fn)(p)
    updates, opt_state = tx.update(grads, opt_state, p)
    return optax.apply_updates(p, updates), opt_state, loss

  held_out = make_batch(jax.random.key(seed + 10_000), task, eval_batch, side, channels, tags,
                        garment_fraction, pattern_share, stripe_period, person_noise)

  @jax.jit
  def evaluate(p):
    model = nnx.merge(graphdef, p)
    out, weights = call_recording_weights(model, model.attn if token_channels else model,
                                          held_out.x, held_out.context)
    return out - held_out.x, weights

  def score(p):
    return copy_scores(*evaluate(p), held_out)

  curve = [{"step": 0, **score(params)}]
  start = time.perf_counter()
  for i, sub in enumerate(batch_keys(seed, steps, train_batches), 1):
    params, opt_state, loss = step(params, opt_state, sub)
    if i % eval_every == 0 or i == steps:
      curve.append({"step": i, "train_loss": float(loss), **score(params)})
  seconds = time.perf_counter() - start
  # At the trained embedding (without one the bound does not depend on the training: the norm's
  # scale and bias are a per-channel affine map, which the fitted map absorbs).
  model = nnx.merge(graphdef, params)
  bound = read_bound((model.normed_context if token_channels else model.context_norm)(
      held_out.context), held_out)
  marks = {f"steps_to_{score}_{m}": next((c["step"] for c in curve if c[score] >= m), None)
           for score in ("r2", "pattern_r2") for m in R2_MARKS}
  return {"task": task, "position": position, "target_noise": target_noise,
          "garment_fraction": garment_fraction,
          "garment_side": garment_side(side, garment_fraction), "pattern_share": pattern_share,
          "token_channels": token_channels, "stripe_period": stripe_period,
          "position_init_scale": position_init_scale, "person_noise": person_noise,
          "train_batches": train_batches, **shape,
          "heads": shape["channels"] // shape["head_dim"],
          "tag_channels": tags if task == "content" else 0, "batch": batch, "lr": config.train.lr,
          "steps": steps, "seconds": round(seconds, 1), "final_r2": curve[-1]["r2"],
          "final_pattern_r2": curve[-1]["pattern_r2"], "read_bound_pattern_r2": bound,
          "final_right_mass": curve[-1]["right_mass"],
          "even_right_mass": 1.0 / (side * side), **marks, "curve": curve}


def main(argv: Sequence[str] | None = None) -> list[dict]:
  args = parse_args(argv)
  from benchmarks import common  # pylint: disable=g-import-not-at-top
  from configs import learning  # pylint: disable=g-import-not-at-top
  config = learning.get_config(args.variant)
  common.apply_overrides(config, args.set)
  shape = layer_shape(config, args.level)
  for tokens in args.token_channels:
    if "content" in args.tasks and args.tag_channels >= (tokens or shape["channels"]):
      raise SystemExit(f"--tag_channels={args.tag_channels} leaves no value channels of "
                       f"{tokens or shape['channels']}")
  results = []
  for task in args.tasks:
    for position in args.positions:
      for noise in args.target_noise:
        for fraction, share, tokens, period, scale, person, pool in itertools.product(
            args.garment_fraction, args.pattern_share, args.token_channels, args.stripe_period,
            args.position_init_scale, args.person_noise, args.train_batches):
          result = train_copy(config, shape, task, position, noise, args.steps, args.eval_every,
                              args.tag_channels, args.eval_batch, args.seed, fraction, share,
                              tokens, period, scale, person, pool)
          common.emit({k: v for k, v in result.items() if k != "curve"})
          results.append(result)
  if args.json:
    with open(args.json, "w", encoding="utf-8") as f:
      json.dump({"command": common.command_line(), "level": args.level, "seed": args.seed,
                 "device": common.device_info(), "runs": results}, f, indent=1)
  return results


if __name__ == "__main__":
  main()
