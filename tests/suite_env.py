"""The environment every test process runs in: pytest's workers (tests/conftest.py) and the
children that tests start (``child_env``). No test here; imports nothing that imports jax.

The suite's programs run a few steps on tiny shapes, so compiling is nearly all of their cost:
  * XLA's backend optimisations are off: unoptimised code compiles faster (the learning test's
    train-state initializer: 17.0 s -> 5.2 s on this 2-core machine);
  * one persistent compilation cache is shared by all test processes, so a program that several
    tests (or both xdist workers) build is compiled once per machine.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping

FAST_COMPILE_XLA_FLAGS = ("--xla_backend_optimization_level=0"
                          " --xla_llvm_disable_expensive_passes=true")
CACHE_DIR = os.path.join(tempfile.gettempdir(), "tryon_jax_test_jax_cache")


def child_env(base: Mapping[str, str], devices: int | None = None) -> dict[str, str]:
  """``base`` with the suite's JAX settings: CPU only, fast compiles, the shared compilation cache,
  and ``devices`` fake CPU devices when given (base's own XLA_FLAGS are replaced)."""
  env = dict(base)
  flags = [f"--xla_force_host_platform_device_count={devices}"] if devices else []
  env["XLA_FLAGS"] = " ".join(flags + [FAST_COMPILE_XLA_FLAGS])
  env["JAX_PLATFORMS"] = "cpu"
  env.setdefault("JAX_COMPILATION_CACHE_DIR", CACHE_DIR)
  env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
  env["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
  return env
