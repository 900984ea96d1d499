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
  c.ema_warmup_offset = 10.0  # paper silent; decay_t = min(ema_decay, (1+t)/(10+t)) (TF's EMA
  # num_updates rule): the EMA follows early training instead of holding the init. 0 = constant.
  c.time_mode = "continuous"  # paper silent; "discrete" quantizes t to num_train_timesteps levels.
  c.num_train_timesteps = 1000  # only for time_mode="discrete"; the DDPM convention.
  c.logsnr_min = -20.0  # paper silent: log-SNR clip at t=1 (alpha(1)=4.5e-5, i.e. pure noise) ...
  c.logsnr_max = 20.0  # ... and at t=0 (sigma(0)=4.5e-5): keeps eps -> x0 finite at both ends.
  c.logsnr_shift = 0.0  # paper silent; added to log-SNR (negative = noisier, vs the SR colour tint).
  c.logsnr_shift_interpolated = False  # True: shift * t (Hoogeboom et al. 2023): the full shift at
  # t = 1, none at t = 0, so the low-noise steps that draw fine detail keep the base schedule.
  c.linear_beta_start = 0.1  # schedule="linear": continuous VP-SDE betas, equal to DDPM's ...
  c.linear_beta_end = 20.0  # ... 1e-4 .. 0.02 over 1000 steps.
  c.clip_x0 = True  # paper silent; clip predicted x0 to [-1, 1] while sampling (Imagen does).
  c.dynamic_threshold = 0.0  # Imagen's dynamic-threshold percentile (e.g. 0.995); 0 = off.
  c.ddim_eta = 0.0  # DDIM stochasticity: 0 deterministic, 1 ancestral.
  c.lowres_down_method = "linear"  # paper silent: antialiased resize kernel making the SR input.
  c.train_noise_aug_max = 1.0  # paper: training levels t_na ~ U[0, 1]; a lower top (t_na ~
  # U[0, max]) is only for short studies, where heavily noised inputs waste the few steps there are.
  c.inference_noise_aug_per_image = ()  # one level per model.cond_images name; () = every image
  # takes the stage's scalar inference_noise_aug (paper: grid-searched, values not given).
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
  c.sample_every_steps = 10_000  # 0 disables the periodic sample grids.
  c.sample_num = 4  # examples (rows) per sample grid: person | garment | try-on.
  c.sample_steps = 32  # sampler steps of the periodic grids: a cheap preview, not the paper's 256.
  c.async_checkpointing = True  # write checkpoints in the background while training continues.
  c.persistent_compilation_cache = True  # cache compiled programs in WORKDIR/xla_cache: restarts
  # skip minutes of XLA compilation.
  c.host_sync_timeout_s = 1800  # multi-host: how long hosts wait for each other to finish
  # compiling before the first step (large models compile for many minutes).
  return c


def data_config() -> mlc.ConfigDict:
  c = mlc.ConfigDict()
  c.path = ""  # records glob (TFRecord or ArrayRecord); empty = synthetic set (demo only).
  c.shuffle_buffer = 1024
  c.num_workers = 0  # grain multiprocessing workers per host (0 = in-process).
  c.flip_prob = 0.5  # horizontal flip (with left/right keypoint swap).
  c.num_keypoints = NUM_KEYPOINTS
  c.cycle_length = 4  # TFRecord files read in parallel per host (interleave); mixes shards.
  c.prefetch_batches = 2  # batches prepared ahead in a thread when num_workers = 0.
  c.read_threads = 4  # ArrayRecord random-access read threads per host.
  c.preprocess = preprocess_config()
  return c


def inference_config() -> mlc.ConfigDict:
  """--mode=tryon and --mode=eval (tryon_jax/inference); flags of the same name override."""
  c = mlc.ConfigDict()
  c.batch_size = 4  # paper: inference at batch 4 (on 4 TPU-v4 chips).
  c.seed = 0  # sampling seed: fixed, so reruns give the same try-ons.
  c.inception_weights = ""  # InceptionV3 .npz for FID/KID; "" = tryon_jax.eval's default path
  # ($TRYON_INCEPTION_NPZ or ~/.cache/tryon_jax/inception_fid.npz); FID/KID skipped if absent.
  c.eval_grid_rows = 4  # person | garment | try-on rows of the grid --mode=eval puts in TensorBoard.
  return c


def preprocess_config() -> mlc.ConfigDict:
  """Offline preprocessing (data_pipelines converters). The paper fixes the mechanism (mask the
  person box, paste head/hands/lower body back, square crop around the pose), not these numbers."""
  c = mlc.ConfigDict()
  c.resolution = 1024  # paper: records at 1024x1024; lower stages resize on the fly.
  c.agnostic_fill = 0  # uint8 value filling the masked person box in I_a (0 = black).
  c.box_margin = 0.02  # masked box grows by this fraction of its size: parser edges leak garment.
  c.crop_margin = 0.05  # square crop side = (1 + 2 * margin) * longest side of the person box.
  c.pad_mode = "edge"  # crop parts outside the photo: "edge" (replicate) or "constant" (pad_value).
  c.pad_value = 255  # only for pad_mode="constant"; VITON-HD / DressCode backgrounds are white.
  c.hand_radius = 0.75  # hand = arm pixels within 0.75 x forearm length of the wrist (hand ~ 0.7
  # forearm length in adult body proportions) ...
  c.wrist_margin = 0.1  # ... and beyond the wrist, minus this fraction of the forearm (keeps the wrist).
  c.hand_fallback_radius = 0.06  # elbow unseen: radius = this x person box height (~ hand length).
  c.keypoint_min_confidence = 0.05  # OpenPose's own render threshold; lower = missing (mask 0).
  c.min_person_keypoints = 4  # fewer visible keypoints = "no person detected", the pair is skipped.
  c.garment_mask_threshold = 128  # cloth-mask pixels >= this are garment (masks are 0/255 JPEGs).
  c.background_threshold = 240  # no garment mask (DressCode): near-white (all channels >= this)
  # pixels connected to the border are backdrop; studio backdrops are >= 245, JPEG noise aside.
  c.image_format = "jpeg"  # "png" is lossless but ~4x larger at 1024.
  c.jpeg_quality = 95  # near-lossless; no chroma subsampling.
  c.records_per_shard = 256  # ~250 MB shards at 1024 JPEG: large sequential reads, enough files to
  # spread over hosts.
  return c
