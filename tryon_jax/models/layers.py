"""Building blocks shared by the Parallel-UNet and the Efficient-UNet.

Every parameter carries logical axis names (resolved to mesh axes in tryon_jax/parallel/sharding.py).
Layers compute in ``dtype`` (bfloat16 for mixed precision) and keep float32 parameters; group norms
and softmax statistics run in float32.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from tryon_jax.parallel.sharding import constrain

_wp = nnx.with_partitioning
_zeros = nnx.initializers.zeros_init()
_ones = nnx.initializers.ones_init()
_fan_in = nnx.initializers.variance_scaling(1.0, "fan_in", "truncated_normal")
_fan_avg = nnx.initializers.variance_scaling(1.0, "fan_avg", "uniform")

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def dtype_from_name(name: str) -> jnp.dtype:
  if name not in DTYPES:
    raise ValueError(f"model.dtype={name!r}: expected one of {sorted(DTYPES)}")
  return DTYPES[name]


REMAT_POLICIES = ("nothing_saveable", "dots_saveable", "dots_with_no_batch_dims_saveable")


def remat_policy(cfg) -> object | None:
  """model.remat / model.remat_policy -> None (no remat) or a jax.checkpoint_policies function.

  "nothing_saveable" recomputes the whole block in the backward pass (least memory);
  "dots_saveable" keeps every conv and matmul output and recomputes only the cheap ops between
  them (norms, activations, softmax); "dots_with_no_batch_dims_saveable" keeps only the matmuls
  without batch dimensions (the projections, not the attention scores or convs).
  """
  if not cfg.remat:
    return None
  name = cfg.get("remat_policy", "nothing_saveable")
  if name not in REMAT_POLICIES:
    raise ValueError(f"model.remat_policy={name!r}: expected one of {REMAT_POLICIES}")
  return getattr(jax.checkpoint_policies, name)


def call_block(block: nnx.Module, policy, *args):
  """``block(*args)``, rematerialized in the backward pass under ``policy`` (from remat_policy)
  unless it is None."""
  if policy is None:
    return block(*args)
  return nnx.remat(lambda blk, *a: blk(*a), policy=policy)(block, *args)


def num_groups(channels: int) -> int:
  """GroupNorm groups as the paper sets them: min(32, C // 4)."""
  return max(1, min(32, channels // 4))


def conv(in_ch: int, out_ch: int, kernel: int, *, rngs: nnx.Rngs, dtype, stride: int = 1,
         zero_init: bool = False) -> nnx.Conv:
  """A 'SAME' 2D convolution with logically partitioned kernel [kh, kw, in, out]."""
  return nnx.Conv(
      in_ch, out_ch, (kernel, kernel), strides=(stride, stride), padding="SAME",
      dtype=dtype, param_dtype=jnp.float32, rngs=rngs,
      kernel_init=_wp(_zeros if zero_init else _fan_avg, ("kh", "kw", "conv_in", "conv_out")),
      bias_init=_wp(_zeros, ("conv_out",)))


def linear(in_dim: int, out_dim: int, axes: tuple[str, str], *, rngs: nnx.Rngs, dtype,
           use_bias: bool = True, zero_init: bool = False) -> nnx.Linear:
  """A dense layer with logically partitioned kernel [in, out] (axes name both dims)."""
  return nnx.Linear(
      in_dim, out_dim, use_bias=use_bias, dtype=dtype, param_dtype=jnp.float32, rngs=rngs,
      kernel_init=_wp(_zeros if zero_init else _fan_in, axes),
      bias_init=_wp(_zeros, (axes[1],)))


class _Float32Norm(nnx.Module):
  """A flax norm (``self.norm``, set by the subclass) run in float32, cast back to the input dtype.

  Scale 1 and shift 0 at init, parameters under the logical axis "norm"."""

  _affine_init = {"scale_init": _wp(_ones, ("norm",)), "bias_init": _wp(_zeros, ("norm",))}

  def __call__(self, x: jax.Array) -> jax.Array:
    """x: [B, ..., C] -> same shape and dtype."""
    return self.norm(x.astype(jnp.float32)).astype(x.dtype)


class GroupNorm(_Float32Norm):
  """GroupNorm with min(32, C//4) groups, statistics in float32, output cast back to input dtype."""

  def __init__(self, channels: int, *, rngs: nnx.Rngs):
    self.norm = nnx.GroupNorm(
        channels, num_groups=num_groups(channels), epsilon=1e-5, dtype=jnp.float32,
        param_dtype=jnp.float32, rngs=rngs, **self._affine_init)


class TokenNorm(_Float32Norm):
  """LayerNorm over each token's channels (statistics per token, not per grid), in float32."""

  def __init__(self, channels: int, *, rngs: nnx.Rngs):
    self.norm = nnx.LayerNorm(channels, epsilon=1e-5, dtype=jnp.float32,
                              param_dtype=jnp.float32, rngs=rngs, **self._affine_init)


class FiLM(nnx.Module):
  """Feature-wise linear modulation with a full per-channel scale and shift.

  ``h * (1 + scale) + shift`` with (scale, shift) = Linear(swish(cond)); zero-initialized so a new
  block starts as the identity modulation.
  """

  def __init__(self, cond_dim: int, channels: int, *, rngs: nnx.Rngs, dtype):
    self.proj = linear(cond_dim, 2 * channels, ("embed", "mlp"), rngs=rngs, dtype=dtype,
                       zero_init=True)

  def __call__(self, h: jax.Array, cond: jax.Array) -> jax.Array:
    """h: [B, H, W, C]; cond: [B, D] -> [B, H, W, C]."""
    scale, shift = jnp.split(self.proj(nnx.swish(cond)), 2, axis=-1)
    return h * (1 + scale[:, None, None, :]) + shift[:, None, None, :]


class ResBlock(nnx.Module):
  """GN -> swish -> conv -> GN -> FiLM -> swish -> conv, plus a 1x1 conv on the skip path.

  FiLM sits after the second GroupNorm (the scale-shift-norm placement of Imagen / DDPM++).
  """

  def __init__(self, in_ch: int, out_ch: int, cond_dim: int, *, rngs: nnx.Rngs, dtype):
    self.norm1 = GroupNorm(in_ch, rngs=rngs)
    self.conv1 = conv(in_ch, out_ch, 3, rngs=rngs, dtype=dtype)
    self.norm2 = GroupNorm(out_ch, rngs=rngs)
    self.film = FiLM(cond_dim, out_ch, rngs=rngs, dtype=dtype)
    self.conv2 = conv(out_ch, out_ch, 3, rngs=rngs, dtype=dtype, zero_init=True)
    self.skip = conv(in_ch, out_ch, 1, rngs=rngs, dtype=dtype)

  def __call__(self, x: jax.Array, cond: jax.Array) -> jax.Array:
    """x: [B, H, W, Cin]; cond: [B, D] -> [B, H, W, Cout]."""
    h = self.conv1(nnx.swish(self.norm1(x)))
    h = self.film(self.norm2(h), cond)
    h = self.conv2(nnx.swish(h))
    return constrain(self.skip(x) + h, ("batch", "height", "width", "channels"))


class Downsample(nnx.Module):
  """Stride-2 3x3 convolution."""

  def __init__(self, in_ch: int, out_ch: int, *, rngs: nnx.Rngs, dtype):
    self.conv = conv(in_ch, out_ch, 3, stride=2, rngs=rngs, dtype=dtype)

  def __call__(self, x: jax.Array) -> jax.Array:
    """x: [B, H, W, Cin] -> [B, H/2, W/2, Cout]."""
    return self.conv(x)


class Upsample(nnx.Module):
  """Nearest-neighbour x2 upsampling followed by a 3x3 convolution."""

  def __init__(self, in_ch: int, out_ch: int, *, rngs: nnx.Rngs, dtype):
    self.conv = conv(in_ch, out_ch, 3, rngs=rngs, dtype=dtype)

  def __call__(self, x: jax.Array) -> jax.Array:
    """x: [B, H, W, Cin] -> [B, 2H, 2W, Cout]."""
    x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
    return self.conv(x)


ATTENTION_IMPLS = ("xla", "cudnn", "auto")


def attention_implementation(name: str, dtype) -> str:
  """model.attention_impl -> the ``implementation`` of jax.nn.dot_product_attention.

  "auto" picks "cudnn" (flash attention) on GPU for 16-bit compute and "xla" elsewhere: cuDNN's
  fused kernel needs fp16/bf16, and jax's own default (implementation=None) is always XLA.
  """
  if name not in ATTENTION_IMPLS:
    raise ValueError(f"model.attention_impl={name!r}: expected one of {ATTENTION_IMPLS}")
  if name != "auto":
    return name
  sixteen_bit = jnp.dtype(dtype) in (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))
  return "cudnn" if sixteen_bit and jax.default_backend() == "gpu" else "xla"


def multi_head_attention(q: jax.Array, k: jax.Array, v: jax.Array, num_heads: int,
                         kv_mask: jax.Array | None = None, implementation: str = "xla"
                         ) -> jax.Array:
  """Scaled dot-product attention over tokens.

  q: [B, T, C]; k, v: [B, S, C]; kv_mask: [B, S] (1 = attend) or None -> [B, T, C].
  implementation: "xla" or "cudnn" (jax.nn.dot_product_attention's flash-attention kernel, GPU
  only); see attention_implementation.
  """
  b, t, c = q.shape
  s = k.shape[1]
  head_dim = c // num_heads
  q = q.reshape(b, t, num_heads, head_dim)
  k = k.reshape(b, s, num_heads, head_dim)
  v = v.reshape(b, s, num_heads, head_dim)
  if kv_mask is None:
    out = jax.nn.dot_product_attention(q, k, v, implementation=implementation)
  elif implementation == "cudnn":  # cuDNN takes per-row key counts, not a [B, 1, 1, S] mask
    k, v, lengths = keys_attended_first(k, v, kv_mask)
    out = jax.nn.dot_product_attention(q, k, v, key_value_seq_lengths=lengths,
                                       implementation=implementation)
  else:
    mask = (kv_mask > 0)[:, None, None, :]  # [B, 1, 1, S] broadcast over heads and queries
    out = jax.nn.dot_product_attention(q, k, v, mask=mask, implementation=implementation)
  return out.reshape(b, t, c)


def keys_attended_first(k: jax.Array, v: jax.Array, kv_mask: jax.Array
                        ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Moves each row's attended keys (and their values) to the front, keeping their order.

  k, v: [B, S, ...]; kv_mask: [B, S] (1 = attend) -> (k, v, lengths [B] int32). Attention does
  not depend on the order of its keys, so attending to the first ``lengths`` keys of the result
  equals the masked attention. On an H100 (jax 0.11.2) cuDNN refused the [B, 1, 1, S] mask of
  the pose tokens ("Bias must have same seq length as QKV"); jax's cuDNN path takes such lengths
  as a padding mask instead, and accepted base128's shapes that way on the H100.
  """
  attended = kv_mask > 0
  order = jnp.argsort(~attended, axis=1, stable=True)  # attended (False) before masked (True)
  index = order.reshape(order.shape + (1,) * (k.ndim - 2))
  k = jnp.take_along_axis(k, index, axis=1)
  v = jnp.take_along_axis(v, index, axis=1)
  return k, v, jnp.sum(attended, axis=1, dtype=jnp.int32)


class SelfAttention(nnx.Module):
  """Spatial multi-head self-attention whose keys/values also include pose tokens.

  The paper fuses the pose embeddings into the person UNet by concatenating them to the key-value
  pairs of each self-attention layer: K, V = [W x ; W' pose], the pose tokens masked where absent.
  """

  def __init__(self, channels: int, head_dim: int, pose_dim: int | None, *, rngs: nnx.Rngs, dtype,
               attention_impl: str = "xla"):
    if channels % head_dim:
      raise ValueError(f"model.head_dim={head_dim} does not divide {channels} channels")
    self.num_heads = channels // head_dim
    self.implementation = attention_implementation(attention_impl, dtype)
    self.norm = GroupNorm(channels, rngs=rngs)
    self.qkv = linear(channels, 3 * channels, ("embed", "heads"), rngs=rngs, dtype=dtype)
    self.pose_kv = (linear(pose_dim, 2 * channels, ("embed", "heads"), rngs=rngs, dtype=dtype)
                    if pose_dim else None)
    self.out = linear(channels, channels, ("heads", "embed"), rngs=rngs, dtype=dtype,
                      zero_init=True)

  def __call__(self, x: jax.Array, pose_tokens: jax.Array | None = None,
               pose_mask: jax.Array | None = None) -> jax.Array:
    """x: [B, H, W, C]; pose_tokens: [B, P, Dp]; pose_mask: [B, P] -> [B, H, W, C]."""
    b, h, w, c = x.shape
    tokens = self.norm(x).reshape(b, h * w, c)
    q, k, v = jnp.split(self.qkv(tokens), 3, axis=-1)
    mask = None
    if self.pose_kv is not None and pose_tokens is not None:
      pk, pv = jnp.split(self.pose_kv(pose_tokens.astype(tokens.dtype)), 2, axis=-1)
      k = jnp.concatenate([k, pk], axis=1)
      v = jnp.concatenate([v, pv], axis=1)
      mask = jnp.concatenate([jnp.ones((b, h * w), pose_mask.dtype), pose_mask], axis=1)
    out = multi_head_attention(q, k, v, self.num_heads, mask, self.implementation)
    return x + self.out(out).reshape(b, h, w, c)


CROSS_ATTENTION_POSITIONS = ("none", "fourier", "pose_affine", "pose_parts")
# The codes that place a query where the poses send it, read from CrossAttention's query_to_context.
POSE_POSITIONS = ("pose_affine", "pose_parts")
# How the cross-attention normalises its garment context: "group", the blocks' GroupNorm (one set
# of statistics per example over the whole grid), or "token", a LayerNorm per garment token.
CROSS_ATTENTION_CONTEXT_NORMS = {"group": GroupNorm, "token": TokenNorm}


def fourier_features(places: jax.Array, side: int) -> jax.Array:
  """Fourier features of places [..., 2] (x, y), in image units (the grid spans (0, 1)).

  Each coordinate u is encoded by sin and cos of pi * 2^k * u for k = 0 .. ceil(log2 side): the
  lowest frequency spans the grid once, the highest alternates from one of its tokens to the next.
  Returns [..., grid_fourier_size(side)] float32 (y features, then x).
  """
  num_freqs = grid_fourier_size(side) // 4
  freqs = math.pi * 2.0 ** jnp.arange(num_freqs, dtype=jnp.float32)
  y = places[..., 1:2].astype(jnp.float32) * freqs
  x = places[..., 0:1].astype(jnp.float32) * freqs
  return jnp.concatenate([jnp.sin(y), jnp.cos(y), jnp.sin(x), jnp.cos(x)], axis=-1)


def grid_places(height: int, width: int) -> jax.Array:
  """[height * width, 2] (x, y) token centres of a [height, width] grid in (0, 1), row-major."""
  y = (jnp.arange(height, dtype=jnp.float32) + 0.5) / height
  x = (jnp.arange(width, dtype=jnp.float32) + 0.5) / width
  yy, xx = jnp.meshgrid(y, x, indexing="ij")
  return jnp.stack([xx.ravel(), yy.ravel()], axis=-1)


def map_places(places: jax.Array, maps: jax.Array) -> jax.Array:
  """places [N, 2] (x, y) sent through per-example affine maps [B, 3, 2], as [x, y, 1] @ map:
  [B, N, 2]."""
  return jnp.concatenate([places, jnp.ones_like(places[:, :1])], axis=-1) @ maps


class PartMaps(NamedTuple):
  """Person -> garment place maps of a batch, one per body part ("pose_parts"; pose.part_maps).

  Part 0 is the torso, parts 1.. the limbs. A person place takes the map of the part nearest it in
  the person image (part_places): the torso inside its outline, else the nearest of the torso's
  outline and the valid limb segments.
  """
  maps: jax.Array  # [B, 1 + L, 3, 2] affine maps: garment place = [x, y, 1] @ map
  torso_outline: jax.Array  # [B, Q, 2] the person's torso outline, a convex polygon in order
  outline_valid: jax.Array  # [B] 1 where all its keypoints are present (else torso everywhere)
  limbs: jax.Array  # [B, L, 2, 2] each limb's (start, end) in the person image
  limb_valid: jax.Array  # [B, L] 1 where both ends are present in both poses


def _segment_distances(places: jax.Array, starts: jax.Array, ends: jax.Array) -> jax.Array:
  """Distance of places [N, 2] to segments starts/ends [B, S, 2] -> [B, S, N]."""
  along = (ends - starts)[:, :, None]  # [B, S, 1, 2]
  offset = places[None, None] - starts[:, :, None]  # [B, S, N, 2]
  length2 = jnp.maximum(jnp.sum(along * along, axis=-1), 1e-12)
  t = jnp.clip(jnp.sum(offset * along, axis=-1) / length2, 0.0, 1.0)
  return jnp.linalg.norm(offset - t[..., None] * along, axis=-1)


def part_places(places: jax.Array, parts: PartMaps) -> jax.Array:
  """places [N, 2] (x, y) sent through the map of the body part nearest each: [B, N, 2]."""
  outline = parts.torso_outline
  following = jnp.roll(outline, -1, axis=1)
  edges = following - outline  # [B, Q, 2]
  offset = places[None, None] - outline[:, :, None]  # [B, Q, N, 2]
  side = edges[:, :, None, 0] * offset[..., 1] - edges[:, :, None, 1] * offset[..., 0]
  inside = jnp.all(side >= 0, axis=1) | jnp.all(side <= 0, axis=1)  # [B, N]: a convex polygon
  to_torso = jnp.min(_segment_distances(places, outline, following), axis=1)
  # An incomplete outline gives the torso every place: the code falls back to "pose_affine".
  to_torso = jnp.where(inside | (parts.outline_valid[:, None] < 0.5), 0.0, to_torso)
  to_limbs = _segment_distances(places, parts.limbs[:, :, 0], parts.limbs[:, :, 1])
  to_limbs = jnp.where(parts.limb_valid[..., None] > 0.5, to_limbs, jnp.inf)
  nearest = jnp.argmin(jnp.concatenate([to_torso[:, None], to_limbs], axis=1), axis=1)  # [B, N]
  mapped = jnp.einsum("nk,bpkj->bpnj", jnp.concatenate([places, jnp.ones_like(places[:, :1])], -1),
                      parts.maps)  # [B, P, N, 2]
  return jnp.take_along_axis(mapped, nearest[:, None, :, None], axis=1)[:, 0]


def pose_places(places: jax.Array, query_to_context: jax.Array | PartMaps) -> jax.Array:
  """places [N, 2] sent where the poses send them -> [B, N, 2]: through affine maps [B, 3, 2]
  ("pose_affine", map_places) or the body parts' maps (PartMaps, "pose_parts", part_places)."""
  if isinstance(query_to_context, PartMaps):
    return part_places(places, query_to_context)
  return map_places(places, query_to_context)


def grid_fourier_features(height: int, width: int) -> jax.Array:
  """fourier_features of the token centres of a [height, width] grid: [height * width, F]."""
  return fourier_features(grid_places(height, width), max(height, width))


def grid_fourier_size(side: int) -> int:
  """Width of grid_fourier_features for a grid whose longer side is ``side`` tokens."""
  return 4 * (math.ceil(math.log2(max(side, 1))) + 1)


class CrossAttention(nnx.Module):
  """Spatial multi-head cross-attention: Q from person tokens, K/V from garment tokens.

  This is the paper's implicit warp: every person location can read any garment location. With
  ``position="fourier"`` (not in the paper; see configs/base128.py), learned projections of each
  token's grid position are added to its query and key (not its value), so a person token can ask
  for a garment place as well as for garment content. With ``position="pose_affine"`` (not in the
  paper either) the query's code is that of the place the pose maps it to in I_c
  (``query_to_context``, pose.keypoint_affine): a query then asks for a garment place at its own
  code where the same body point shows, so that reading by place is a warp. With
  ``position="pose_parts"`` each query is mapped by the body part nearest it instead (the torso's
  map, or a limb's: PartMaps), so that a sleeve's query follows its arm. ``grid_side`` is the
  token grid's side, needed by the codes to size those projections. With "none" the layer is blind
  to where a garment token sits: permuting the garment grid changes nothing in its output.
  ``context_norm`` names the garment context's norm (CROSS_ATTENTION_CONTEXT_NORMS): with "group" a
  garment token's normalised features depend on the whole garment grid's statistics, with "token" on
  its own only.
  """

  def __init__(self, channels: int, context_channels: int, head_dim: int, *, rngs: nnx.Rngs,
               dtype, attention_impl: str = "xla", position: str = "none",
               grid_side: int | None = None, context_norm: str = "group"):
    if channels % head_dim:
      raise ValueError(f"model.head_dim={head_dim} does not divide {channels} channels")
    if position not in CROSS_ATTENTION_POSITIONS:
      raise ValueError(f"model.cross_attention_position={position!r}: expected one of "
                       f"{CROSS_ATTENTION_POSITIONS}")
    if context_norm not in CROSS_ATTENTION_CONTEXT_NORMS:
      raise ValueError(f"model.cross_attention_context_norm={context_norm!r}: expected one of "
                       f"{tuple(CROSS_ATTENTION_CONTEXT_NORMS)}")
    self.num_heads = channels // head_dim
    self.implementation = attention_implementation(attention_impl, dtype)
    self.norm = GroupNorm(channels, rngs=rngs)
    self.context_norm = CROSS_ATTENTION_CONTEXT_NORMS[context_norm](context_channels, rngs=rngs)
    self.q = linear(channels, channels, ("embed", "heads"), rngs=rngs, dtype=dtype)
    self.kv = linear(context_channels, 2 * channels, ("embed", "heads"), rngs=rngs, dtype=dtype)
    self.out = linear(channels, channels, ("heads", "embed"), rngs=rngs, dtype=dtype,
                      zero_init=True)
    if position != "none" and not grid_side:
      raise ValueError(f"CrossAttention(position={position!r}) needs grid_side")

    def position_projection():
      # Not zero-initialised: the query and key projections are each other's only gradient path.
      return linear(grid_fourier_size(grid_side), channels, ("embed", "heads"), rngs=rngs,
                    dtype=dtype, use_bias=False)

    self.position_q = position_projection() if position != "none" else None
    self.position_k = position_projection() if position != "none" else None
    self.position = position
    self.grid_side = grid_side
    # Set by benchmarks.learning_attention (never in training): each call then sows its attention
    # weights [B, heads, H*W, H'*W'] as an nnx.Intermediate named "weights" (read by nnx.capture).
    self.record_weights = False

  def __call__(self, x: jax.Array, context: jax.Array,
               query_to_context: jax.Array | None = None) -> jax.Array:
    """x: [B, H, W, C] person features; context: [B, H', W', C'] garment features;
    query_to_context: where the poses send person places in the garment image (x, y in [0, 1]):
    affine maps [B, 3, 2] for position="pose_affine", PartMaps for "pose_parts", read by these
    only -> [B, H, W, C]."""
    b, h, w, c = x.shape
    q = self.q(self.norm(x).reshape(b, h * w, c))
    ctx = self.context_norm(context)
    ctx_h, ctx_w = ctx.shape[1:3]
    ctx = ctx.reshape(b, -1, ctx.shape[-1])
    k, v = jnp.split(self.kv(ctx), 2, axis=-1)
    if self.position_q is not None:
      if max(h, w) != self.grid_side or max(ctx_h, ctx_w) != self.grid_side:
        raise ValueError(f"cross-attention built for a {self.grid_side}-token grid got person "
                         f"{h}x{w} and garment {ctx_h}x{ctx_w} tokens")
      places = grid_places(h, w)  # [H*W, 2]
      if self.position in POSE_POSITIONS:
        if query_to_context is None:
          raise ValueError(f"cross_attention_position={self.position!r} needs the pose maps")
        places = pose_places(places, query_to_context)
      else:
        places = places[None]
      q = q + self.position_q(fourier_features(places, self.grid_side).astype(q.dtype))
      k = k + self.position_k(grid_fourier_features(ctx_h, ctx_w).astype(k.dtype))[None]
    if self.record_weights:
      self.sow(nnx.Intermediate, "weights", attention_weights(q, k, self.num_heads))
    out = multi_head_attention(q, k, v, self.num_heads, implementation=self.implementation)
    return x + self.out(out).reshape(b, h, w, c)


def attention_weights(q: jax.Array, k: jax.Array, num_heads: int) -> jax.Array:
  """The softmax weights of multi_head_attention (unmasked): q [B, T, C], k [B, S, C] ->
  [B, heads, T, S] float32, each row summing to 1."""
  b, t, c = q.shape
  head_dim = c // num_heads
  q = q.reshape(b, t, num_heads, head_dim).astype(jnp.float32)
  k = k.reshape(b, k.shape[1], num_heads, head_dim).astype(jnp.float32)
  return jax.nn.softmax(jnp.einsum("bthd,bshd->bhts", q, k) / math.sqrt(head_dim), axis=-1)


def sinusoidal_embedding(x: jax.Array, dim: int, max_period: float = 10_000.0) -> jax.Array:
  """Transformer positional encoding of scalars. x: [B] (e.g. 1000 * t) -> [B, dim] float32."""
  half = dim // 2
  freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
  args = x.astype(jnp.float32)[:, None] * freqs[None, :]
  return jnp.concatenate([jnp.sin(args), jnp.cos(args)], axis=-1)


class ScalarEmbedding(nnx.Module):
  """Sinusoidal encoding of a level in [0, 1] (diffusion time or a noise-augmentation level),
  followed by a two-layer MLP."""

  def __init__(self, cond_dim: int, *, rngs: nnx.Rngs, dtype, scale: float = 1000.0):
    self.scale = scale
    self.fc1 = linear(cond_dim, cond_dim, ("embed", "mlp"), rngs=rngs, dtype=dtype)
    self.fc2 = linear(cond_dim, cond_dim, ("mlp", "embed"), rngs=rngs, dtype=dtype)
    self.dim = cond_dim

  def __call__(self, level: jax.Array) -> jax.Array:
    """level: [B] in [0, 1] -> [B, cond_dim]."""
    emb = sinusoidal_embedding(level * self.scale, self.dim)
    return self.fc2(nnx.swish(self.fc1(emb)))
