"""The one entry point of tryon-jax.

  python -m tryon_jax.main --config=configs/demo.py --workdir=/tmp/tryon_demo
  python -m tryon_jax.main --config=configs/base128.py:concat --workdir=DIR \\
      --config.data.path='gs://bucket/records/train-*' --config.train.batch_size=256
  python -m tryon_jax.main --mode=sample --config=configs/demo.py --workdir=DIR --sample_data=GLOB
  python -m tryon_jax.main --mode=describe --config=configs/sr256.py

Every ``--config.<field>=<value>`` overrides a config field; a misspelt field is an error (the
config is locked). Multi-host runs call ``jax.distributed.initialize()`` (see ``--multihost``).
"""

from __future__ import annotations

from collections.abc import Callable
import json
import logging as std_logging
import os
import sys

from absl import app
from absl import flags
from absl import logging
import ml_collections
from ml_collections import config_flags

from tryon_jax.inference import options as _inference_options  # noqa: F401  (tryon/eval flags)

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file, optionally with a variant: configs/base128.py:concat.",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Checkpoints, TensorBoard events, samples.")
_MODE = flags.DEFINE_string("mode", "train", "What to run: one of MODES (train, sample, ...).")
_SAMPLE_DATA = flags.DEFINE_string(
    "sample_data", None, "--mode=sample: records glob to sample try-ons for "
    "(default: config.data.path).")
_NUM_SAMPLES = flags.DEFINE_integer("num_samples", 8, "--mode=sample: how many records to use.")
_MULTIHOST = flags.DEFINE_enum(
    "multihost", "auto", ["auto", "on", "off"],
    "Call jax.distributed.initialize(): 'auto' when a coordinator or a multi-host cluster "
    "(TPU pod, SLURM, Open MPI) is detected in the environment.")
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "host:port of process 0 (else from JAX_COORDINATOR_ADDRESS or "
    "the cluster).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Process count (else detected).")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index (else detected).")

flags.mark_flags_as_required(["config"])


def _multihost_detected() -> bool:
  env = os.environ
  if _COORDINATOR.value or env.get("JAX_COORDINATOR_ADDRESS"):
    return True
  if "," in env.get("TPU_WORKER_HOSTNAMES", ""):  # Cloud TPU pod slice: one entry per host.
    return True
  if env.get("MEGASCALE_COORDINATOR_ADDRESS"):  # multi-slice TPU.
    return True
  for count_var in ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE"):
    if int(env.get(count_var, "1") or 1) > 1:
      return True
  return False


def _maybe_initialize_distributed() -> None:
  if _MULTIHOST.value == "off" or (_MULTIHOST.value == "auto" and not _multihost_detected()):
    return
  import jax  # pylint: disable=g-import-not-at-top
  # CPU processes exchange collectives over gloo; accelerators ignore this setting.
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(coordinator_address=_COORDINATOR.value,
                             num_processes=_NUM_PROCESSES.value, process_id=_PROCESS_ID.value)
  logging.info("jax.distributed: process %d of %d, %d local / %d global devices.",
               jax.process_index(), jax.process_count(), jax.local_device_count(),
               jax.device_count())


class _QuietLibraries(std_logging.Filter):
  """Drops INFO lines of Orbax and Grain (dozens per checkpoint) so the progress lines stay
  readable; their warnings and errors still show."""

  _NOISY = (f"{os.sep}orbax{os.sep}", f"{os.sep}grain{os.sep}")

  def filter(self, record) -> bool:
    return record.levelno > std_logging.INFO or not any(n in record.pathname for n in self._NOISY)


