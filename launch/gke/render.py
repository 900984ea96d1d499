"""Renders the JobSet manifest that runs tryon-jax on GKE TPU slices or GPU nodes.

  python -m launch.gke.render --accelerator v5p-128 --num_slices 2 --image IMG \\
      --workdir gs://BUCKET/runs/base128 --config configs/base128.py \\
      --config.train.batch_size=256 > jobset.yaml
  kubectl apply -f jobset.yaml

One template (templates/jobset.yaml) serves both kinds of node; this module fills the names,
sizes, node selectors, resources and the environment jax.distributed.initialize() reads:

- TPU: one replicated Job per slice, one pod per host (completions = parallelism = hosts).
  JAX's GKE TPU cluster detection reads TPU_WORKER_HOSTNAMES (the slice's pod DNS names) and
  TPU_WORKER_ID (the pod's completion index); with several slices it adds MEGASCALE_NUM_SLICES,
  MEGASCALE_SLICE_ID (the Job's index in the JobSet) and MEGASCALE_COORDINATOR_ADDRESS (host 0 of
  slice 0), which is also the jax.distributed coordinator. GKE's TPU webhook injects the first
  two itself on recent versions; setting them here keeps the manifest working without it.
- GPU: one Job with every node; JAX_COORDINATOR_ADDRESS names pod 0 and the completion index is
  passed as --process_id (JAX has no GKE GPU auto-detection without the kubernetes package).

--workdir may be a gs:// path: Orbax and etils.epath write to GCS directly (the pods need a
service account with write access to the bucket, e.g. via Workload Identity).
"""

from __future__ import annotations

import argparse
import copy
import os
import re
import sys
from typing import Any

import yaml

from launch import topologies

TEMPLATE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates", "jobset.yaml")
EXCLUSIVE_TOPOLOGY = "alpha.jobset.sigs.k8s.io/exclusive-topology"
JAX_COORDINATOR_PORT = 6002  # any free port on pod 0; 6002 as in XPK's GPU workloads
# Longest name whose pod hostnames "<name>-slice-<j>-<i>" stay within 63 characters even at
# 4-digit indices (DNS label limit), with room for the headless service subdomain.
MAX_NAME_LENGTH = 30


def _field(path: str) -> dict[str, Any]:
  return {"valueFrom": {"fieldRef": {"fieldPath": path}}}


def _distributed_env(spec: topologies.SliceSpec, num_slices: int, name: str,
                     job_name: str) -> list[dict[str, Any]]:
  """The env each pod needs for jax.distributed.initialize(); order matters: Kubernetes expands
  $(VAR) only from variables defined earlier in the list."""
  env: list[dict[str, Any]] = [
      {"name": "JOB_INDEX", **_field("metadata.labels['jobset.sigs.k8s.io/job-index']")},
      {"name": "JOB_COMPLETION_INDEX",
       **_field("metadata.annotations['batch.kubernetes.io/job-completion-index']")},
      {"name": "PYTHONUNBUFFERED", "value": "1"},  # log lines reach `kubectl logs` at once
  ]
  if spec.kind == "tpu":
    if spec.multi_host:
      hostnames = ",".join(f"{name}-{job_name}-$(JOB_INDEX)-{i}.{name}" for i in range(spec.hosts))
      env += [{"name": "TPU_WORKER_ID", "value": "$(JOB_COMPLETION_INDEX)"},
              {"name": "TPU_WORKER_HOSTNAMES", "value": hostnames}]
    if num_slices > 1:
      env += [{"name": "MEGASCALE_NUM_SLICES", "value": str(num_slices)},
              {"name": "MEGASCALE_SLICE_ID", "value": "$(JOB_INDEX)"},
              {"name": "MEGASCALE_COORDINATOR_ADDRESS", "value": f"{name}-{job_name}-0-0.{name}"}]
  elif spec.hosts * num_slices > 1:
    env += [{"name": "JAX_COORDINATOR_ADDRESS",
             "value": f"{name}-{job_name}-0-0.{name}:{JAX_COORDINATOR_PORT}"}]
  return env


def default_name(config: str, accelerator: str) -> str:
  stem = os.path.splitext(os.path.basename(config.split(":", 1)[0]))[0]
  return re.sub(r"[^a-z0-9-]", "-", f"tryon-{stem}-{accelerator}".lower())[:MAX_NAME_LENGTH].strip("-")


