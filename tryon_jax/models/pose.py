"""Pose conditioning: keypoints -> per-keypoint embeddings, and CLIP-style 1D attention pooling.

A pose set is J in [0, 1]^{K x 2} with a visibility mask. Its tokens are a learned null token
followed by one embedding per keypoint. The null token is always visible, so a pose that is absent
altogether (a lay-flat garment, or a dropped condition for guidance) yields only the null token:
attention never sees a fake pose and never has an empty key set.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from tryon_jax.data.labels import COCO18_NAMES
from tryon_jax.models.layers import POSE_POSITIONS, PartMaps, linear, multi_head_attention

_wp = nnx.with_partitioning
_embed_init = nnx.initializers.normal(0.02)


class PoseEncoder(nnx.Module):
  """Linear layers mapping each keypoint's (x, y) to an embedding, plus a keypoint-identity
  embedding (the linear map alone could not tell a wrist from an ankle at the same place)."""

  def __init__(self, num_keypoints: int, dim: int, *, rngs: nnx.Rngs, dtype):
    self.fc1 = linear(2, dim, ("coords", "embed"), rngs=rngs, dtype=dtype)
    self.fc2 = linear(dim, dim, ("embed", "mlp"), rngs=rngs, dtype=dtype)
    self.keypoint_embedding = nnx.Param(
        _wp(_embed_init, ("keypoints", "embed"))(rngs.params(), (num_keypoints, dim), jnp.float32))
    self.null_token = nnx.Param(_wp(_embed_init, ("embed",))(rngs.params(), (dim,), jnp.float32))

  def __call__(self, keypoints: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    """keypoints: [B, K, 2] in [0, 1]; mask: [B, K] in {0, 1}.

    Returns tokens [B, K + 1, D] (null token first) and their mask [B, K + 1].
    """
    mask = mask.astype(jnp.float32)
    coords = keypoints * mask[..., None]  # never read the coordinates of a missing keypoint
    emb = self.fc2(nnx.swish(self.fc1(coords)))
    emb = (emb + self.keypoint_embedding[...].astype(emb.dtype)) * mask[..., None].astype(emb.dtype)
    b = keypoints.shape[0]
    null = jnp.broadcast_to(self.null_token[...].astype(emb.dtype), (b, 1, emb.shape[-1]))
    tokens = jnp.concatenate([null, emb], axis=1)
    token_mask = jnp.concatenate([jnp.ones((b, 1), jnp.float32), mask], axis=1)
    return tokens, token_mask


class AttentionPool1D(nnx.Module):
  """CLIP-style attention pooling over a token sequence.

  The query is the (masked) mean token; keys/values are the mean and every token, each with a
  learned positional embedding; the pooled vector is projected to ``out_dim``.
  """

  def __init__(self, num_tokens: int, dim: int, out_dim: int, num_heads: int, *,
               rngs: nnx.Rngs, dtype):
    if dim % num_heads:
      raise ValueError(f"model.pool_heads={num_heads} does not divide pose_embed_dim={dim}")
    self.num_heads = num_heads
    self.positional_embedding = nnx.Param(
        _wp(_embed_init, ("length", "embed"))(rngs.params(), (num_tokens + 1, dim), jnp.float32))
    self.q = linear(dim, dim, ("embed", "heads"), rngs=rngs, dtype=dtype)
    self.kv = linear(dim, 2 * dim, ("embed", "heads"), rngs=rngs, dtype=dtype)
    self.out = linear(dim, out_dim, ("heads", "embed"), rngs=rngs, dtype=dtype)

  def __call__(self, tokens: jax.Array, mask: jax.Array) -> jax.Array:
    """tokens: [B, S, D]; mask: [B, S] (at least one entry 1 per row) -> [B, out_dim]."""
    m = mask.astype(tokens.dtype)[..., None]
    mean = jnp.sum(tokens * m, axis=1, keepdims=True) / jnp.maximum(jnp.sum(m, axis=1, keepdims=True), 1)
    x = jnp.concatenate([mean, tokens], axis=1) + self.positional_embedding[...].astype(tokens.dtype)
    full_mask = jnp.concatenate([jnp.ones_like(mask[:, :1]), mask], axis=1)
    k, v = jnp.split(self.kv(x), 2, axis=-1)
    pooled = multi_head_attention(self.q(x[:, :1]), k, v, self.num_heads, full_mask)
    return self.out(pooled[:, 0])


def keypoint_affine(person_pose: jax.Array, person_mask: jax.Array, garment_pose: jax.Array,
                    garment_mask: jax.Array, keypoints: tuple[int, ...],
                    ridge: float) -> jax.Array:
  """The affine map taking a person-image place to the garment-image place that shows the same
  body point: least squares over the ``keypoints`` (indices) present in both poses.

  person_pose, garment_pose: [B, K, 2] (x, y) in [0, 1]; *_mask: [B, K] in {0, 1}.
  Returns A [B, 3, 2] with garment place ~ [x, y, 1] @ A. ``ridge`` pulls A toward the identity,
  which it becomes where fewer than three keypoints are shared (a lay-flat garment, a dropped
  pose): the fit's normal equations never go singular.
  """
  idx = jnp.asarray(keypoints, jnp.int32)
  src = person_pose[:, idx].astype(jnp.float32)
  dst = garment_pose[:, idx].astype(jnp.float32)
  weight = (person_mask[:, idx] * garment_mask[:, idx]).astype(jnp.float32)  # [B, k]
  x = jnp.concatenate([src, jnp.ones_like(src[..., :1])], axis=-1)  # [B, k, 3]
  xt_w = jnp.swapaxes(x * weight[..., None], 1, 2)  # [B, 3, k]
  lhs = xt_w @ x + ridge * jnp.eye(3, dtype=jnp.float32)
  rhs = xt_w @ dst + ridge * jnp.eye(3, 2, dtype=jnp.float32)
  return jnp.linalg.solve(lhs, rhs)


def limb_similarity(person_pose: jax.Array, garment_pose: jax.Array, start: int,
                    end: int) -> jax.Array:
  """The rotation, scale and shift taking the person's segment from keypoint ``start`` to ``end``
  onto the garment's: A [B, 3, 2] with garment place = [x, y, 1] @ A (a degenerate person segment
  gives the garment's shift alone; part_maps marks it invalid)."""
  a, b = person_pose[:, start].astype(jnp.float32), person_pose[:, end].astype(jnp.float32)
  a2, b2 = garment_pose[:, start].astype(jnp.float32), garment_pose[:, end].astype(jnp.float32)
  u, u2 = b - a, b2 - a2
  length2 = jnp.maximum(jnp.sum(u * u, axis=-1), 1e-12)
  # The complex ratio u2 / u = cos + i sin (times the scale), as a row-vector matrix.
  cos = jnp.sum(u * u2, axis=-1) / length2
  sin = (u[:, 0] * u2[:, 1] - u[:, 1] * u2[:, 0]) / length2
  linear_part = jnp.stack([jnp.stack([cos, sin], -1), jnp.stack([-sin, cos], -1)], axis=1)
  shift = a2 - jnp.einsum("bk,bkj->bj", a, linear_part)
  return jnp.concatenate([linear_part, shift[:, None]], axis=1)


