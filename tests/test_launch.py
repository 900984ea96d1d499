"""The accelerator table and the XManager launcher's dry run (no xmanager, no network)."""

import json
import os
import subprocess
import sys

import pytest

from launch import topologies
from launch import xm_launch

REPO = topologies.REPO_ROOT
CONFIG = "configs/base128.py"
WORKDIR = "gs://bucket/runs/base128"
OVERRIDES = ["--config.train.lr=3e-4", "--config.train.batch_size=512"]


def _run_xm(*args: str) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", "launch.xm_launch", *args], cwd=REPO,
                        capture_output=True, text=True, timeout=60,
                        env={**os.environ, "PYTHONPATH": REPO})


# accelerator, num_slices -> topology, hosts per slice, chips per host
EXPECTED = {
    ("v5p-128", 1): ("4x4x4", 16, 4),  # 64 chips (2 TensorCores each), 4 per ct5p host
    ("v5e-256", 1): ("16x16", 64, 4),  # a full v5e pod on ct5lp-hightpu-4t hosts
    ("v4-32", 1): ("2x2x4", 4, 4),
    ("v6e-64", 1): ("8x8", 16, 4),
    ("h100x8", 2): ("8x1", 1, 8),  # two a3-highgpu-8g nodes
}


@pytest.mark.parametrize("accelerator,num_slices", list(EXPECTED))
def test_dry_run_counts_and_command(accelerator, num_slices):
  result = _run_xm(f"--config={CONFIG}", f"--workdir={WORKDIR}", f"--accelerator={accelerator}",
                   f"--num_slices={num_slices}", "--image=IMG:tag", "--dry_run", *OVERRIDES)
  assert result.returncode == 0, result.stderr
  job = json.loads(result.stdout)
  topology, hosts, per_host = EXPECTED[accelerator, num_slices]
  assert (job["topology"], job["hosts_per_slice"], job["chips_per_host"]) == (
      topology, hosts, per_host)
  assert job["num_slices"] == num_slices
  assert job["total_hosts"] == hosts * num_slices
  assert job["total_chips"] == hosts * per_host * num_slices
  assert job["image"] == "IMG:tag"
  assert job["command"] == ["python", "-m", "tryon_jax.main", f"--config={CONFIG}",
                            f"--workdir={WORKDIR}", *OVERRIDES]
  assert job["env"]["PYTHONUNBUFFERED"] == "1"
  # Only single-host GPU jobs go through XManager's Vertex executor; the rest name the JobSet.
  assert job["xm_executor"] is None
  assert f"--accelerator {accelerator}" in job["gke_render"]
  assert all(o in job["gke_render"] for o in OVERRIDES)


def test_xm_requirements_follow_the_xmanager_resource_names():
  tpu = xm_launch.build_job_spec(config=CONFIG, workdir=WORKDIR, accelerator="v5p-128",
                                 image="I")
  assert tpu.xm_requirements == {"tpu_v5p": "4x4x4"}
  gpu = xm_launch.build_job_spec(config=CONFIG, workdir=WORKDIR, accelerator="h100x8",
                                 image="I")
  assert gpu.xm_requirements == {"h100": 8, "replicas": 1}
  assert gpu.xm_executor == "vertex"


def test_config_variant_and_topology_override():
  job = xm_launch.build_job_spec(config=f"{CONFIG}:concat", workdir=WORKDIR,
                                 accelerator="v5p-512", topology="4x4x16", image="I")
  assert job.topology == "4x4x16" and job.hosts_per_slice == 64
  assert job.command[3] == f"--config={CONFIG}:concat"


@pytest.mark.parametrize("accelerator,topology,fragment", [
    ("v5x-128", None, "unknown accelerator"),
    ("tpu", None, "unknown accelerator"),
    ("v5p-7", None, "multiple of 2"),
    ("v5e-512", None, "at most 256 chips"),
    ("v5p-96", None, "no default topology"),
    ("h100x3", None, "1, 2, 4 or 8"),
    ("h100x12", None, "whole nodes"),
    ("v5p-128", "4x4", "3D topology"),
    ("v5p-128", "4x4x8", "has 128 chips"),
    ("v6e-64", "8x8x1", "2D topology"),
    ("v6e-64", "4x16", "slices are one of"),
    ("v5p-128", "2x4x8", "multiple of 4"),
    ("h100x8", "2x4", "no ICI topology"),
])
def test_bad_accelerator_is_a_one_line_error(accelerator, topology, fragment):
  with pytest.raises(topologies.LaunchError) as e:
    topologies.parse_accelerator(accelerator, topology)
  assert fragment in str(e.value)
  assert "\n" not in str(e.value)
  assert str(e.value).startswith("--accelerator=") or str(e.value).startswith("--topology=")


def test_multislice_needs_multi_host_slices():
  with pytest.raises(topologies.LaunchError, match="--num_slices=2"):
    topologies.check_num_slices(topologies.parse_accelerator("v5e-8"), 2)
  with pytest.raises(topologies.LaunchError, match="--num_slices=0"):
    topologies.check_num_slices(topologies.parse_accelerator("v5p-128"), 0)


@pytest.mark.parametrize("kwargs,fragment", [
    (dict(config="configs/missing.py"), "--config=configs/missing.py"),
    (dict(config="/etc/passwd"), "repository-relative"),
    (dict(workdir=""), "--workdir"),
    (dict(overrides=["--mode=sample"]), "'--mode=sample'"),
    (dict(image=""), "--image"),
])
def test_bad_flags_are_one_line_errors(kwargs, fragment):
  args = dict(config=CONFIG, workdir=WORKDIR, accelerator="v4-32", image="I") | kwargs
  with pytest.raises(topologies.LaunchError) as e:
    xm_launch.build_job_spec(**args)
  assert fragment in str(e.value) and "\n" not in str(e.value)


def test_cli_bad_accelerator_exits_with_one_line():
  result = _run_xm(f"--config={CONFIG}", f"--workdir={WORKDIR}", "--accelerator=v9-64",
                   "--image=I", "--dry_run")
  assert result.returncode == 2
  assert result.stdout == ""
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: --accelerator='v9-64'")


def test_real_launch_of_a_tpu_slice_points_to_gke_before_importing_xmanager():
  result = _run_xm(f"--config={CONFIG}", f"--workdir={WORKDIR}", "--accelerator=v5p-128",
                   "--image=I")
  assert result.returncode == 2
  assert "python -m launch.gke.render --accelerator v5p-128" in result.stderr
  assert "ModuleNotFoundError" not in result.stderr
