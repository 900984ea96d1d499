"""GKE JobSet manifests: valid YAML with the fields TPU slices / GPU nodes and jax.distributed
need (no kubectl, no cluster)."""

import io
import os
import re
import subprocess
import sys
from contextlib import redirect_stdout

import pytest
import yaml

from launch import topologies
from launch.gke import render

REPO = topologies.REPO_ROOT
ARGS = dict(image="us-docker.pkg.dev/p/r/tryon-jax:tpu", workdir="gs://bucket/runs/base128",
            config="configs/base128.py", overrides=["--config.train.lr=3e-4"])
CASES = [("v4-32", 1), ("v4-32", 2), ("v5e-256", 1), ("v5e-256", 2), ("v5p-128", 1),
         ("v5p-128", 2), ("v6e-64", 4), ("v5e-8", 1), ("h100x8", 1), ("h100x8", 2),
         ("h100x16", 1)]


def _parts(jobset):
  rjob = jobset["spec"]["replicatedJobs"][0]
  pod = rjob["template"]["spec"]["template"]["spec"]
  return rjob, rjob["template"]["spec"], pod, pod["containers"][0]


def _env(container):
  return {e["name"]: e for e in container["env"]}


@pytest.mark.parametrize("accelerator,num_slices", CASES)
def test_manifest_is_valid_yaml_with_required_fields(accelerator, num_slices):
  spec = topologies.parse_accelerator(accelerator)
  text = render.to_yaml(render.render_jobset(accelerator=accelerator, num_slices=num_slices,
                                             **ARGS))
  docs = list(yaml.safe_load_all(text))
  assert len(docs) == 1
  jobset = docs[0]
  assert (jobset["apiVersion"], jobset["kind"]) == ("jobset.x-k8s.io/v1alpha2", "JobSet")
  assert jobset["spec"]["network"]["enableDNSHostnames"] is True
  name = jobset["metadata"]["name"]
  assert re.fullmatch(r"[a-z][a-z0-9-]*[a-z0-9]", name) and len(name) <= 30
  rjob, job, pod, container = _parts(jobset)
  env = _env(container)
  assert container["image"] == ARGS["image"]
  assert container["command"][:6] == ["python", "-m", "tryon_jax.main",
                                      "--config=configs/base128.py",
                                      "--workdir=gs://bucket/runs/base128",
                                      "--config.train.lr=3e-4"]
  assert job["completionMode"] == "Indexed"
  assert "batch.kubernetes.io/job-completion-index" in str(env["JOB_COMPLETION_INDEX"])
  coordinator = f"{name}-{rjob['name']}-0-0.{name}"  # pod 0 of job 0 on the headless service

  if spec.kind == "tpu":
    assert jobset["metadata"]["annotations"] == {
        "alpha.jobset.sigs.k8s.io/exclusive-topology": "cloud.google.com/gke-nodepool"}
    assert rjob["replicas"] == num_slices
    assert job["completions"] == job["parallelism"] == spec.hosts
    assert container["resources"]["limits"] == {"google.com/tpu": spec.chips_per_host}
    assert pod["nodeSelector"] == {
        "cloud.google.com/gke-tpu-accelerator": spec.gke_accelerator,
        "cloud.google.com/gke-tpu-topology": spec.topology}
    if spec.multi_host:
      hostnames = env["TPU_WORKER_HOSTNAMES"]["value"].split(",")
      assert len(hostnames) == spec.hosts
      assert hostnames[0] == f"{name}-slice-$(JOB_INDEX)-0.{name}"
      assert env["TPU_WORKER_ID"]["value"] == "$(JOB_COMPLETION_INDEX)"
    else:
      assert "TPU_WORKER_HOSTNAMES" not in env  # one host: no jax.distributed within the slice
    if num_slices > 1:
      assert env["MEGASCALE_NUM_SLICES"]["value"] == str(num_slices)
      assert env["MEGASCALE_SLICE_ID"]["value"] == "$(JOB_INDEX)"
      assert env["MEGASCALE_COORDINATOR_ADDRESS"]["value"] == coordinator
    else:
      assert "MEGASCALE_NUM_SLICES" not in env
  else:
    total_hosts = spec.hosts * num_slices
    assert "annotations" not in jobset["metadata"] or not jobset["metadata"]["annotations"]
    assert rjob["replicas"] == 1
    assert job["completions"] == job["parallelism"] == total_hosts
    assert container["resources"]["limits"] == {"nvidia.com/gpu": spec.chips_per_host}
    assert pod["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"}
    if total_hosts > 1:
      assert env["JAX_COORDINATOR_ADDRESS"]["value"] == (
          f"{coordinator}:{render.JAX_COORDINATOR_PORT}")
      assert container["command"][-2:] == [f"--num_processes={total_hosts}",
                                           "--process_id=$(JOB_COMPLETION_INDEX)"]
    else:
      assert "JAX_COORDINATOR_ADDRESS" not in env
      assert not any(a.startswith("--process_id") for a in container["command"])