def part_maps(person_pose: jax.Array, person_mask: jax.Array, garment_pose: jax.Array,
              garment_mask: jax.Array, torso_keypoints: tuple[int, ...],
              torso_outline: tuple[int, ...], limbs: tuple[tuple[int, int], ...],
              ridge: float) -> PartMaps:
  """Per-body-part person -> garment place maps ("pose_parts", layers.part_places): the torso's
  keypoint_affine map, and per limb (a pair of keypoint indices) limb_similarity.

  Poses and masks as keypoint_affine. A limb is valid where both its ends are present in both poses
  and apart in the person's; an invalid limb takes no place. With no valid limb every place takes
  the torso's map, which is then "pose_affine"'s.
  """
  torso = keypoint_affine(person_pose, person_mask, garment_pose, garment_mask, torso_keypoints,
                          ridge)
  shared = (person_mask * garment_mask).astype(jnp.float32)
  outline_idx = jnp.asarray(torso_outline, jnp.int32)
  outline = person_pose[:, outline_idx].astype(jnp.float32)
  outline_valid = jnp.min(person_mask[:, outline_idx].astype(jnp.float32), axis=1)
  maps, segments, valid = [torso[:, None]], [], []
  for start, end in limbs:
    maps.append(limb_similarity(person_pose, garment_pose, start, end)[:, None])
    segment = jnp.stack([person_pose[:, start], person_pose[:, end]], axis=1).astype(jnp.float32)
    apart = jnp.sum((segment[:, 1] - segment[:, 0]) ** 2, axis=-1) > 1e-8
    segments.append(segment)
    valid.append(shared[:, start] * shared[:, end] * apart)
  b = person_pose.shape[0]
  return PartMaps(
      maps=jnp.concatenate(maps, axis=1), torso_outline=outline, outline_valid=outline_valid,
      limbs=jnp.stack(segments, axis=1) if limbs else jnp.zeros((b, 0, 2, 2), jnp.float32),
      limb_valid=jnp.stack(valid, axis=1) if limbs else jnp.zeros((b, 0), jnp.float32))


class PlaceMapSpec(NamedTuple):
  """What a "pose_*" cross-attention code fits its person -> garment place maps from (place_maps):
  the model config's keypoint names as COCO-18 indices."""
  position: str  # "pose_affine" or "pose_parts"
  torso_keypoints: tuple[int, ...]
  ridge: float
  torso_outline: tuple[int, ...]  # "pose_parts" only
  limbs: tuple[tuple[int, int], ...]  # "pose_parts" only


def place_map_spec(model_cfg, position: str | None = None) -> PlaceMapSpec | None:
  """model_cfg's PlaceMapSpec for ``position`` (default: model_cfg.cross_attention_position), or
  None for a code that reads no place maps."""
  position = model_cfg.get("cross_attention_position", "none") if position is None else position
  if position not in POSE_POSITIONS:
    return None
  index = COCO18_NAMES.index
  parts = position == "pose_parts"
  return PlaceMapSpec(
      position, tuple(map(index, model_cfg.cross_attention_pose_keypoints)),
      float(model_cfg.cross_attention_pose_ridge),
      tuple(map(index, model_cfg.cross_attention_pose_torso_outline)) if parts else (),
      tuple(tuple(map(index, limb)) for limb in model_cfg.cross_attention_pose_limbs)
      if parts else ())


def place_maps(spec: PlaceMapSpec, person_pose: jax.Array, person_mask: jax.Array,
               garment_pose: jax.Array, garment_mask: jax.Array) -> jax.Array | PartMaps:
  """The place maps ``spec``'s code reads (CrossAttention's query_to_context): keypoint_affine's
  [B, 3, 2] for "pose_affine", part_maps' PartMaps for "pose_parts". Poses as keypoint_affine."""
  poses = (person_pose, person_mask, garment_pose, garment_mask)
  if spec.position == "pose_affine":
    return keypoint_affine(*poses, spec.torso_keypoints, spec.ridge)
  return part_maps(*poses, spec.torso_keypoints, spec.torso_outline, spec.limbs, spec.ridge)
