"""Parallel-UNet: a person UNet and a garment UNet joined by spatial cross-attention.

    eps = ParallelUNet(z_t, t, cond)

* Person UNet input: concat(z_t, I_a [, I_tr128 upsampled (256 stage)]).
* Garment UNet input: I_c. It runs encoder levels down to the lowest resolution and decoder levels
  back up to the highest attention resolution only (the paper's garment UNet stops after its 32x32
  decoder level). Its block outputs at the attention levels are the keys/values of the matching
  person block's cross-attention: person encoder block (l, b) reads garment encoder block (l, b),
  person decoder block (l, b) reads garment decoder block (l, b).
* Pose: J_p and J_g -> per-keypoint embeddings (linear layers), concatenated to the keys/values of
  every person self-attention, and, attention-pooled over keypoints, summed with the encodings of
  t and of each noise-augmentation level into the vector that drives FiLM in every block of both
  UNets.
* ``variant="concat"`` is the paper's ablation: no garment UNet, no cross-attention, I_c
  concatenated to z_t on channels.
* ``scan_blocks``: a level's run of blocks with the same shapes is one stacked module applied by
  ``nnx.scan`` (``ScannedBlocks``), so XLA compiles one block per level, not one per block. The
  network computes the same function; only its parameter tree (and compile time) differ.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from tryon_jax.models import layers
from tryon_jax.data.labels import COCO18_NAMES
from tryon_jax.models.pose import AttentionPool1D, PoseEncoder, place_map_spec, place_maps

VARIANTS = ("parallel", "concat")


class Block(nnx.Module):
  """FiLM-ResBlock, then (at attention levels) pose-augmented self-attention and cross-attention."""

  def __init__(self, in_ch: int, out_ch: int, cfg: ml_collections.ConfigDict, *, self_attention: bool,
               cross_attention: bool, grid_side: int, rngs: nnx.Rngs, dtype):
    """grid_side: the block's feature map side in tokens (cfg.resolution / 2^level)."""
    self.res = layers.ResBlock(in_ch, out_ch, cfg.cond_dim, rngs=rngs, dtype=dtype)
    impl = cfg.get("attention_impl", "xla")
    self.self_attn = (layers.SelfAttention(out_ch, cfg.head_dim, cfg.pose_embed_dim, rngs=rngs,
                                           dtype=dtype, attention_impl=impl)
                      if self_attention else None)
    self.cross_attn = (layers.CrossAttention(out_ch, out_ch, cfg.head_dim, rngs=rngs, dtype=dtype,
                                             attention_impl=impl, grid_side=grid_side,
                                             position=cfg.get("cross_attention_position", "none"),
                                             context_norm=cfg.get("cross_attention_context_norm",
                                                                  "group"))
                       if cross_attention else None)

  def __call__(self, x, cond, pose_tokens=None, pose_mask=None, context=None,
               query_to_context=None):
    """x: [B, H, W, Cin]; cond: [B, D]; pose_tokens: [B, P, Dp]; context: [B, H, W, Cout];
    query_to_context: person -> garment place maps (CrossAttention's, for "pose_*" codes)."""
    h = self.res(x, cond)
    if self.self_attn is not None:
      h = self.self_attn(h, pose_tokens, pose_mask)
    if self.cross_attn is not None:
      h = self.cross_attn(h, context, query_to_context)
    return h


class ScannedBlocks(nnx.Module):
  """``count`` blocks of the same shapes, stacked on a leading parameter axis (logical name
  "blocks") and applied in order by ``nnx.scan``: XLA compiles the block once, not ``count``
  times. Each block reads its own context (and skip, in a decoder) from inputs stacked likewise."""

  def __init__(self, count: int, make: Callable[[nnx.Rngs], Block], *, rngs: nnx.Rngs):
    @nnx.split_rngs(splits=count)
    @nnx.vmap(in_axes=(0,), out_axes=0, transform_metadata={nnx.PARTITION_NAME: "blocks"})
    def stacked(block_rngs):
      return make(block_rngs)

    self.blocks = stacked(rngs)
    self.count = count

  def __call__(self, policy, h, cond, pose_tokens, pose_mask, contexts, query_to_context,
               skips=None):
    """h: [B, H, W, C]; contexts / skips: None or [count, B, H, W, C'] (block i reads entry i).
    Returns the last block's output and every block's output stacked, [count, B, H, W, C]."""

    def one_block(block, h, context, skip):
      x = h if skip is None else jnp.concatenate([h, skip], axis=-1)
      h = layers.call_block(block, policy, x, cond, pose_tokens, pose_mask, context,
                            query_to_context)
      return h, h

    scan = nnx.scan(one_block, in_axes=(0, nnx.Carry, 0, 0), out_axes=(nnx.Carry, 0))
    return scan(self.blocks, h, contexts, skips)


