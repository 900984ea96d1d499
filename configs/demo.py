"""A tiny Parallel-UNet at 32x32 that trains on this 2-core CPU, on the synthetic set by default.

  python -m tryon_jax.main --config=configs/demo.py --workdir=/tmp/tryon_demo
  python -m tryon_jax.main --config=configs/demo.py:concat ...   # same size, concatenation ablation
"""

import ml_collections as mlc

from configs import base128
from configs import common


def get_config(arg: str | None = None) -> mlc.ConfigDict:
  variant = arg or "parallel"
  c = base128.get_config(variant)
  c.name = "demo" if variant == "parallel" else f"demo_{variant}"
  m = c.model
  m.resolution = 32
  m.channels = (32, 64, 96)  # levels 32/16/8: attention at 16 and 8 mirrors the paper's 32 and 16.
  m.person_blocks = (1, 2, 2)
  m.garment_blocks = (1, 2, 2)
  m.garment_decoder_levels = 2
  m.attention = (False, True, True)
  m.head_dim = 32
  m.pose_embed_dim = 64
  m.cond_dim = 128
  m.pool_heads = 4
  c.diffusion.sample_steps = 50
  c.diffusion.ema_decay = 0.995  # a 200-step horizon: 0.9999 would leave the EMA at init after 2K steps.
  c.data.resolution = 32
  c.data.synthetic_num = 512  # synthetic pairs generated into the workdir when data.path is empty.
  c.data.synthetic_resolution = 128  # image height R of the synthetic set (width R*3/4): 4x the
  # 32 px model so patterns stay crisp after the converter's crop + resize, at half R=256's cost.
  c.data.synthetic_seed = 0  # data_pipelines.synthetic.generate(seed=...): fixed, so reruns agree.
  c.train.batch_size = 16
  c.train.num_steps = 2_000
  c.train.lr = 3e-4
  c.train.warmup_steps = 100
  c.train.log_every_steps = 20
  c.train.checkpoint_every_steps = 250
  c.train.sample_every_steps = 500
  c.mesh = common.mesh_config()
  return c
