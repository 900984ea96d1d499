"""benchmarks/: each runs on a tiny config and prints well-formed JSON results and a RESULTS.md row.

The three benchmark commands run once, concurrently, as subprocesses (module fixture), with their
--results pointed at temporary copies of benchmarks/RESULTS.md, so the committed file is never
touched (checked). XLA's backend optimization is turned down in those subprocesses: these tests
check structure, not speed, and compilation dominates their run time.
"""

import json
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

import suite_env

from benchmarks import common

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(REPO, "benchmarks", "RESULTS.md")

TINY_PARALLEL = ["model.resolution=16", "model.channels=(8,16)", "model.person_blocks=(1,1)",
                 "model.garment_blocks=(1,1)", "model.attention=(False,True)", "model.head_dim=8",
                 "model.garment_decoder_levels=1", "model.pose_embed_dim=16", "model.cond_dim=32",
                 "model.pool_heads=2"]
TINY_SR256 = ["model.resolution=32", "model.channels=(8,16)", "model.person_blocks=(1,1)",
              "model.garment_blocks=(1,1)", "model.attention=(False,True)", "model.head_dim=8",
              "model.pose_embed_dim=16", "model.cond_dim=32", "model.pool_heads=2"]
TINY_SR1024 = ["model.channels=(8,16)", "model.blocks=(1,1)", "model.cond_dim=32"]


def _sets(prefix, items):
  return [a for item in items for a in ("--set", prefix + item)]