def _enable_compilation_cache(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Compiled programs are cached in WORKDIR/xla_cache, so a restarted run skips compilation
  (JAX_COMPILATION_CACHE_DIR, when set, wins)."""
  if config.train.persistent_compilation_cache and not os.environ.get("JAX_COMPILATION_CACHE_DIR"):
    import jax  # pylint: disable=g-import-not-at-top
    jax.config.update("jax_compilation_cache_dir", os.path.join(workdir, "xla_cache"))


def _require_workdir(mode: str) -> str:
  if not _WORKDIR.value:
    raise app.UsageError(f"--mode={mode} needs --workdir=DIR")
  return _WORKDIR.value


def run_train(config: ml_collections.ConfigDict) -> int:
  from tryon_jax.train import checkpoint as checkpoint_lib  # pylint: disable=g-import-not-at-top
  from tryon_jax.train import loop  # pylint: disable=g-import-not-at-top
  workdir = _require_workdir("train")
  _enable_compilation_cache(config, workdir)
  try:
    loop.train(config, workdir)
  except (loop.NonFiniteLossError, FileNotFoundError,
          checkpoint_lib.NoRestorableCheckpointError) as e:
    return _fail(e)
  return 0


def _fail(error: Exception) -> int:
  """Expected failures (bad input, NaN, broken checkpoints) end with one clear line, exit 1."""
  logging.error("%s", error)
  print(f"ERROR: {error}", file=sys.stderr)
  return 1


def run_sample(config: ml_collections.ConfigDict) -> int:
  from tryon_jax.train import checkpoint as checkpoint_lib  # pylint: disable=g-import-not-at-top
  from tryon_jax.train import loop  # pylint: disable=g-import-not-at-top
  workdir = _require_workdir("sample")
  _enable_compilation_cache(config, workdir)
  try:
    paths = loop.sample_from_checkpoint(config, workdir, _SAMPLE_DATA.value or config.data.path,
                                        _NUM_SAMPLES.value)
  except (FileNotFoundError, ValueError, checkpoint_lib.NoRestorableCheckpointError) as e:
    return _fail(e)
  print(json.dumps({"samples": paths}))
  return 0


def run_describe(config: ml_collections.ConfigDict) -> int:
  """One JSON line: the config's name and its parameter counts (nothing is allocated)."""
  from tryon_jax import models  # pylint: disable=g-import-not-at-top
  print(json.dumps({"config": config.name, **models.count_params(config.model)}))
  return 0


def run_tryon(config: ml_collections.ConfigDict) -> int:
  """Try-on PNGs from trained stages (flags: tryon_jax/inference/options.py)."""
  from tryon_jax.inference import tryon  # pylint: disable=g-import-not-at-top
  return tryon.run(config)


def run_eval(config: ml_collections.ConfigDict) -> int:
  """FID/KID (+ SSIM/PSNR when paired) of sampled try-ons -> WORKDIR/eval/<name>.json and tb/."""
  from tryon_jax.eval import evaluate  # pylint: disable=g-import-not-at-top
  return evaluate.run(config, _require_workdir("eval"))


# --mode=<name> -> runner(config) -> exit status. Other modes (tryon, eval) are added here.
MODES: dict[str, Callable[[ml_collections.ConfigDict], int]] = {
    "train": run_train,
    "sample": run_sample,
    "describe": run_describe,
    "tryon": run_tryon,
    "eval": run_eval,
}


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if _MODE.value not in MODES:
    raise app.UsageError(f"--mode={_MODE.value!r}: expected one of {sorted(MODES)}")
  quiet = _QuietLibraries()
  logging.get_absl_logger().addFilter(quiet)  # absl.logging calls ...
  logging.get_absl_handler().python_handler.addFilter(quiet)  # ... and stdlib loggers.
  if _MODE.value != "describe":
    _maybe_initialize_distributed()
  sys.exit(MODES[_MODE.value](_CONFIG.value))


def parse_flags(argv: list[str]) -> list[str]:
  """absl parsing, with a misspelt --config.<field> reported in one line instead of a traceback."""
  try:
    return flags.FLAGS(argv)
  except (AttributeError, KeyError) as e:  # ml_collections: unknown field, with a suggestion.
    message = e
    while isinstance(message, BaseException) and message.args:  # KeyError inside AttributeError.
      message = message.args[0]
    message = " ".join(str(message).split())
    print(f"FATAL: bad --config override: {message}", file=sys.stderr)
    sys.exit(2)
  except flags.Error as e:
    print(f"FATAL Flags parsing error: {e}\nPass --helpfull to see help on flags.", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
