"""What every benchmark shares: config loading, timing, device facts, peak FLOP/s, results output.

  * ``load_config("configs/demo.py:concat", ["train.batch_size=8"])``: a stage config with
    ``--set KEY=VALUE`` overrides (values parsed as Python literals, else kept as strings).
  * ``time_calls(fn, warmup, iters)``: wall times of ``fn()`` (which must block on its result,
    e.g. end in ``jax.block_until_ready``) after ``warmup`` untimed calls; ``median`` of them.
  * ``device_info()``: platform, device kind, count, jax/flax versions.
  * ``peak_flops_per_device()``: dense bf16 peak of the accelerator from ``PEAK_BF16_FLOPS``; on
    CPU, measured here by a large float32 matmul (there is no datasheet number for a shared VM).
  * ``peak_memory_bytes()``: the device allocator's peak where it reports one, else process max RSS.
  * ``emit(record)``: one JSON line on stdout; ``append_row(path, table, columns, row)``: a row in
    the markdown table ``## table`` of RESULTS.md (the section and header are created if missing).
"""

from __future__ import annotations

import ast
import datetime
import importlib.util
import json
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

DEFAULT_RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "RESULTS.md")

# Dense (no 2:4 sparsity) bf16 matmul peak per chip, FLOP/s, matched against jax's device_kind
# (lower-cased substring, first match wins, so the more specific names come first). Sources:
#   TPU v4 275e12: cloud.google.com/tpu/docs/v4 ("Peak compute per chip 275 teraflops (bf16)")
#   TPU v5e 197e12: cloud.google.com/tpu/docs/v5e ("Peak compute per chip (bf16) 197 TFLOPs")
#   TPU v5p 459e12: cloud.google.com/tpu/docs/v5p ("Peak compute per chip (bf16) 459 TFLOPs")
#   TPU v6e 918e12: cloud.google.com/tpu/docs/v6e ("Peak compute per chip (bf16) 918 TFLOPs")
#   A100 312e12: NVIDIA A100 datasheet (BF16 Tensor Core 312 TFLOPS dense, 624 with sparsity)
#   H100 SXM 989e12 / PCIe 756e12: NVIDIA H100 datasheet (1,979 / 1,513 TFLOPS "with sparsity",
#     dense is half)
#   H200 989e12: same GH100 compute as H100 SXM (NVIDIA H200 datasheet, 1,979 TFLOPS sparse).
# jax device_kind strings: "TPU v4", "TPU v5 lite" (v5e), "TPU v5" / "TPU v5p", "TPU v6 lite"
# (v6e), "NVIDIA H100 80GB HBM3", "NVIDIA H100 PCIe", "NVIDIA H200", "NVIDIA A100-SXM4-80GB".
PEAK_BF16_FLOPS: tuple[tuple[str, float], ...] = (
    ("v6 lite", 918e12),
    ("v6e", 918e12),
    ("v5 lite", 197e12),
    ("v5e", 197e12),
    ("v5p", 459e12),
    ("tpu v5", 459e12),
    ("tpu v4", 275e12),
    ("h100 pcie", 756e12),
    ("h100", 989e12),
    ("h200", 989e12),
    ("a100", 312e12),
)

CPU_PEAK_MATMUL_SIZE = 2048  # 2048^3 f32 matmul: 17 GFLOP, big enough to saturate BLAS/XLA on a
# few cores, small enough (48 MB) to time in ~1 s on this 2-core VM.


