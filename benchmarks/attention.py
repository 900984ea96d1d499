"""Which kernel runs the model's attention, and how fast: cuDNN flash attention vs XLA.

  python -m benchmarks.attention --config=configs/base128.py --dtype=bfloat16

For every attention shape of the config's person UNet (self-attention over H*W tokens plus the
masked pose tokens, cross-attention over the garment tokens, at each attention level), it times
the forward+backward of tryon_jax.models.layers.multi_head_attention as the model calls it
(jax.nn.dot_product_attention, implementation=None), and the same forced to implementation="xla"
and ="cudnn". default_is_cudnn says whether the model's own call compiles to a cuDNN custom call
(in jax 0.10.2 implementation=None always means XLA); cudnn_ms is empty and cudnn_error set where
cuDNN rejects the shape/dtype/mask (always on CPU); cudnn_max_abs_diff compares it with XLA.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from benchmarks import common

TABLE = "attention"
COLUMNS = ("date", "device", "jax", "dtype", "kind", "batch", "tokens", "kv_tokens", "heads",
           "head_dim", "default_is_cudnn", "default_ms", "xla_ms", "cudnn_ms", "cudnn_max_abs_diff",
           "command")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--config", default="configs/base128.py")
  p.add_argument("--dtype", default="bfloat16", help="activation dtype (cuDNN needs bf16/fp16)")
  p.add_argument("--batch", type=int, default=8)
  p.add_argument("--iters", type=int, default=5)
  p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
  p.add_argument("--results", default=common.DEFAULT_RESULTS)
  return p.parse_args(argv)


def attention_shapes(model_config) -> list[tuple[str, int, int, int, int, bool]]:
  """(kind, tokens, kv_tokens, heads, head_dim, masked) of each attention level."""
  shapes = []
  for level, (channels, attn) in enumerate(zip(model_config.channels, model_config.attention)):
    if not attn:
      continue
    side = int(model_config.resolution) // 2 ** level
    tokens, heads = side * side, channels // int(model_config.head_dim)
    shapes.append(("self+pose", tokens, tokens + int(model_config.num_keypoints), heads,
                   int(model_config.head_dim), True))
    if model_config.get("variant", "parallel") == "parallel":
      shapes.append(("cross", tokens, tokens, heads, int(model_config.head_dim), False))
  return shapes


def _fwd_bwd(implementation: str | None):
  from tryon_jax.models import layers  # pylint: disable=g-import-not-at-top

  def loss(q, k, v, mask, num_heads):
    original = jax.nn.dot_product_attention
    if implementation is not None:
      jax.nn.dot_product_attention = functools.partial(original, implementation=implementation)
    try:
      out = layers.multi_head_attention(q, k, v, num_heads, mask)
    finally:
      jax.nn.dot_product_attention = original
    return jnp.sum(out.astype(jnp.float32) ** 2), out

  return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True),
                 static_argnums=(4,))


def run(args: argparse.Namespace) -> list[dict]:
  config = common.load_config(args.config, args.set)
  dtype = jnp.dtype(args.dtype)
  info = common.device_info()
  results = []
  for kind, tokens, kv_tokens, heads, head_dim, masked in attention_shapes(config.model):
    keys = jax.random.split(jax.random.key(0), 3)
    c = heads * head_dim
    q = jax.random.normal(keys[0], (args.batch, tokens, c), dtype)
    k = jax.random.normal(keys[1], (args.batch, kv_tokens, c), dtype)
    v = jax.random.normal(keys[2], (args.batch, kv_tokens, c), dtype)
    mask = jnp.ones((args.batch, kv_tokens), jnp.float32) if masked else None
    row = {"benchmark": TABLE, **info, "dtype": args.dtype, "kind": kind, "batch": args.batch,
           "tokens": tokens, "kv_tokens": kv_tokens, "heads": heads, "head_dim": head_dim}
    outs = {}
    for name, impl in (("default", None), ("xla", "xla"), ("cudnn", "cudnn")):
      try:
        compiled = _fwd_bwd(impl).lower(q, k, v, mask, heads).compile()
      except Exception as e:  # pylint: disable=broad-except  (cuDNN refusing is a result)
        if name != "cudnn":
          raise
        row["cudnn_error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"
        continue
      if name == "default":
        row["default_is_cudnn"] = "cudnn" in compiled.as_text().lower()
      times = common.time_calls(lambda: jax.block_until_ready(compiled(q, k, v, mask)),
                                warmup=1, iters=args.iters)
      row[f"{name}_ms"] = 1e3 * common.median(times)
      outs[name] = compiled(q, k, v, mask)[0][1]
    if "cudnn" in outs:
      row["cudnn_max_abs_diff"] = float(jnp.max(jnp.abs(outs["cudnn"].astype(jnp.float32) -
                                                      outs["xla"].astype(jnp.float32))))
    results.append(row)
    common.emit(row)
    if args.results:
      common.append_row(args.results, TABLE, COLUMNS, {
          **row, "device": row["device_kind"], "command": common.command_line()})
  return results


def main(argv: Sequence[str] | None = None) -> None:
  run(parse_args(argv))


if __name__ == "__main__":
  main()
