"""The command line of tryon_jax.main: config variants, overrides, errors, --mode dispatch."""

from __future__ import annotations

import json
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_train_support as support  # pylint: disable=wrong-import-position


def _main(*args: str, timeout: float = 120):
  return support.run_python(["-m", "tryon_jax.main", *args], timeout=timeout)


def test_misspelt_override_is_a_one_line_error_with_a_suggestion(tmp_path):
  proc = _main("--config=configs/demo.py", f"--workdir={tmp_path}", "--config.train.num_step=3")
  assert proc.returncode == 2
  assert "bad --config override" in proc.stderr
  assert 'Did you mean "num_steps"' in proc.stderr
  assert "Traceback" not in proc.stderr
  assert not os.listdir(tmp_path)  # nothing was started


def test_misspelt_section_is_an_error_too(tmp_path):
  proc = _main("--config=configs/demo.py", f"--workdir={tmp_path}", "--config.trian.lr=1.0")
  assert proc.returncode == 2 and 'Did you mean "train"' in proc.stderr


def test_badly_typed_override_names_the_flag(tmp_path):
  proc = _main("--config=configs/demo.py", f"--workdir={tmp_path}",
               "--config.train.batch_size=many")
  assert proc.returncode != 0 and "--config.train.batch_size" in proc.stderr


def test_unknown_mode_lists_the_modes():
  proc = _main("--config=configs/demo.py", "--mode=dance")
  assert proc.returncode != 0
  assert "--mode='dance'" in proc.stderr and "'train'" in proc.stderr


def test_train_without_workdir_is_a_usage_error():
  proc = _main("--config=configs/demo.py")
  assert proc.returncode != 0 and "--workdir" in proc.stderr


@pytest.mark.parametrize("config_arg, name", [
    ("configs/demo.py", "demo"),
    ("configs/demo.py:concat", "demo_concat"),  # a variant, with an override on top
])
def test_describe_prints_one_json_line_of_parameter_counts(config_arg, name):
  proc = _main(f"--config={config_arg}", "--mode=describe", "--config.model.channels=(32,64,128)")
  assert proc.returncode == 0, proc.stderr[-3000:]
  lines = [l for l in proc.stdout.splitlines() if l.strip()]
  assert len(lines) == 1
  described = json.loads(lines[0])
  assert described["config"] == name
  parts = {k: v for k, v in described.items() if k not in ("config", "params")}
  assert described["params"] == sum(parts.values()) > 0
  assert ("garment_unet" in parts) == (name == "demo")  # the concat ablation has no garment UNet


def test_paper_configs_hold_the_paper_training_settings():
  sys.path.insert(0, support.REPO)
  from configs import base128, sr256, sr1024  # pylint: disable=g-import-not-at-top
  for module in (base128, sr256, sr1024):
    c = module.get_config()
    assert (c.train.batch_size, c.train.num_steps) == (256, 500_000)
    assert (c.train.lr, c.train.warmup_steps) == (1e-4, 10_000)
    assert c.diffusion.cond_dropout == 0.1


def test_missing_records_are_a_one_line_error(tmp_path):
  proc = _main("--config=configs/demo.py", f"--workdir={tmp_path}",
               f"--config.data.path={tmp_path}/nothing-*.tfrecord")
  assert proc.returncode == 1
  assert "config.data.path" in proc.stderr and "matches no files" in proc.stderr
  assert "Traceback" not in proc.stderr


def test_sample_mode_without_a_checkpoint_says_so(tmp_path):
  records = tmp_path / "train-00000-of-00001.tfrecord"
  records.write_bytes(b"")
  proc = _main("--config=configs/demo.py", "--mode=sample", f"--workdir={tmp_path}",
               f"--sample_data={records}")
  assert proc.returncode == 1 and "no checkpoint in" in proc.stderr