def _level(in_channels: Sequence[int], make: Callable[[int, nnx.Rngs], Block], *, scan: bool,
           rngs: nnx.Rngs) -> nnx.List:
  """One level's blocks (``in_channels[b]`` is block b's input width). With ``scan``, the longest
  tail of two or more blocks of one input width becomes a ScannedBlocks after the blocks before it
  (in an encoder level, the first block when it changes the width)."""
  first = len(in_channels)
  if scan:
    while first > 0 and in_channels[first - 1] == in_channels[-1]:
      first -= 1
    if len(in_channels) - first < 2:
      first = len(in_channels)
  items = [make(c, rngs) for c in in_channels[:first]]
  if first < len(in_channels):
    width = in_channels[first]
    items.append(ScannedBlocks(len(in_channels) - first, lambda r: make(width, r), rngs=rngs))
  return nnx.List(items)


def _stack(arrays: list) -> jax.Array | None:
  """[count, ...] from count arrays of one shape; None from Nones."""
  return None if arrays[0] is None else jnp.stack(arrays)


def _level_size(level: nnx.List) -> int:
  return sum(item.count if isinstance(item, ScannedBlocks) else 1 for item in level)


class _UNetTrunk(nnx.Module):
  """Encoder levels (all) and decoder levels (the lowest ``decoder_levels``) of one UNet.

  Level l has ``blocks[l]`` blocks at ``channels[l]``; each encoder block's output is the skip of
  the mirrored decoder block. Attention flags choose which levels get self/cross-attention.
  """

  def __init__(self, in_ch: int, cfg: ml_collections.ConfigDict, *, blocks: Sequence[int],
               decoder_levels: int, self_attention: Sequence[bool],
               cross_attention: Sequence[bool], rngs: nnx.Rngs, dtype):
    ch = tuple(cfg.channels)
    n = len(ch)
    self.remat_policy = layers.remat_policy(cfg)
    self.decoder_levels = decoder_levels
    self.conv_in = layers.conv(in_ch, ch[0], 3, rngs=rngs, dtype=dtype)
    scan = bool(cfg.get("scan_blocks", False))

    def maker(l: int) -> Callable[[int, nnx.Rngs], Block]:
      return lambda in_ch, block_rngs: Block(
          in_ch, ch[l], cfg, self_attention=self_attention[l], cross_attention=cross_attention[l],
          grid_side=cfg.resolution >> l, rngs=block_rngs, dtype=dtype)

    enc, downs = [], []
    prev = ch[0]
    for l in range(n):
      in_channels = [prev if b == 0 else ch[l] for b in range(blocks[l])]
      enc.append(_level(in_channels, maker(l), scan=scan, rngs=rngs))
      prev = ch[l] if blocks[l] else prev
      if l < n - 1:
        downs.append(layers.Downsample(prev, prev, rngs=rngs, dtype=dtype))
    self.encoder = nnx.List(enc)
    self.downs = nnx.List(downs)
    dec, ups = [], []
    for l in reversed(range(n - decoder_levels, n)):
      if l < n - 1:
        ups.append(layers.Upsample(prev, ch[l], rngs=rngs, dtype=dtype))
        prev = ch[l]
      in_channels = [(prev if b == 0 else ch[l]) + ch[l] for b in range(blocks[l])]
      dec.append(_level(in_channels, maker(l), scan=scan, rngs=rngs))
      prev = ch[l] if blocks[l] else prev
    self.decoder = nnx.List(dec)  # lowest level first
    self.ups = nnx.List(ups)
    self.out_channels = prev

  def __call__(self, x, cond, pose_tokens=None, pose_mask=None, context=None,
               query_to_context=None):
    """Runs the trunk.

    x: [B, R, R, Cin]; cond: [B, D]; context: dict {("enc"|"dec", level, block): features} read by
    cross-attention blocks; query_to_context: the pose's place maps, passed to them (Block).
    Returns the final features and a dict of the per-block outputs at every level (the garment
    UNet's outputs feed the person UNet's cross-attention).
    """
    n = len(self.encoder)
    feats = {}
    h = self.conv_in(x)
    skips = []
    shared = (cond, pose_tokens, pose_mask)
    for l in range(n):
      h = self._run_level(self.encoder[l], ("enc", l), h, shared, context, query_to_context,
                          feats, skips=None)
      skips.extend(feats[("enc", l, b)] for b in range(_level_size(self.encoder[l])))
      if l < n - 1:
        h = self.downs[l](h)
    for i, l in enumerate(reversed(range(n - self.decoder_levels, n))):
      if l < n - 1:
        h = self.ups[i - 1](h)  # the lowest decoder level (i = 0) has no upsampling
      h = self._run_level(self.decoder[i], ("dec", l), h, shared, context, query_to_context,
                          feats, skips=skips)
    return h, feats

  def _run_level(self, level: nnx.List, key: tuple[str, int], h, shared, context, query_to_context,
                 feats: dict, skips: list | None):
    """Applies one level's blocks to h, block b reading context[key + (b,)] and (in a decoder)
    concatenating the skip it pops; records each block's output as feats[key + (b,)]."""
    b = 0
    for item in level:
      count = item.count if isinstance(item, ScannedBlocks) else 1
      ctx = [context.get(key + (b + i,)) for i in range(count)] if context else [None] * count
      own_skips = [skips.pop() for _ in range(count)] if skips is not None else [None] * count
      if isinstance(item, ScannedBlocks):
        h, outs = item(self.remat_policy, h, *shared, _stack(ctx), query_to_context,
                       _stack(own_skips))
        feats.update({key + (b + i,): outs[i] for i in range(count)})
      else:
        x = h if own_skips[0] is None else jnp.concatenate([h, own_skips[0]], axis=-1)
        h = layers.call_block(item, self.remat_policy, x, *shared, ctx[0], query_to_context)
        feats[key + (b,)] = h
      b += count
    return h