COMMANDS = {
    # remat on: the step's own FLOP count then differs from the model count (model_flops lowers
    # a remat-free copy); --init=random: the host-built state must train to a finite loss.
    "train_step": ["--config=configs/demo.py", "--batch=2", "--steps=2", "--warmup=1",
                   "--init=random", *_sets("", TINY_PARALLEL + ["model.remat=True"])],
    "sampling": ["--cascade=tiny", "--samplers=ddim,dpmpp_2m", "--steps=2", "--batch=1",
                 "--iters=1", *_sets("base128.", TINY_PARALLEL), *_sets("sr256.", TINY_SR256),
                 *_sets("sr1024.", TINY_SR1024)],
    "data": ["--config=configs/demo.py", "--num=4", "--batch=4", "--batches=3", "--warmup=1",
             "--record_resolution=32"],
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """{benchmark: (returncode, stdout, stderr, results path)}, all run concurrently."""
  before = open(RESULTS, "rb").read()
  env = suite_env.child_env(os.environ)
  procs = {}
  for name, args in COMMANDS.items():
    results = str(tmp_path_factory.mktemp(name) / "RESULTS.md")
    shutil.copy(RESULTS, results)
    procs[name] = (subprocess.Popen(
        [sys.executable, "-m", f"benchmarks.{name}", *args, f"--results={results}"], cwd=REPO,
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True), results)
  out = {}
  for name, (proc, results) in procs.items():
    stdout, stderr = proc.communicate(timeout=600)
    out[name] = (proc.returncode, stdout, stderr, results)
  assert open(RESULTS, "rb").read() == before, "a benchmark test wrote the committed RESULTS.md"
  return out


def _records(run):
  code, stdout, stderr, _ = run
  assert code == 0, stderr[-3000:]
  lines = [l for l in stdout.splitlines() if l.startswith("{")]
  assert lines, f"no JSON line in stdout: {stdout[-2000:]}"
  return [json.loads(l) for l in lines]


def _table_rows(path, table):
  """Data rows (cells) of the markdown table under '## table'."""
  lines = open(path, encoding="utf-8").read().split("\n")
  start = lines.index(f"## {table}") + 1
  rows = []
  for line in lines[start:]:
    if line.startswith("## "):
      break
    if line.startswith("| ") and not line.startswith("| date"):
      rows.append([c.strip() for c in line.strip("|").split("|")])
  return rows


def _new_rows(path, table):
  """Rows the benchmark appended to its copy of the committed RESULTS.md."""
  old = _table_rows(RESULTS, table)
  new = _table_rows(path, table)
  assert new[:len(old)] == old, "rows already in RESULTS.md were changed"
  return new[len(old):]


def _positive(record, fields):
  for f in fields:
    assert f in record, f"missing field {f!r}"
    assert isinstance(record[f], (int, float)) and record[f] > 0, f"{f}={record[f]!r}"


def test_train_step_prints_positive_timings_flops_and_mfu(runs):
  (r,) = _records(runs["train_step"])
  assert r["benchmark"] == "train_step" and r["batch"] == 2
  assert r["init"] == "random" and r["remat"] is True and r["loss"] > 0
  _positive(r, ["init_s", "compile_s", "step_s", "pipelined_step_s", "images_per_s",
                "flops_per_step", "model_flops_per_step", "achieved_flops",
                "peak_flops_per_device", "mfu", "peak_mem_bytes", "donated_bytes"])
  assert r["peak_source"].startswith("measured_f32_matmul")  # CPU: measured, not a datasheet
  assert r["mfu"] < 1.0
  # The compiled step recomputes the forward pass under remat (about a third of a step); the
  # model count (a remat-free copy, lowered) leaves that out.
  assert r["model_flops_per_step"] < r["flops_per_step"] < 1.6 * r["model_flops_per_step"]
  rows = _new_rows(runs["train_step"][3], "train_step")
  assert len(rows) == 1 and rows[0][7:9] == ["True", "2"] and "model.channels=(8,16)" in rows[0][5]


# Scanned: the 16 px decoder level's 2 blocks are one stacked module (model.scan_blocks), whose
# kernels [2, ...] have the stack axis in front of their fan-in.
SCANNED = ["model.person_blocks=(1,2)", "model.garment_blocks=(1,2)", "model.scan_blocks=True"]


@pytest.mark.parametrize("overrides", [[], SCANNED], ids=["unrolled", "scanned"])
def test_random_state_has_the_spec_layout_and_initializer_like_values(overrides):
  from benchmarks import train_step  # pylint: disable=g-import-not-at-top
  from tryon_jax.parallel import sharding  # pylint: disable=g-import-not-at-top
  from tryon_jax.train import state as state_lib  # pylint: disable=g-import-not-at-top
  config = common.load_config(os.path.join(REPO, "configs/demo.py"), TINY_PARALLEL + overrides)
  spec = state_lib.state_spec(config, sharding.make_mesh(config.mesh.shape, config.mesh.axes))
  state = train_step.random_state(spec)
  spec_leaves = jax.tree_util.tree_flatten_with_path(spec.abstract)[0]
  leaves = jax.tree.leaves(state)
  assert len(leaves) == len(spec_leaves)
  kernels = stacked = 0
  for (path, abstract), leaf in zip(spec_leaves, leaves):
    name = jax.tree_util.keystr(path)
    assert (leaf.shape, leaf.dtype, leaf.sharding) == (abstract.shape, abstract.dtype,
                                                      abstract.sharding), name
    value = np.asarray(leaf)
    stack = 1 if "'blocks'" in name else 0
    stacked += stack
    if name.startswith("['optimizer']"):
      assert not value.any(), name  # Adam's moments and the counters start at zero
    elif value.ndim >= 2 + stack and value.size >= 1000:
      kernels += 1
      fan_in = value.size // value.shape[-1] // (value.shape[0] if stack else 1)
      assert np.std(value) * np.sqrt(fan_in) == pytest.approx(1.0, rel=0.2), name
    elif value.ndim == 1 + stack:
      assert np.all(value == (1.0 if "'scale'" in name else 0.0)), name
  assert kernels > 5 and (stacked > 0) == bool(overrides), (kernels, stacked)
  for model_leaf, ema_leaf in zip(jax.tree.leaves(state["model"]), jax.tree.leaves(state["ema"])):
    np.testing.assert_array_equal(np.asarray(model_leaf), np.asarray(ema_leaf))


def test_fit_batch_extrapolates_the_measured_peak_and_errs_small(capsys):
  from benchmarks import train_step  # pylint: disable=g-import-not-at-top
  gb = 1e9
  measured = {"batch": 32, "donated_bytes": 18 * gb, "peak_mem_bytes": 50 * gb}  # 1 GB/example
  # (0.9 * 80 - 18) / 1 = 54 examples -> 48, the largest multiple of 8 under it.
  assert train_step.fit_batch(measured, 80 * gb, 0.9, 8) == 48
  assert train_step.fit_batch(measured, 80 * gb, 0.9, 1) == 54
  assert train_step.fit_batch(measured, 55 * gb, 0.9, 8) is None  # 31.5 examples: no gain
  assert "no larger multiple of 8" in capsys.readouterr().err
  with pytest.raises(SystemExit, match="no memory limit"):
    train_step.fit_batch(measured, None, 0.9, 8)
  with pytest.raises(SystemExit, match="cannot extrapolate"):
    train_step.fit_batch({**measured, "peak_mem_bytes": 18 * gb}, 80 * gb, 0.9, 8)


def test_a_failed_model_flop_count_is_none_with_the_reason(capsys):
  from benchmarks import train_step  # pylint: disable=g-import-not-at-top
  args = train_step.parse_args([f"--config={REPO}/configs/demo.py", "--set=model.no_such_field=1"])
  assert train_step.count_model_flops(args, 2) is None
  err = capsys.readouterr().err
  assert "model FLOPs at batch 2: counting failed" in err and "no_such_field" in err


def test_sampling_prints_one_result_per_sampler_with_stage_latencies(runs):
  records = _records(runs["sampling"])
  assert [r["sampler"] for r in records] == ["ddim", "dpmpp_2m"]
  for r in records:
    _positive(r, ["latency_s", "s_per_image", "images_per_s"])
    assert r["compile_s"] >= 0
    assert set(r["stage_s"]) == {"base128", "sr256", "sr1024"}
    assert all(v > 0 for v in r["stage_s"].values())
    assert r["latency_s"] == pytest.approx(sum(r["stage_s"].values()))
    assert r["stage_resolution"] == {"base128": 16, "sr256": 32, "sr1024": 128}
    assert r["stage_steps"] == {"base128": 2, "sr256": 2, "sr1024": 2}
  rows = _new_rows(runs["sampling"][3], "sampling")
  assert [row[6] for row in rows] == ["ddim", "dpmpp_2m"]


def test_data_prints_records_per_second(runs):
  (r,) = _records(runs["data"])
  _positive(r, ["records_per_s", "records_per_s_per_core", "cores", "seconds", "batch"])
  assert r["records_per_s"] == pytest.approx(r["batches"] * r["batch"] / r["seconds"])
  rows = _new_rows(runs["data"][3], "data")
  assert len(rows) == 1 and rows[0][7] == "4"


def test_append_row_creates_sections_and_appends_under_the_right_heading(tmp_path):
  path = str(tmp_path / "R.md")
  common.append_row(path, "a", ("x", "y"), {"x": 1, "y": 0.5})
  common.append_row(path, "b", ("z",), {"z": "q|r"})
  common.append_row(path, "a", ("x", "y"), {"x": 2, "y": 2e9})
  text = open(path).read()
  assert text.index("| 1 | 0.5 |") < text.index("| 2 | 2e+09 |") < text.index("## b")
  assert "| q\\|r |" in text
  common.append_row(path, "a", ("x", "y", "w"), {"x": 3, "w": 4})  # new columns: new header
  lines = open(path).read().split("\n")
  i = lines.index("| x | y | w |")
  assert lines[i - 1] == "" and lines[i + 2] == "| 3 |  | 4 |" and i < lines.index("## b")


def test_peak_table_and_bad_overrides():
  assert common.table_peak_flops("NVIDIA H100 80GB HBM3") == 989e12
  assert common.table_peak_flops("NVIDIA H100 PCIe") == 756e12
  assert common.table_peak_flops("TPU v5 lite") == 197e12
  assert common.table_peak_flops("TPU v5p") == 459e12
  assert common.table_peak_flops("cpu") is None
  with pytest.raises(SystemExit, match="model.chanels"):
    common.load_config(os.path.join(REPO, "configs/demo.py"), ["model.chanels=(8,16)"])
  with pytest.raises(SystemExit, match="expected KEY=VALUE"):
    common.load_config(os.path.join(REPO, "configs/demo.py"), ["model.channels"])
  with pytest.raises(SystemExit, match="no such file"):
    common.load_config("configs/nope.py")