@pytest.mark.parametrize("accelerator,num_slices", CASES)
def test_env_references_only_earlier_variables(accelerator, num_slices):
  """Kubernetes expands $(VAR) in env values and the command only from variables defined
  earlier in the env list; anything else would reach JAX as the literal text."""
  jobset = render.render_jobset(accelerator=accelerator, num_slices=num_slices, **ARGS)
  _, _, _, container = _parts(jobset)
  defined = set()
  for entry in container["env"]:
    for ref in re.findall(r"\$\((\w+)\)", entry.get("value", "")):
      assert ref in defined, (entry["name"], ref)
    defined.add(entry["name"])
  for arg in container["command"]:
    for ref in re.findall(r"\$\((\w+)\)", arg):
      assert ref in defined, (arg, ref)


def test_the_documented_command_line_renders(tmp_path):
  result = subprocess.run(
      [sys.executable, "-m", "launch.gke.render", "--accelerator", "v5p-128", "--num_slices",
       "2", "--image", "IMG", "--workdir", "gs://b/run", "--config", "configs/base128.py",
       "--config.train.batch_size=512"],
      cwd=REPO, capture_output=True, text=True, timeout=60,
      env={**os.environ, "PYTHONPATH": REPO})
  assert result.returncode == 0, result.stderr
  jobset = yaml.safe_load(result.stdout)
  rjob, job, _, container = _parts(jobset)
  assert (rjob["replicas"], job["completions"]) == (2, 16)
  assert container["command"][-1] == "--config.train.batch_size=512"


@pytest.mark.parametrize("argv,fragment", [
    (["--accelerator", "v5z-8"], "--accelerator='v5z-8'"),
    (["--accelerator", "v5e-8", "--num_slices", "2"], "--num_slices=2"),
    (["--accelerator", "v5p-128", "--name", "A-very-long-jobset-name-that-overflows"], "--name="),
    (["--accelerator", "v5p-128", "--config", "configs/none.py"], "--config=configs/none.py"),
])
def test_bad_flags_print_one_line_and_nothing_on_stdout(argv, fragment, capsys):
  base = {"--image": "IMG", "--workdir": "gs://b/run", "--config": "configs/base128.py"}
  for flag, value in zip(argv[::2], argv[1::2]):
    base[flag] = value
  out = io.StringIO()
  with redirect_stdout(out):
    rc = render.main([x for kv in base.items() for x in kv])
  err = capsys.readouterr().err.strip().splitlines()
  assert rc == 2 and out.getvalue() == ""
  assert len(err) == 1 and fragment in err[0]


def test_optional_service_account_and_restarts():
  jobset = render.render_jobset(accelerator="v4-32", service_account="tryon-ksa",
                                max_restarts=7, name="my-run", **ARGS)
  _, _, pod, _ = _parts(jobset)
  assert pod["serviceAccountName"] == "tryon-ksa"
  assert jobset["spec"]["failurePolicy"]["maxRestarts"] == 7
  assert jobset["metadata"]["name"] == "my-run"