def _check_keypoint_names(field: str, names, least: int, exactly: bool = False) -> None:
  names = tuple(names)
  unknown = [name for name in names if name not in COCO18_NAMES]
  count = len(set(names))
  if unknown or count < least or (exactly and len(names) != least):
    need = f"exactly {least}" if exactly else f"{least} or more"
    raise ValueError(f"model.{field}={names}: need {need} distinct COCO-18 names "
                     f"(unknown: {unknown})")


def validate_config(cfg: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming the field when the model config is inconsistent."""
  n = len(cfg.channels)
  for name in ("person_blocks", "garment_blocks", "attention"):
    if len(cfg[name]) != n:
      raise ValueError(f"model.{name} has {len(cfg[name])} entries, model.channels has {n}")
  if cfg.variant not in VARIANTS:
    raise ValueError(f"model.variant={cfg.variant!r}: expected one of {VARIANTS}")
  if cfg.resolution % (2 ** (n - 1)):
    raise ValueError(f"model.resolution={cfg.resolution} is not divisible by 2^{n - 1}")
  if cfg.variant == "parallel":
    position = cfg.get("cross_attention_position", "none")
    if position in layers.POSE_POSITIONS:
      _check_keypoint_names("cross_attention_pose_keypoints", cfg.cross_attention_pose_keypoints, 3)
    if position == "pose_parts":
      _check_keypoint_names("cross_attention_pose_torso_outline",
                            cfg.cross_attention_pose_torso_outline, 3)
      for limb in cfg.cross_attention_pose_limbs:
        _check_keypoint_names("cross_attention_pose_limbs", limb, 2, exactly=True)
    if not 1 <= cfg.garment_decoder_levels <= n:
      raise ValueError(f"model.garment_decoder_levels={cfg.garment_decoder_levels} not in [1, {n}]")
    for l, attn in enumerate(cfg.attention):
      if not attn:
        continue
      if cfg.garment_blocks[l] != cfg.person_blocks[l]:
        raise ValueError(f"model.garment_blocks[{l}]={cfg.garment_blocks[l]} must equal "
                         f"person_blocks[{l}]={cfg.person_blocks[l]}: each person block at an "
                         "attention level cross-attends to its garment twin")
      if l < n - cfg.garment_decoder_levels:
        raise ValueError(f"attention at level {l} needs garment decoder level {l}: raise "
                         "model.garment_decoder_levels")


class ParallelUNet(nnx.Module):
  """The try-on denoiser of the 128 and 256 stages (see module docstring)."""

  def __init__(self, cfg: ml_collections.ConfigDict, *, rngs: nnx.Rngs):
    validate_config(cfg)
    dtype = layers.dtype_from_name(cfg.dtype)
    self.dtype = dtype
    self.variant = cfg.variant
    self.cond_images = tuple(cfg.cond_images)
    self.concat_lowres = bool(cfg.concat_lowres)
    n = len(cfg.channels)
    attention = tuple(bool(a) for a in cfg.attention)
    parallel = cfg.variant == "parallel"

    # Conditioning vector: t, one encoding per noise-augmentation level, pooled person and garment
    # pose, summed.
    self.time_embedding = layers.ScalarEmbedding(cfg.cond_dim, rngs=rngs, dtype=dtype)
    self.noise_aug_embeddings = nnx.List([
        layers.ScalarEmbedding(cfg.cond_dim, rngs=rngs, dtype=dtype) for _ in self.cond_images])
    self.person_pose = PoseEncoder(cfg.num_keypoints, cfg.pose_embed_dim, rngs=rngs, dtype=dtype)
    self.garment_pose = PoseEncoder(cfg.num_keypoints, cfg.pose_embed_dim, rngs=rngs, dtype=dtype)
    self.person_pose_pool = AttentionPool1D(cfg.num_keypoints + 1, cfg.pose_embed_dim,
                                            cfg.cond_dim, cfg.pool_heads, rngs=rngs, dtype=dtype)
    self.garment_pose_pool = AttentionPool1D(cfg.num_keypoints + 1, cfg.pose_embed_dim,
                                             cfg.cond_dim, cfg.pool_heads, rngs=rngs, dtype=dtype)

    person_in = 3 + 3 + (3 if self.concat_lowres else 0) + (0 if parallel else 3)
    self.person_unet = _UNetTrunk(
        person_in, cfg, blocks=cfg.person_blocks, decoder_levels=n, self_attention=attention,
        cross_attention=attention if parallel else (False,) * n, rngs=rngs, dtype=dtype)
    self.garment_unet = (_UNetTrunk(
        3, cfg, blocks=cfg.garment_blocks, decoder_levels=cfg.garment_decoder_levels,
        self_attention=(False,) * n, cross_attention=(False,) * n, rngs=rngs, dtype=dtype)
        if parallel else None)
    # Where the poses send person places in I_c, for the "pose_*" position codes (pose.py).
    self.place_map_spec = place_map_spec(cfg) if parallel else None
    self.out_norm = layers.GroupNorm(cfg.channels[0], rngs=rngs)
    self.conv_out = layers.conv(cfg.channels[0], 3, 3, rngs=rngs, dtype=jnp.float32,
                                zero_init=True)

  def conditioning(self, t: jax.Array, cond: dict) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Returns the FiLM vector [B, D] and the pose tokens [B, 2K + 2, Dp] with their mask."""
    emb = self.time_embedding(t)
    levels = cond["noise_aug_levels"]
    if levels.shape[-1] != len(self.noise_aug_embeddings):
      raise ValueError(f"cond['noise_aug_levels'] has {levels.shape[-1]} columns, "
                       f"model.cond_images names {len(self.noise_aug_embeddings)}")
    for i, embed in enumerate(self.noise_aug_embeddings):
      emb = emb + embed(levels[:, i])
    p_tokens, p_mask = self.person_pose(cond["person_pose"], cond["person_pose_mask"])
    g_tokens, g_mask = self.garment_pose(cond["garment_pose"], cond["garment_pose_mask"])
    emb = emb + self.person_pose_pool(p_tokens, p_mask) + self.garment_pose_pool(g_tokens, g_mask)
    tokens = jnp.concatenate([p_tokens, g_tokens], axis=1)
    mask = jnp.concatenate([p_mask, g_mask], axis=1)
    return emb, tokens, mask

  def __call__(self, x_t: jax.Array, t: jax.Array, cond: dict) -> jax.Array:
    """x_t: [B, R, R, 3] noisy image; t: [B] diffusion time in [0, 1]; cond: see
    docs/ARCHITECTURE.md (agnostic, garment, poses, masks, noise_aug_levels[, lowres]).
    Returns the prediction [B, R, R, 3] in float32."""
    dtype = self.dtype
    emb, pose_tokens, pose_mask = self.conditioning(t, cond)
    person_in = [x_t, cond["agnostic"]]
    if self.concat_lowres:
      person_in.append(cond["lowres"])
    context = query_to_context = None
    if self.garment_unet is not None:
      _, context = self.garment_unet(cond["garment"].astype(dtype), emb)
      if self.place_map_spec is not None:
        query_to_context = place_maps(self.place_map_spec, cond["person_pose"],
                                      cond["person_pose_mask"], cond["garment_pose"],
                                      cond["garment_pose_mask"])
    else:
      person_in.append(cond["garment"])
    h, _ = self.person_unet(jnp.concatenate(person_in, axis=-1).astype(dtype), emb,
                            pose_tokens, pose_mask, context, query_to_context)
    out = self.conv_out(nnx.swish(self.out_norm(h)).astype(jnp.float32))
    return out.astype(jnp.float32)
