r"""XManager launch script for tryon-jax.

  # Print the job (no XManager, no credentials needed):
  python -m launch.xm_launch --config=configs/base128.py --workdir=gs://BUCKET/runs/base128 \
      --accelerator=v5p-128 --num_slices=2 --image=IMG --dry_run --config.train.lr=3e-4
  # Launch on Vertex AI (pip install xmanager; gcloud auth; GOOGLE_CLOUD_BUCKET_NAME set):
  PYTHONPATH=. xmanager launch launch/xm_launch.py -- --config=configs/base128.py \
      --workdir=gs://BUCKET/runs/base128 --accelerator=h100x8 --image=IMG

Every host runs ``python -m tryon_jax.main --config=... --workdir=...`` plus each
``--config.<field>=<value>`` given here. The image (launch/Dockerfile) has that command as its
entrypoint, so the XManager job passes only the flags.

What launches where: XManager's open-source executors reach Vertex AI, whose executor maps GPUs
(H100 included) but of the TPUs only v2/v3, and whose multi-replica jobs describe the cluster
in a CLUSTER_SPEC variable that tryon_jax.main does not read. So a real launch here runs
single-host GPU jobs; TPU slices and multi-host GPU jobs are launched on GKE with the JobSet
from launch/gke/render.py (the dry run prints that command). The dry run works for all of them
and reports the same host and chip counts as the JobSet.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import sys
from typing import Any

from absl import app
from absl import flags

from launch import topologies

_CONFIG = flags.DEFINE_string("config", None, "Config file in this repository, optionally "
                              "with a variant: configs/base128.py:concat.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Checkpoints and logs; gs://... on the cloud "
                               "(Orbax and etils.epath write GCS paths directly).")
_ACCELERATOR = flags.DEFINE_string("accelerator", None, "Slice type: v5p-128, v5e-256, v4-32, "
                                   "v6e-64, h100x8, ... (launch/topologies.py).")
_TOPOLOGY = flags.DEFINE_string("topology", None, "Override the slice's default TPU topology.")
_NUM_SLICES = flags.DEFINE_integer("num_slices", 1, "TPU slices joined over the data-center "
                                   "network (Multislice), or groups of GPU nodes.")
_IMAGE = flags.DEFINE_string("image", None, "Pushed image built from launch/Dockerfile.")
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "Print the job spec as JSON and exit; needs "
                             "neither xmanager nor credentials.")
_TITLE = flags.DEFINE_string("experiment_title", None, "Default: tryon-<config>-<accelerator>.")

flags.mark_flags_as_required(["config", "workdir", "accelerator", "image"])

# Variables the launcher sets in every job (the platform adds the distributed ones).
JOB_ENV = {"PYTHONUNBUFFERED": "1"}  # log lines reach the platform's log viewer at once
_XM_TPU_RESOURCE = {"v4": "tpu_v4", "v5e": "tpu_v5e", "v5p": "tpu_v5p", "v6e": "tpu_v6e"}


@dataclasses.dataclass(frozen=True)
class JobSpec:
  image: str
  command: list[str]
  accelerator: str
  topology: str
  num_slices: int
  hosts_per_slice: int
  chips_per_host: int
  total_hosts: int
  total_chips: int
  env: dict[str, str]
  xm_requirements: dict[str, Any]  # keyword arguments of xm.JobRequirements for one host group
  xm_executor: str | None  # "vertex", or None where the GKE JobSet is the way to launch
  gke_render: str  # the equivalent `python -m launch.gke.render ...` command


def _xm_requirements(spec: topologies.SliceSpec, num_slices: int) -> dict[str, Any]:
  """xm.JobRequirements keywords: TPUs by topology (tpu_v5p="4x4x4"), GPUs by count per host
  with one replica per host."""
  if spec.kind == "tpu":
    return {_XM_TPU_RESOURCE[spec.generation]: spec.topology}
  return {spec.generation: spec.chips_per_host, "replicas": spec.hosts * num_slices}


def build_job_spec(*, config: str, workdir: str, accelerator: str, image: str,
                   overrides: list[str] | tuple[str, ...] = (), num_slices: int = 1,
                   topology: str | None = None) -> JobSpec:
  """The job as plain data. Raises topologies.LaunchError (one line) on a bad flag."""
  spec = topologies.parse_accelerator(accelerator, topology)
  topologies.check_num_slices(spec, num_slices)
  command = topologies.job_command(config, workdir, overrides)
  if not image:
    raise topologies.LaunchError("--image: required (built from launch/Dockerfile and pushed)")
  total_hosts = spec.hosts * num_slices
  render = ["python", "-m", "launch.gke.render", "--accelerator", spec.accelerator,
            "--num_slices", str(num_slices), "--image", image, "--workdir", workdir,
            "--config", config, *(["--topology", topology] if topology else []), *overrides]
  return JobSpec(
      image=image, command=command, accelerator=spec.accelerator, topology=spec.topology,
      num_slices=num_slices, hosts_per_slice=spec.hosts, chips_per_host=spec.chips_per_host,
      total_hosts=total_hosts, total_chips=spec.chips * num_slices, env=dict(JOB_ENV),
      xm_requirements=_xm_requirements(spec, num_slices),
      xm_executor="vertex" if spec.kind == "gpu" and total_hosts == 1 else None,
      gke_render=shlex.join(render) + " > jobset.yaml")


def _launch(job: JobSpec, title: str) -> None:
  """Packages the prebuilt image and adds one Vertex AI job (imports xmanager only here)."""
  if job.xm_executor != "vertex":
    raise topologies.LaunchError(
        f"--accelerator={job.accelerator} --num_slices={job.num_slices}: {job.total_hosts} "
        f"hosts; XManager's Vertex executor runs single-host GPU jobs only here, launch this "
        f"on GKE: {job.gke_render}")
  from xmanager import xm  # pylint: disable=g-import-not-at-top
  from xmanager import xm_local  # pylint: disable=g-import-not-at-top

  flags_only = job.command[3:]  # the image's entrypoint is `python -m tryon_jax.main`
  with xm_local.create_experiment(experiment_title=title) as experiment:
    [executable] = experiment.package([
        xm.container(executor_spec=xm_local.Vertex.Spec(), image_path=job.image,
                     env_vars=job.env)])
    experiment.add(xm.Job(
        executable=executable,
        executor=xm_local.Vertex(requirements=xm.JobRequirements(**job.xm_requirements)),
        args=flags_only))


def _split_overrides(argv: list[str]) -> tuple[list[str], list[str]]:
  """absl does not know --config.<field> flags: they are set aside for tryon_jax.main."""
  overrides = [a for a in argv[1:] if a.startswith("--config.")]
  return [argv[0]] + [a for a in argv[1:] if not a.startswith("--config.")], overrides


_OVERRIDES: list[str] = []


def _parse_flags(argv: list[str]) -> list[str]:
  rest, overrides = _split_overrides(argv)
  _OVERRIDES[:] = overrides
  return flags.FLAGS(rest)


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  try:
    job = build_job_spec(config=_CONFIG.value, workdir=_WORKDIR.value,
                         accelerator=_ACCELERATOR.value, image=_IMAGE.value,
                         overrides=_OVERRIDES, num_slices=_NUM_SLICES.value,
                         topology=_TOPOLOGY.value)
    if _DRY_RUN.value:
      print(json.dumps(dataclasses.asdict(job), indent=2))
      return
    _launch(job, _TITLE.value or f"tryon-{job.accelerator}")
  except topologies.LaunchError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  app.run(main, flags_parser=_parse_flags)