# ------------------------------------------------------------------------------------ configs
def load_config(spec: str, overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
  """``spec`` = "path/to/config.py[:arg]" -> get_config(arg), then ``KEY=VALUE`` overrides."""
  path, _, arg = spec.partition(":")
  if not os.path.isfile(path):
    raise SystemExit(f"--config {spec!r}: no such file {path!r}")
  module_spec = importlib.util.spec_from_file_location(
      "_benchmark_config_" + os.path.splitext(os.path.basename(path))[0], path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  config = module.get_config(arg or None)
  apply_overrides(config, overrides)
  return config


def apply_overrides(config: ml_collections.ConfigDict, overrides: Sequence[str]) -> None:
  """Applies ``KEY=VALUE`` strings in place; a misspelt key or a badly typed value exits with a
  one-line error naming the override."""
  for item in overrides:
    key, sep, text = item.partition("=")
    if not sep or not key:
      raise SystemExit(f"--set {item!r}: expected KEY=VALUE")
    try:
      value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      value = text  # a plain string, e.g. model.dtype=bfloat16
    *parents, field = key.split(".")
    node = config
    for name in parents:
      node = node.get(name) if isinstance(node, ml_collections.ConfigDict) else None
    if not isinstance(node, ml_collections.ConfigDict) or field not in node:
      raise SystemExit(f"--set {item!r}: the config has no field {key!r}")
    try:
      setattr(node, field, value)  # ConfigDict refuses a value of another type
    except (TypeError, ValueError) as e:
      raise SystemExit(f"--set {item!r}: {type(e).__name__}: {e}") from None


# ------------------------------------------------------------------------------------- timing
def time_calls(fn: Callable[[], Any], *, warmup: int, iters: int) -> list[float]:
  """Seconds per call of ``fn`` (which must block until its result is ready), after ``warmup``
  untimed calls."""
  if iters < 1:
    raise ValueError(f"iters={iters} must be >= 1")
  for _ in range(warmup):
    fn()
  times = []
  for _ in range(iters):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return times


def median(values: Sequence[float]) -> float:
  return float(statistics.median(values))


# ------------------------------------------------------------------------------------ devices
def device_info() -> dict[str, Any]:
  """The facts every result row carries."""
  import flax  # pylint: disable=g-import-not-at-top
  dev = jax.devices()[0]
  return {"platform": dev.platform, "device_kind": dev.device_kind,
          "num_devices": jax.device_count(), "jax": jax.__version__, "flax": flax.__version__,
          "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")}


def table_peak_flops(device_kind: str) -> float | None:
  """Datasheet dense bf16 peak for ``device_kind`` (None if not in PEAK_BF16_FLOPS)."""
  kind = device_kind.lower()
  for pattern, peak in PEAK_BF16_FLOPS:
    if pattern in kind:
      return peak
  return None


def measure_matmul_flops(size: int = CPU_PEAK_MATMUL_SIZE, iters: int = 3) -> float:
  """Best FLOP/s of a ``size``^3 float32 matmul on the default device (the CPU's usable peak)."""
  a = jax.random.normal(jax.random.key(0), (size, size), jnp.float32)
  b = jax.random.normal(jax.random.key(1), (size, size), jnp.float32)
  matmul = jax.jit(jnp.matmul)
  times = time_calls(lambda: matmul(a, b).block_until_ready(), warmup=1, iters=iters)
  return 2.0 * size ** 3 / min(times)


def peak_flops_per_device() -> tuple[float, str]:
  """(peak FLOP/s of one device, where the number comes from)."""
  dev = jax.devices()[0]
  peak = table_peak_flops(dev.device_kind)
  if peak is not None:
    return peak, "datasheet_bf16_dense"
  if dev.platform == "cpu":
    return measure_matmul_flops(), f"measured_f32_matmul_{CPU_PEAK_MATMUL_SIZE}"
  raise SystemExit(f"no peak FLOP/s for device kind {dev.device_kind!r}: add it to "
                   "benchmarks/common.py PEAK_BF16_FLOPS")


def peak_memory_bytes() -> tuple[int, str]:
  """(peak bytes, source): device allocator peak (GPU/TPU), else the process's max RSS."""
  stats = jax.devices()[0].memory_stats()
  if stats and "peak_bytes_in_use" in stats:
    return int(stats["peak_bytes_in_use"]), "device_peak_bytes_in_use"
  rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
  return int(rss if sys.platform == "darwin" else rss * 1024), "process_max_rss"


def device_memory_limit() -> int | None:
  """Bytes the allocator may use on the first device (GPU/TPU), None where it says none (CPU)."""
  stats = jax.devices()[0].memory_stats()
  return int(stats["bytes_limit"]) if stats and "bytes_limit" in stats else None


def cost_analysis_flops(compiled: jax.stages.Compiled | jax.stages.Lowered) -> float:
  """FLOPs that XLA's cost analysis counts for one call of a lowered or compiled program."""
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):  # older jax: one dict per partition
    cost = cost[0]
  if not cost or "flops" not in cost:
    raise RuntimeError("XLA cost analysis reported no 'flops' for the program")
  return float(cost["flops"])


# ------------------------------------------------------------------------------------ results
def emit(record: dict[str, Any]) -> None:
  """One JSON line on stdout (the machine-readable result)."""
  print(json.dumps(record, sort_keys=False, default=_jsonable), flush=True)


def _jsonable(value: Any) -> Any:
  if hasattr(value, "item"):
    return value.item()
  return str(value)


def _cell(value: Any) -> str:
  if value is None:
    return ""  # not measured
  if isinstance(value, float):
    if value == 0.0:
      return "0"
    if abs(value) >= 1e5 or abs(value) < 1e-3:
      return f"{value:.3g}"
    return f"{value:.4g}"
  return str(value).replace("|", "\\|")


def append_row(path: str, table: str, columns: Sequence[str], row: dict[str, Any]) -> None:
  """Adds ``row`` (values for ``columns``) to the table under the heading ``## table`` in the
  markdown file ``path``; creates the file, heading and header row when they do not exist. A
  table whose header differs from ``columns`` gets a new header line (old rows stay readable)."""
  header = "| " + " | ".join(columns) + " |"
  line = "| " + " | ".join(_cell(row.get(c, "")) for c in columns) + " |"
  text = open(path, encoding="utf-8").read() if os.path.exists(path) else "# Benchmark results\n"
  lines = text.split("\n")
  heading = f"## {table}"
  if heading not in lines:
    while lines and lines[-1] == "":
      lines.pop()
    lines += ["", heading, "", header, "|" + "---|" * len(columns), line, ""]
  else:
    start = lines.index(heading) + 1
    end = start
    while end < len(lines) and not lines[end].startswith("## "):
      end += 1
    table_lines = [i for i in range(start, end) if lines[i].startswith("|")]
    last_header = max((i for i in table_lines if lines[i].startswith("| ") and
                       i + 1 < len(lines) and lines[i + 1].startswith("|---")), default=None)
    if last_header is None or lines[last_header] != header:
      insert_at = (table_lines[-1] + 1) if table_lines else start
      lines[insert_at:insert_at] = ["", header, "|" + "---|" * len(columns), line]
    else:
      lines.insert(table_lines[-1] + 1, line)
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    f.write("\n".join(lines).rstrip("\n") + "\n")
  os.replace(tmp, path)  # readers never see half a file


def command_line() -> str:
  """The command that produced a row, as typed (module form)."""
  module = os.path.splitext(os.path.relpath(sys.argv[0]))[0].replace(os.sep, ".")
  module = module[module.index("benchmarks."):] if "benchmarks." in module else module
  return " ".join(["python -m " + module] + sys.argv[1:])
