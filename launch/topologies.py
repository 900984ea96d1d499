"""Accelerator slice types -> hosts, chips per host, topology and GKE labels; the job's command.

Shared by the XManager launcher (launch/xm_launch.py) and the GKE JobSet renderer
(launch/gke/render.py), so both agree on how many processes a job has and what each runs.

Names follow Cloud TPU's accelerator types: ``<generation>-<N>`` where N counts TensorCores on
v4 and v5p (2 per chip) and chips on v5e and v6e (1 TensorCore per chip). GPUs are written
``<gpu>x<count>`` (``h100x8``: one node with 8 H100s; ``h100x16``: two such nodes).

Sources (checked 2026): Cloud TPU system architecture pages for v4, v5e, v5p, v6e; GKE "Plan TPUs"
(node labels ``cloud.google.com/gke-tpu-accelerator`` / ``cloud.google.com/gke-tpu-topology`` and
machine types); XPK's ``src/xpk/core/system_characteristics.py`` (same accelerator labels, machine
types, 4 chips per VM on multi-host slices, default topology per size). Single-host v5e/v6e 2x4
slices use the 8-chip machine types (ct5lp-hightpu-8t, ct6e-standard-8t); every multi-host TPU
slice has 4 chips per host.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re

# The repository root: config paths are checked here, and the image holds the same tree.
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class LaunchError(ValueError):
  """A bad launcher flag (--accelerator, --topology, --num_slices, --config, ...); str() is one line."""


@dataclasses.dataclass(frozen=True)
class TpuGeneration:
  name: str  # canonical prefix, e.g. "v5p"
  cores_per_chip: int  # TensorCores per chip: the unit of N in "v5p-N"
  dims: int  # 3 for the 3D-torus generations, 2 for v5e / v6e
  gke_accelerator: str  # node label cloud.google.com/gke-tpu-accelerator
  # chips per host -> GKE machine type of such a host
  machine_types: dict[int, str]
  # chips in a slice -> default topology (what `gcloud` / XPK pick for that size)
  default_topologies: dict[int, str]
  max_chips: int  # chips in a full pod: the largest single slice


# 3D generations: the standard shapes of one host (2x2x1), 2 hosts (2x2x2), ... and the
# cube multiples. Larger or non-default shapes can be passed with --topology.
_SHAPES_3D = {
    4: "2x2x1", 8: "2x2x2", 16: "2x2x4", 32: "2x4x4", 64: "4x4x4", 128: "4x4x8",
    192: "4x4x12", 256: "4x8x8", 384: "4x8x12", 512: "8x8x8", 768: "8x8x12",
    1024: "8x8x16", 1536: "8x12x16", 2048: "8x16x16", 4096: "16x16x16",
}
_SHAPES_2D = {
    1: "1x1", 4: "2x2", 8: "2x4", 16: "4x4", 32: "4x8", 64: "8x8", 128: "8x16", 256: "16x16",
}

TPU_GENERATIONS: dict[str, TpuGeneration] = {
    "v4": TpuGeneration("v4", 2, 3, "tpu-v4-podslice", {4: "ct4p-hightpu-4t"}, _SHAPES_3D, 4096),
    "v5p": TpuGeneration("v5p", 2, 3, "tpu-v5p-slice", {4: "ct5p-hightpu-4t"}, _SHAPES_3D, 8960),
    "v5e": TpuGeneration(
        "v5e", 1, 2, "tpu-v5-lite-podslice",
        {1: "ct5lp-hightpu-1t", 4: "ct5lp-hightpu-4t", 8: "ct5lp-hightpu-8t"}, _SHAPES_2D, 256),
    "v6e": TpuGeneration(
        "v6e", 1, 2, "tpu-v6e-slice",
        {1: "ct6e-standard-1t", 4: "ct6e-standard-4t", 8: "ct6e-standard-8t"}, _SHAPES_2D, 256),
}
_TPU_ALIASES = {"v5litepod": "v5e", "v5lite": "v5e", "trillium": "v6e"}


@dataclasses.dataclass(frozen=True)
class GpuType:
  name: str
  gke_accelerator: str  # node label cloud.google.com/gke-accelerator
  gpus_per_node: int  # GPUs on the largest machine type (a3-highgpu-8g, a3-ultragpu-8g)
  machine_type: str


GPU_TYPES: dict[str, GpuType] = {
    "h100": GpuType("h100", "nvidia-h100-80gb", 8, "a3-highgpu-8g"),
    "h200": GpuType("h200", "nvidia-h200-141gb", 8, "a3-ultragpu-8g"),
}


@dataclasses.dataclass(frozen=True)
class SliceSpec:
  """One slice (TPU) or one group of identical GPU nodes; a job runs num_slices of them.

  A "host" is one VM / Kubernetes node, and runs one JAX process.
  """
  accelerator: str  # canonical name, e.g. "v5p-128", "h100x8"
  kind: str  # "tpu" or "gpu"
  generation: str  # "v5p", "h100", ...
  topology: str  # "4x4x4"; GPUs: "<gpus per host>x<hosts>" (XManager's GPU topology form)
  hosts: int
  chips_per_host: int
  gke_accelerator: str
  machine_type: str

  @property
  def chips(self) -> int:
    return self.hosts * self.chips_per_host

  @property
  def multi_host(self) -> bool:
    return self.hosts > 1


def _topology_chips(topology: str) -> int:
  return math.prod(int(d) for d in topology.split("x"))


def _tpu_slice(generation: TpuGeneration, count: int, topology: str | None,
               accelerator: str) -> SliceSpec:
  if count % generation.cores_per_chip:
    raise LaunchError(
        f"--accelerator={accelerator}: {generation.name}-N counts TensorCores "
        f"({generation.cores_per_chip} per chip), so N must be a multiple of "
        f"{generation.cores_per_chip}")
  chips = count // generation.cores_per_chip
  if chips > generation.max_chips:
    raise LaunchError(f"--accelerator={accelerator}: a {generation.name} pod has at most "
                           f"{generation.max_chips} chips; use --num_slices for more")
  if topology is None:
    if chips not in generation.default_topologies:
      sizes = ", ".join(f"{generation.name}-{c * generation.cores_per_chip}"
                        for c in sorted(generation.default_topologies))
      raise LaunchError(
          f"--accelerator={accelerator}: no default topology for {chips} chips; pass "
          f"--topology or use one of {sizes}")
    topology = generation.default_topologies[chips]
  if not re.fullmatch(r"[1-9]\d*(x[1-9]\d*)+", topology) or len(topology.split("x")) != generation.dims:
    raise LaunchError(
        f"--topology={topology}: {generation.name} takes a {generation.dims}D topology "
        f"like {generation.default_topologies[max(generation.default_topologies)]}")
  dims = [int(d) for d in topology.split("x")]
  small = set(list(generation.default_topologies.values())[:4])  # sub-cube shapes (2x2x1, ...)
  if generation.dims == 3 and topology not in small and any(d % 4 for d in dims):
    raise LaunchError(f"--topology={topology}: {generation.name} slices beyond "
                      f"{', '.join(sorted(small))} are whole 4x4x4 cubes (every side a multiple "
                      f"of 4)")
  if generation.dims == 2 and topology not in generation.default_topologies.values():
    raise LaunchError(f"--topology={topology}: {generation.name} slices are one of "
                      f"{', '.join(generation.default_topologies.values())}")
  if _topology_chips(topology) != chips:
    raise LaunchError(
        f"--topology={topology} has {_topology_chips(topology)} chips but "
        f"{accelerator} has {chips}")
  # Single-host slices put every chip on one VM (1, 4 or 8 chips); larger ones have 4 per host.
  chips_per_host = chips if chips in generation.machine_types else 4
  if chips % chips_per_host:
    raise LaunchError(f"--accelerator={accelerator}: {chips} chips do not split into "
                           f"hosts of {chips_per_host}")
  return SliceSpec(accelerator=f"{generation.name}-{count}", kind="tpu",
                   generation=generation.name, topology=topology,
                   hosts=chips // chips_per_host, chips_per_host=chips_per_host,
                   gke_accelerator=generation.gke_accelerator,
                   machine_type=generation.machine_types[chips_per_host])


def _gpu_slice(gpu: GpuType, count: int, topology: str | None, accelerator: str) -> SliceSpec:
  if topology is not None:
    raise LaunchError(f"--topology={topology}: GPU slices have no ICI topology; "
                           f"write the GPU count in --accelerator ({gpu.name}x16 = 2 nodes)")
  if count <= gpu.gpus_per_node:
    if gpu.gpus_per_node % count:
      raise LaunchError(f"--accelerator={accelerator}: one node takes 1, 2, 4 or "
                             f"{gpu.gpus_per_node} GPUs")
    hosts, per_host = 1, count
  elif count % gpu.gpus_per_node == 0:
    hosts, per_host = count // gpu.gpus_per_node, gpu.gpus_per_node
  else:
    raise LaunchError(f"--accelerator={accelerator}: more than {gpu.gpus_per_node} GPUs "
                           f"must be whole nodes of {gpu.gpus_per_node}")
  return SliceSpec(accelerator=f"{gpu.name}x{count}", kind="gpu", generation=gpu.name,
                   topology=f"{per_host}x{hosts}", hosts=hosts, chips_per_host=per_host,
                   gke_accelerator=gpu.gke_accelerator, machine_type=gpu.machine_type)


def parse_accelerator(accelerator: str, topology: str | None = None) -> SliceSpec:
  """``"v5p-128"`` -> SliceSpec(hosts=16, chips_per_host=4, topology="4x4x4", ...).

  Raises LaunchError (one line, naming the flag) for anything it does not know.
  """
  name = accelerator.strip().lower()
  if match := re.fullmatch(r"([a-z0-9]+)-(\d+)", name):
    prefix, count = match.group(1), int(match.group(2))
    generation = TPU_GENERATIONS.get(_TPU_ALIASES.get(prefix, prefix))
    if generation is not None and count > 0:
      return _tpu_slice(generation, count, topology, accelerator)
  if match := re.fullmatch(r"([a-z0-9]+)x(\d+)", name):
    gpu = GPU_TYPES.get(match.group(1))
    if gpu is not None and int(match.group(2)) > 0:
      return _gpu_slice(gpu, int(match.group(2)), topology, accelerator)
  known = ", ".join([f"{g}-N" for g in TPU_GENERATIONS] + [f"{g}xN" for g in GPU_TYPES])
  raise LaunchError(f"--accelerator={accelerator!r}: unknown accelerator; expected one of "
                         f"{known} (e.g. v5p-128, v5e-256, v4-32, v6e-64, h100x8)")


def check_num_slices(spec: SliceSpec, num_slices: int) -> None:
  """Multislice (DCN between slices) runs only on multi-host TPU slices (GKE "Deploy TPU
  Multislices"); GPU nodes are always joined over the data-center network."""
  if num_slices < 1:
    raise LaunchError(f"--num_slices={num_slices}: must be at least 1")
  if spec.kind == "tpu" and num_slices > 1 and not spec.multi_host:
    raise LaunchError(
        f"--num_slices={num_slices}: TPU Multislice needs multi-host slices and "
        f"{spec.accelerator} is one host; pick a larger slice")


def job_command(config: str, workdir: str, overrides: list[str] | tuple[str, ...] = ()) -> list[str]:
  """The command every host runs: ``python -m tryon_jax.main --config=C --workdir=W [overrides]``.

  ``config`` is a repository-relative config file, optionally with ``:variant``; each override
  is ``--config.<field>=<value>`` (tryon_jax.main rejects misspelt fields itself).
  """
  config_file = config.split(":", 1)[0]
  if not config_file or os.path.isabs(config_file) or not os.path.isfile(
      os.path.join(REPO_ROOT, config_file)):
    raise LaunchError(f"--config={config}: no such config file in the repository "
                           f"(give a repository-relative path like configs/base128.py)")
  if not workdir:
    raise LaunchError("--workdir: required (a gs:// path for multi-host jobs)")
  for override in overrides:
    if not re.fullmatch(r"--config\.[A-Za-z_][\w.]*=.*", override):
      raise LaunchError(f"{override!r}: only --config.<field>=<value> overrides are passed "
                             f"to tryon_jax.main")
  return ["python", "-m", "tryon_jax.main", f"--config={config}", f"--workdir={workdir}",
          *overrides]
