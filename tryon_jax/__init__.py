"""tryon-jax: TryOnDiffusion ("A Tale of Two UNets", CVPR 2023) in JAX/Flax NNX.

Packages:
  models     Parallel-UNet (128, 256) and Efficient-UNet (SR 1024) networks.
  diffusion  schedules, the denoising objective, noise-conditioning augmentation, guidance, samplers,
             and the 128 -> 256 -> 1024 cascade.
  data       the try-on record schema, paper preprocessing, and the Grain input pipeline.
  parallel   the device mesh and the logical-axis sharding rules (the one place sharding lives).
  train      train state, the pure train step, checkpoints and the training loop.
  inference  try-on from user inputs with trained checkpoints.
  eval       FID/KID (Inception pool3), SSIM/PSNR.
"""

__version__ = "0.1.0"