def render_jobset(*, accelerator: str, image: str, workdir: str, config: str,
                  overrides: list[str] | tuple[str, ...] = (), num_slices: int = 1,
                  topology: str | None = None, name: str | None = None, max_restarts: int = 3,
                  service_account: str | None = None) -> dict[str, Any]:
  """Returns the JobSet as a dict (yaml.safe_dump it). Raises topologies.LaunchError."""
  spec = topologies.parse_accelerator(accelerator, topology)
  topologies.check_num_slices(spec, num_slices)
  command = topologies.job_command(config, workdir, overrides)
  if not image:
    raise topologies.LaunchError("--image: required (the pushed image, e.g. "
                                 "us-docker.pkg.dev/PROJECT/REPO/tryon-jax:TAG)")
  name = name or default_name(config, spec.accelerator)
  if not re.fullmatch(r"[a-z]([a-z0-9-]*[a-z0-9])?", name) or len(name) > MAX_NAME_LENGTH:
    raise topologies.LaunchError(f"--name={name}: lowercase letters, digits and '-', starting "
                                 f"with a letter, at most {MAX_NAME_LENGTH} characters")
  if max_restarts < 0:
    raise topologies.LaunchError(f"--max_restarts={max_restarts}: must be >= 0")

  with open(TEMPLATE) as f:
    jobset = yaml.safe_load(f)
  jobset["metadata"]["name"] = name
  jobset["spec"]["failurePolicy"]["maxRestarts"] = max_restarts
  rjob = jobset["spec"]["replicatedJobs"][0]
  job = rjob["template"]["spec"]
  pod = job["template"]["spec"]
  container = pod["containers"][0]
  container["image"] = image

  if spec.kind == "tpu":
    rjob["name"] = "slice"
    rjob["replicas"] = num_slices
    hosts_per_job = spec.hosts
    # Each slice lands on its own node pool (one node pool = one TPU slice on GKE).
    jobset["metadata"]["annotations"] = {EXCLUSIVE_TOPOLOGY: "cloud.google.com/gke-nodepool"}
    pod["nodeSelector"] = {"cloud.google.com/gke-tpu-accelerator": spec.gke_accelerator,
                           "cloud.google.com/gke-tpu-topology": spec.topology}
    pod["tolerations"] = [{"key": "google.com/tpu", "operator": "Exists",
                           "effect": "NoSchedule"}]
    resource = "google.com/tpu"
    # 8471: TPU runtime between hosts of a slice; 8080: MegaScale (DCN) between slices;
    # 8482: jax.distributed coordinator (JAX 0.10's default port on Cloud TPU).
    container["ports"] = [{"containerPort": p} for p in (8471, 8080, 8482)]
    # Host networking gives the TPU VMs' own NICs to the DCN traffic between slices (as XPK).
    pod["hostNetwork"] = True
    pod["dnsPolicy"] = "ClusterFirstWithHostNet"
  else:
    rjob["name"] = "gpu"
    rjob["replicas"] = 1
    hosts_per_job = spec.hosts * num_slices
    pod["nodeSelector"] = {"cloud.google.com/gke-accelerator": spec.gke_accelerator}
    pod["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists",
                           "effect": "NoSchedule"}]
    resource = "nvidia.com/gpu"
    container["ports"] = [{"containerPort": JAX_COORDINATOR_PORT}]
    if hosts_per_job > 1:
      command = command + [f"--num_processes={hosts_per_job}",
                           "--process_id=$(JOB_COMPLETION_INDEX)"]
  job["parallelism"] = job["completions"] = hosts_per_job
  container["resources"]["limits"] = {resource: spec.chips_per_host}
  container["command"] = command
  container["env"] = _distributed_env(spec, num_slices, name, rjob["name"])
  if service_account:
    pod["serviceAccountName"] = service_account
  return jobset


def to_yaml(jobset: dict[str, Any]) -> str:
  return yaml.safe_dump(copy.deepcopy(jobset), sort_keys=False, default_flow_style=False)


def _parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
  parser = argparse.ArgumentParser(
      prog="python -m launch.gke.render", description=__doc__.split("\n\n")[0],
      epilog="Any --config.<field>=<value> is passed on to tryon_jax.main.")
  parser.add_argument("--accelerator", required=True, help="v5p-128, v5e-256, v4-32, v6e-64, "
                      "h100x8, ... (see launch/topologies.py)")
  parser.add_argument("--topology", default=None, help="override the slice's default topology")
  parser.add_argument("--num_slices", type=int, default=1, help="TPU slices (Multislice) or "
                      "groups of GPU nodes")
  parser.add_argument("--image", required=True)
  parser.add_argument("--workdir", required=True, help="gs://BUCKET/PATH for multi-host jobs")
  parser.add_argument("--config", required=True, help="configs/base128.py[:variant]")
  parser.add_argument("--name", default=None, help="JobSet name (default from config and "
                      "accelerator)")
  parser.add_argument("--max_restarts", type=int, default=3)
  parser.add_argument("--service_account", default=None,
                      help="Kubernetes service account (Workload Identity for gs:// access)")
  args, rest = parser.parse_known_args(argv)
  return args, rest


def main(argv: list[str] | None = None) -> int:
  args, overrides = _parse(sys.argv[1:] if argv is None else argv)
  try:
    jobset = render_jobset(accelerator=args.accelerator, topology=args.topology,
                           num_slices=args.num_slices, image=args.image, workdir=args.workdir,
                           config=args.config, overrides=overrides, name=args.name,
                           max_restarts=args.max_restarts, service_account=args.service_account)
  except topologies.LaunchError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  sys.stdout.write(to_yaml(jobset))
  return 0


if __name__ == "__main__":
  sys.exit(main())
