"""Efficient-UNet super-resolution 256 -> 1024 (Imagen), trained on 256 crops with 64 inputs."""

import ml_collections as mlc

from configs import common


def model_config() -> mlc.ConfigDict:
  m = mlc.ConfigDict()
  m.name = "efficient_unet"
  m.resolution = 256  # training crop size; runs fully convolutionally at 1024 for inference.
  m.channels = (128, 256, 512, 1024)  # paper silent: Imagen's 256->1024 Efficient-UNet.
  m.blocks = (2, 4, 8, 8)  # Imagen Efficient-UNet: more blocks at low resolution.
  m.cond_dim = 512  # paper silent: width of the FiLM vector (t + noise-aug level).
  m.cond_images = ("lowres",)  # the 256 output, upsampled to the target size.
  m.lowres_factor = 4  # 64 -> 256 in training, 256 -> 1024 at inference.
  m.skip_scale = 0.7071067811865476  # Imagen: skip connections scaled by 1/sqrt(2).
  m.dtype = "float32"
  m.remat = False
  m.remat_policy = "nothing_saveable"  # as base128
  return m


def get_config(arg: str | None = None) -> mlc.ConfigDict:
  del arg
  c = mlc.ConfigDict()
  c.name = "sr1024"
  c.stage = "sr1024"
  c.seed = 0
  c.model = model_config()
  c.diffusion = common.diffusion_config()
  c.diffusion.sampler = "ddim"  # paper: DDIM, 32 steps for the 1024 stage.
  c.diffusion.sample_steps = 32
  c.diffusion.inference_noise_aug = 0.0  # paper: grid-searched constant, value not given.
  c.data = common.data_config()
  c.data.resolution = 1024  # records at full size; training takes random crops.
  c.data.crop_size = 256  # paper: random 256 crops ...
  c.data.lowres_size = 64  # ... with 64 inputs.
  c.train = common.train_config()
  c.mesh = common.mesh_config()
  c.inference = common.inference_config()
  return c
