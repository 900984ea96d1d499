"""Parallel-UNet 256 (first super-resolution stage, 128 -> 256) at the paper's settings."""

import ml_collections as mlc

from configs import common


def model_config(variant: str = "parallel") -> mlc.ConfigDict:
  m = mlc.ConfigDict()
  m.name = "parallel_unet"
  m.variant = variant
  m.resolution = 256
  m.channels = (128, 128, 256, 512, 1024)  # paper, levels 256/128/64/32/16.
  m.person_blocks = (2, 3, 4, 7, 7)  # paper.
  m.garment_blocks = (2, 3, 4, 6, 7)  # paper.
  m.garment_decoder_levels = 1  # paper: garment decoder at 16 only.
  m.attention = (False, False, False, False, True)  # paper: attention at 16 only.
  m.head_dim = 64  # paper silent; as base128.
  m.pose_embed_dim = 256  # paper silent; as base128.
  m.cond_dim = 1024  # paper silent; as base128.
  m.pool_heads = 8  # paper silent; as base128.
  m.num_keypoints = common.NUM_KEYPOINTS
  m.cond_images = ("agnostic", "garment", "lowres")  # lowres = I_tr128 upsampled to 256.
  m.concat_lowres = True  # paper: upsampled I_tr128 concatenated to z_t.
  m.lowres_factor = 2  # I_tr128 is the 256 image at half size.
  m.dtype = "float32"
  m.attention_impl = "auto"  # as base128: cuDNN flash attention on GPU in bf16, XLA elsewhere.
  m.cross_attention_position = "none"  # as base128: the paper describes no position code.
  m.cross_attention_pose_keypoints = ("neck", "r_shoulder", "l_shoulder", "r_hip", "l_hip")
  m.cross_attention_pose_ridge = 1e-4  # as base128
  # as base128: the torso outline and arm segments of "pose_parts".
  m.cross_attention_pose_torso_outline = ("r_shoulder", "l_shoulder", "l_hip", "r_hip")
  m.cross_attention_pose_limbs = (("r_shoulder", "r_elbow"), ("r_elbow", "r_wrist"),
                                  ("l_shoulder", "l_elbow"), ("l_elbow", "l_wrist"))
  m.cross_attention_context_norm = "group"  # as base128
  m.remat = False
  m.remat_policy = "nothing_saveable"  # as base128
  m.scan_blocks = False  # as base128
  return m


def get_config(arg: str | None = None) -> mlc.ConfigDict:
  variant = arg or "parallel"
  c = mlc.ConfigDict()
  c.name = "sr256" if variant == "parallel" else f"sr256_{variant}"
  c.stage = "sr256"
  c.seed = 0
  c.model = model_config(variant)
  c.diffusion = common.diffusion_config()
  c.diffusion.sampler = "ddpm"  # paper: DDPM, 128 steps for the 256 stage.
  c.diffusion.sample_steps = 128
  c.diffusion.inference_noise_aug = 0.0  # paper: grid-searched constant, value not given.
  c.data = common.data_config()
  c.data.resolution = 256
  c.train = common.train_config()
  c.mesh = common.mesh_config()
  c.inference = common.inference_config()
  return c
