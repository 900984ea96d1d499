"""Parallel-UNet 128 (base stage of the cascade) at the paper's settings.

  python -m tryon_jax.main --config=configs/base128.py --workdir=DIR
  python -m tryon_jax.main --config=configs/base128.py:concat ...   # the paper's ablation
"""

import ml_collections as mlc

from configs import common


def model_config(variant: str = "parallel") -> mlc.ConfigDict:
  m = mlc.ConfigDict()
  m.name = "parallel_unet"
  m.variant = variant  # "parallel" (garment UNet + cross-attention) or "concat" (paper's ablation).
  m.resolution = 128
  m.channels = (128, 256, 512, 1024)  # paper, levels 128/64/32/16.
  m.person_blocks = (3, 4, 6, 7)  # paper: encoder, mirrored in the decoder.
  m.garment_blocks = (3, 4, 6, 7)  # paper: garment encoder.
  m.garment_decoder_levels = 2  # paper: garment UNet stops after its 32x32 decoder level (16, 32).
  m.attention = (False, False, True, True)  # paper: self- + cross-attention at 32 and 16.
  m.head_dim = 64  # paper silent; 64-dim heads as in Imagen.
  m.pose_embed_dim = 256  # paper silent: width of per-keypoint pose embeddings.
  m.cond_dim = 1024  # paper silent: width of the FiLM conditioning vector (t + t_na + pooled pose).
  m.pool_heads = 8  # paper silent: heads of the CLIP-style attention pooling over keypoints.
  m.num_keypoints = common.NUM_KEYPOINTS
  m.cond_images = ("agnostic", "garment")  # conditional images, each with its own noise-aug level.
  m.concat_lowres = False  # SR 256 stage: concatenate upsampled I_tr128 to z_t.
  m.dtype = "float32"  # compute dtype; "bfloat16" for mixed precision (params stay float32).
  # "auto" = cuDNN flash attention on GPU in bf16, XLA elsewhere. H100, batch 8, fwd+bwd: cuDNN
  # 2.5x / 3.1x / 1.5x faster on the 1024-token self / cross and 256-token self shapes, 0.9x on
  # 256-token cross (benchmarks/RESULTS.md, attention table).
  m.attention_impl = "auto"
  # Paper silent (none described): "fourier" adds learned projections of each token's grid
  # position to cross-attention queries and keys, so a person token can find a garment place;
  # "pose_affine" codes each query at the garment place the poses map it to (an option for study);
  # "pose_parts" maps it by its nearest body part.
  m.cross_attention_position = "none"
  # pose_affine: the keypoints of the least-squares map; the torso moves an upper garment rigidly.
  m.cross_attention_pose_keypoints = ("neck", "r_shoulder", "l_shoulder", "r_hip", "l_hip")
  # pose_affine: pull toward the identity map, which it becomes with < 3 shared keypoints.
  m.cross_attention_pose_ridge = 1e-4
  # "pose_parts" (an option for study): each query takes the map of the body part nearest it, the
  # torso's (above; inside this outline, in order around it) or a limb's, so sleeves follow arms.
  m.cross_attention_pose_torso_outline = ("r_shoulder", "l_shoulder", "l_hip", "r_hip")
  m.cross_attention_pose_limbs = (("r_shoulder", "r_elbow"), ("r_elbow", "r_wrist"),
                                  ("l_shoulder", "l_elbow"), ("l_elbow", "l_wrist"))
  # Paper silent: the garment context's norm in cross-attention. "group" (the blocks' GroupNorm);
  # "token" (a LayerNorm per garment token, as transformers norm their context) is an option.
  m.cross_attention_context_norm = "group"
  m.remat = False  # rematerialize each block in the backward pass (saves activation memory).
  # With remat: which values a block keeps (jax.checkpoint_policies name); layers.remat_policy.
  m.remat_policy = "nothing_saveable"
  # Not in the paper (a compile-time choice, same function): each level's run of identical blocks
  # is one stacked module applied by nnx.scan, so XLA compiles one block per level, not each block.
  m.scan_blocks = False
  return m


def get_config(arg: str | None = None) -> mlc.ConfigDict:
  variant = arg or "parallel"
  c = mlc.ConfigDict()
  c.name = "base128" if variant == "parallel" else f"base128_{variant}"
  c.stage = "base128"
  c.seed = 0
  c.model = model_config(variant)
  c.diffusion = common.diffusion_config()
  c.diffusion.sampler = "ddpm"  # paper: DDPM, 256 steps for the base stage.
  c.diffusion.sample_steps = 256
  c.diffusion.inference_noise_aug = 0.0  # paper: grid-searched constant, value not given.
  c.data = common.data_config()
  c.data.resolution = 128
  c.train = common.train_config()
  c.mesh = common.mesh_config()
  c.inference = common.inference_config()
  return c
