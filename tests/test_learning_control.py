"""benchmarks.learning_control: what the pose change costs each variant, over the same pairs."""

import json

import numpy as np
import pytest

from benchmarks import learning_control

IDS = ["p0", "p1", "p2", "p3"]


def _report(path, variant, per_pair, same_pose, ids=IDS):
  """A benchmarks.learning report of one variant whose metrics all score ``per_pair``."""
  scores = {m: list(per_pair) for m in learning_control.METRICS}
  run = {"train_steps": 10, "per_example": scores, **{m: float(np.mean(per_pair)) for m in scores}}
  report = {"eval_ids": ids, "variants": {variant: run}}
  if same_pose is not None:  # reports from before the flag have no key: the usual set
    report["same_pose"] = same_pose
  path.write_text(json.dumps(report))
  return str(path)


def test_the_pose_change_is_scored_per_pair_and_the_variants_compared(tmp_path, capsys):
  paths = [_report(tmp_path / "p.json", "parallel", [1.0, 2.0, 3.0, 4.0], None),
           _report(tmp_path / "c.json", "concat", [0.0, 0.0, 0.0, 0.0], False),
           _report(tmp_path / "ps.json", "parallel", [2.0, 3.0, 4.0, 5.0], True),  # 1 above
           _report(tmp_path / "cs.json", "concat", [2.0, 4.0, 2.0, 4.0], True)]  # 3 above, +-1
  out = learning_control.main(paths)
  for metric in learning_control.METRICS:
    assert out["parallel_pose_change_minus_same_pose"][metric] == {"mean": -1.0, "sem": 0.0}
    concat = out["concat_pose_change_minus_same_pose"][metric]
    np.testing.assert_allclose([concat["mean"], concat["sem"]], [-3.0, np.std([1, -1] * 2,
                                                                               ddof=1) / 2])
    np.testing.assert_allclose(out["parallel_minus_concat"][metric]["mean"], 2.0)
  printed = capsys.readouterr().out
  assert "| concat, same pose (10 steps) | 3.000 |" in printed
  assert "| parallel's − concat's | +2.000 ± 0.577 |" in printed


@pytest.mark.parametrize("change, message", [
    ({2: dict(ids=["p0", "p1", "p2", "p9"])}, "scored different pairs"),
    ({1: dict(same_pose=True)}, "expected two usual reports"),
    ({3: dict(variant="parallel")}, "has no concat run")])
def test_reports_of_other_pairs_sets_or_variants_are_refused(tmp_path, change, message):
  specs = [dict(variant=v, same_pose=s) for s in (False, True) for v in ("parallel", "concat")]
  paths = []
  for i, spec in enumerate(specs):
    spec.update(change.get(i, {}))
    paths.append(_report(tmp_path / f"{i}.json", spec["variant"], [1.0, 2.0], spec["same_pose"],
                         ids=spec.get("ids", IDS)))
  with pytest.raises(SystemExit, match=message):
    learning_control.main(paths)
