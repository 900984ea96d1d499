"""Imagen's Efficient-UNet, the 256 -> 1024 super-resolution stage (no attention, fully convolutional).

    eps = EfficientUNet(z_t, t, {"lowres": upsampled 256 image, "noise_aug_levels": [B, 1]})

Efficient-UNet (Saharia et al. 2022, appendix) differs from a plain UNet in three ways, all kept:
  * each encoder level (DBlock) downsamples *first* and then runs its residual blocks, each decoder
    level (UBlock) runs its blocks and then upsamples, so the costly full-resolution level carries
    no residual blocks;
  * more blocks at the low resolutions, fewer at the high ones (``blocks``);
  * skip connections are scaled by 1/sqrt(2).
Conditioning is the diffusion time and the low-res input's noise-augmentation level, summed and
applied by FiLM in every block. With no attention the network is translation-equivariant and runs
on any size divisible by 2^len(channels): trained on 256 crops, applied to the whole 1024 image.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from tryon_jax.models import layers


class EfficientUNet(nnx.Module):
  """Super-resolution denoiser conditioned on the upsampled low-resolution image."""

  def __init__(self, cfg: ml_collections.ConfigDict, *, rngs: nnx.Rngs):
    ch = tuple(cfg.channels)
    if len(cfg.blocks) != len(ch):
      raise ValueError(f"model.blocks has {len(cfg.blocks)} entries, model.channels has {len(ch)}")
    if tuple(cfg.cond_images) != ("lowres",):
      raise ValueError(f"model.cond_images={tuple(cfg.cond_images)}: the Efficient-UNet takes "
                       "only ('lowres',)")
    dtype = layers.dtype_from_name(cfg.dtype)
    self.dtype = dtype
    self.remat_policy = layers.remat_policy(cfg)
    self.skip_scale = float(cfg.skip_scale)
    self.num_levels = len(ch)
    self.time_embedding = layers.ScalarEmbedding(cfg.cond_dim, rngs=rngs, dtype=dtype)
    self.noise_aug_embedding = layers.ScalarEmbedding(cfg.cond_dim, rngs=rngs, dtype=dtype)
    self.conv_in = layers.conv(6, ch[0], 3, rngs=rngs, dtype=dtype)
    downs, enc = [], []
    prev = ch[0]
    for l, c in enumerate(ch):
      downs.append(layers.Downsample(prev, c, rngs=rngs, dtype=dtype))
      enc.append(nnx.List([layers.ResBlock(c, c, cfg.cond_dim, rngs=rngs, dtype=dtype)
                           for _ in range(cfg.blocks[l])]))
      prev = c
    self.downs = nnx.List(downs)
    self.encoder = nnx.List(enc)
    dec, ups = [], []
    for l in reversed(range(len(ch))):
      level = [layers.ResBlock(2 * ch[l] if b == 0 else ch[l], ch[l], cfg.cond_dim, rngs=rngs,
                               dtype=dtype) for b in range(cfg.blocks[l])]
      dec.append(nnx.List(level))
      ups.append(layers.Upsample(ch[l], ch[l - 1] if l else ch[0], rngs=rngs, dtype=dtype))
    self.decoder = nnx.List(dec)
    self.ups = nnx.List(ups)
    self.out_norm = layers.GroupNorm(2 * ch[0], rngs=rngs)
    self.conv_out = layers.conv(2 * ch[0], 3, 3, rngs=rngs, dtype=jnp.float32, zero_init=True)

  def __call__(self, x_t: jax.Array, t: jax.Array, cond: dict) -> jax.Array:
    """x_t: [B, H, W, 3]; t: [B]; cond["lowres"]: [B, H, W, 3] (already upsampled to H, W);
    cond["noise_aug_levels"]: [B, 1]. H and W must be divisible by 2^len(channels).
    Returns the prediction [B, H, W, 3] float32."""
    size = 2 ** self.num_levels
    if x_t.shape[1] % size or x_t.shape[2] % size:
      raise ValueError(f"Efficient-UNet input {x_t.shape[1]}x{x_t.shape[2]} is not divisible by "
                       f"{size} (2^len(model.channels))")
    dtype = self.dtype
    emb = self.time_embedding(t) + self.noise_aug_embedding(cond["noise_aug_levels"][:, 0])
    h = self.conv_in(jnp.concatenate([x_t, cond["lowres"]], axis=-1).astype(dtype))
    top = h
    skips = []
    for down, level in zip(self.downs, self.encoder):
      h = down(h)
      for block in level:
        h = layers.call_block(block, self.remat_policy, h, emb)
      skips.append(h)
    for level, up in zip(self.decoder, self.ups):
      h = jnp.concatenate([h, skips.pop() * self.skip_scale], axis=-1)
      for block in level:
        h = layers.call_block(block, self.remat_policy, h, emb)
      h = up(h)
    h = jnp.concatenate([h, top * self.skip_scale], axis=-1)
    return self.conv_out(nnx.swish(self.out_norm(h)).astype(jnp.float32)).astype(jnp.float32)
