"""Sections shared by every stage's config. Stage files (base128, sr256, sr1024, demo) call these
and then set what differs. Every number the code uses lives in a config; where the paper is silent
the field's comment says so and why we chose the value."""

import ml_collections as mlc

# Canonical keypoint layout: OpenPose COCO-18 (VITON-HD's BODY_25 is mapped onto it, DressCode's
# 18 keypoints already are). Fixed for all stages so records serve every stage.
NUM_KEYPOINTS = 18


def mesh_config() -> mlc.ConfigDict:
  c = mlc.ConfigDict()
  c.shape = (1, -1, 1)  # (data, fsdp, tensor); -1 = all remaining devices. FSDP by default: the
  # 1B-parameter models need their Adam state sharded at batch 256.
  c.axes = ("data", "fsdp", "tensor")
  return c


def diffusion_config() -> mlc.ConfigDict:
  c = mlc.ConfigDict()
  c.schedule = "cosine"  # paper silent; cosine (Nichol & Dhariwal) as in Imagen.
  c.prediction = "eps"  # paper: epsilon-prediction. "v" is offered against the SR colour tint.
  c.loss_weighting = "none"  # plain eps-MSE ("weighted denoising" with unit weight); or "min_snr".
  c.min_snr_gamma = 5.0  # only for loss_weighting="min_snr" (Hang et al. 2023 default).
  c.cond_dropout = 0.1  # paper: 10 % conditioning dropout for classifier-free guidance.
  c.cond_dropout_mode = "joint"  # paper silent on joint vs per-input; joint drops all inputs together.
  c.guidance_weight = 2.0  # paper: weight 2 for all stages.
  c.ema_decay = 0.9999  # paper silent; Imagen-style default.
  return c


def train_config() -> mlc.ConfigDict:
  c = mlc.ConfigDict()
  c.batch_size = 256  # global; paper: 256.
  c.num_steps = 500_000  # paper: 500K iterations.
  c.lr = 1e-4  # paper: Adam, peak 1e-4.
  c.warmup_steps = 10_000  # paper: linear 0 -> 1e-4 over 10K steps, then constant.
  c.adam_b1 = 0.9  # paper silent: Adam defaults.
  c.adam_b2 = 0.999
  c.adam_eps = 1e-8
  c.grad_clip_norm = 1.0  # paper silent; standard for diffusion UNets.
  c.log_every_steps = 100
  c.checkpoint_every_steps = 5_000
  c.max_to_keep = 3
  c.sample_every_steps = 10_000
  return c


def data_config() -> mlc.ConfigDict:
  c = mlc.ConfigDict()
  c.path = ""  # records glob (TFRecord or ArrayRecord); empty = synthetic set (demo only).
  c.shuffle_buffer = 1024
  c.num_workers = 0  # grain multiprocessing workers per host (0 = in-process).
  c.flip_prob = 0.5  # horizontal flip (with left/right keypoint swap).
  c.num_keypoints = NUM_KEYPOINTS
  return c
