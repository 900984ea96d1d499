"""benchmarks.learning_pose: the pose-shift trends of learning-study reports, joined and pooled."""

import json

import numpy as np
import pytest

from benchmarks import learning_pose

SHIFT = [0.4, 0.1, 0.3, 0.2]


def _report(path, variant, per_pair, shift=SHIFT, **extra):
  """A benchmarks.learning report of one variant whose four metrics all score ``per_pair``."""
  scores = {m: list(per_pair) for m in learning_pose.METRICS}
  report = {"command": f"learning {path}", "num_train": 8, "num_test": len(per_pair),
            "eval_split": "test", "variants": {variant: {"per_example": scores}},
            "reference": {"copy_garment_input": {"per_example": scores}}, **extra}
  if shift is not None:
    report["eval_pose_shift"] = shift
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(report))


def test_runs_are_joined_by_directory_and_pooled_by_training_set(tmp_path, capsys):
  # Run a: parallel - concat = 10 x shift; run b: 10 x shift + 1; run c has only one variant.
  for run, offset in (("a", 0.0), ("b", 1.0)):
    _report(tmp_path / run / "parallel.json", "parallel", [10 * s + offset + 5 for s in SHIFT])
    _report(tmp_path / run / "concat.json", "concat", [5.0] * 4)
  _report(tmp_path / "c" / "parallel.json", "parallel", [1.0, 2.0, 3.0, 4.0])
  out = learning_pose.main([str(tmp_path / "a"), str(tmp_path / "b"), str(tmp_path / "c")])

  gap_a = out["runs"][f"{tmp_path / 'a'} (test): parallel - concat"]["psnr_garment"]
  assert gap_a["spearman"] == 1.0
  np.testing.assert_allclose((gap_a["small"], gap_a["large"]), (1.5, 3.5))
  assert f"{tmp_path / 'c'} (test): parallel" in out["runs"]  # scored alone, not pooled
  assert not any(k.startswith(f"{tmp_path / 'c'} (test): parallel -") for k in out["runs"])
  pooled = out["pooled"]["8 pairs (test), 2 runs pooled"]["hist_l1_garment"]
  np.testing.assert_allclose((pooled["small"], pooled["large"]), (2.0, 4.0))  # mean of a and b
  np.testing.assert_allclose((pooled["mean"], pooled["sem"]),
                             (3.0, np.std([1.5, 2.5, 3.5, 4.5], ddof=1) / 2))
  np.testing.assert_allclose(pooled["large_minus_small"], 2.0)
  # The pooled gap is 1.5, 2.5 | 3.5, 4.5 over the halves: variance 0.5 in each, 2 pairs each.
  np.testing.assert_allclose(pooled["large_minus_small_sem"], np.sqrt(0.5 / 2 + 0.5 / 2))
  printed = capsys.readouterr().out
  assert ("| 8 pairs (test), 2 runs pooled | parallel - concat | +2.000 → +4.000 (ρ +1.00"
          in printed)
  assert "copy I_c (no warp)" in printed


def test_a_report_without_shifts_needs_the_workdir_that_holds_its_pairs(tmp_path):
  _report(tmp_path / "old" / "parallel.json", "parallel", [1.0, 2.0, 3.0, 4.0], shift=None)
  with pytest.raises(SystemExit, match="--workdir=None: no records"):
    learning_pose.main([str(tmp_path / "old")])


def test_runs_of_one_training_set_must_have_scored_the_same_pairs(tmp_path):
  for run, shift in (("a", SHIFT), ("b", SHIFT[::-1])):
    for variant in ("parallel", "concat"):
      _report(tmp_path / run / f"{variant}.json", variant, [1.0, 2.0, 3.0, 4.0], shift=shift)
  with pytest.raises(SystemExit, match="other pairs than the other runs on 8 pairs"):
    learning_pose.main([str(tmp_path / "a"), str(tmp_path / "b")])
