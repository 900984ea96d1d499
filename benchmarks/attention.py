"""Which kernel runs the model's attention, and how fast: cuDNN flash attention vs XLA.

  python -m benchmarks.attention --config=configs/base128.py --dtype=bfloat16

For every attention shape of the config's person UNet (self-attention over H*W tokens plus the
masked pose tokens, cross-attention over the garment tokens, at each attention level), it times
the forward+backward of tryon_jax.models.layers.multi_head_attention with
implementation="xla" and ="cudnn" (jax.nn.dot_product_attention's cuDNN flash attention).
model_impl is what the config's model.attention_impl resolves to on this device and dtype;
cudnn_ms is empty and cudnn_error set where cuDNN rejects the shape/dtype/mask (always on CPU);
cudnn_max_abs_diff compares its output with XLA's.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from benchmarks import common

TABLE = "attention"
COLUMNS = ("date", "device", "jax", "dtype", "kind", "batch", "tokens", "kv_tokens", "heads",
           "head_dim", "model_impl", "xla_ms", "cudnn_ms", "cudnn_max_abs_diff",
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


def _fwd_bwd(implementation: str):
  from tryon_jax.models import layers  # pylint: disable=g-import-not-at-top

  def loss(q, k, v, mask, num_heads):
    out = layers.multi_head_attention(q, k, v, num_heads, mask, implementation)
    return jnp.sum(out.astype(jnp.float32) ** 2), out

  return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True),
                 static_argnums=(4,))


def run(args: argparse.Namespace) -> list[dict]:
  from tryon_jax.models import layers  # pylint: disable=g-import-not-at-top
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
    row["model_impl"] = layers.attention_implementation(
        config.model.get("attention_impl", "xla"), dtype)
    outs = {}
    for name in ("xla", "cudnn"):
      try:
        compiled = _fwd_bwd(name).lower(q, k, v, mask, heads).compile()
      except Exception as e:  # pylint: disable=broad-except  (cuDNN refusing is a result)
        if name != "cudnn":
          raise
        row["cudnn_error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"
        continue
      if name == "cudnn" and "cudnn" not in compiled.as_text().lower():
        row["cudnn_error"] = "compiled without a cuDNN custom call"
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
