"""benchmarks.learning_compare: two learning-study runs, their rows and the change per pair."""

import json

import numpy as np
import pytest

from benchmarks import learning_compare

IDS = ["p0", "p1", "p2", "p3"]


def _report(path, variant, per_pair, pattern, ids=IDS, **extra):
  """A benchmarks.learning report of one variant: every metric scores ``per_pair`` but the
  pattern score, which scores ``pattern``."""
  scores = {m: list(per_pair) for m in learning_compare.METRICS}
  scores["pattern_corr_garment"] = list(pattern)
  run = {"train_steps": 10, "per_example": scores,
         **{m: float(np.mean(v)) for m, v in scores.items()}, **extra}
  path.write_text(json.dumps({"eval_ids": ids, "variants": {variant: run}}))
  return str(path)


def test_rows_and_per_pair_difference(tmp_path, capsys):
  reliance = {"garment_reliance": {"t=0.5": {"reliance_db": 1.5}, "t=0.8": {"reliance_db": 2.25}},
              "own_minus_other_garment": {"pattern_corr_garment": {"mean": 0.1, "sem": 0.02},
                                          "psnr_garment": {"mean": 2.0, "sem": 0.5}}}
  new = _report(tmp_path / "new.json", "parallel", [2.0, 3.0, 4.0, 7.0],
                [0.3, 0.25, 0.1, -0.1], **reliance)
  base = _report(tmp_path / "base.json", "concat", [1.0, 2.0, 3.0, 4.0], [0.0, 0.1, 0.2, 0.21])
  out_json = tmp_path / "cmp.json"
  out = learning_compare.main([new, base, "--base_variant", "concat", "--json", str(out_json)])
  diff = out["new_minus_base"]
  np.testing.assert_allclose([diff["psnr_garment"]["mean"], diff["psnr_garment"]["sem"]],
                             [1.5, np.std([1, 1, 1, 3], ddof=1) / 2])
  np.testing.assert_allclose(diff["pattern_corr_garment"]["mean"], np.mean([0.3, 0.15, -0.1,
                                                                            -0.31]))
  assert out["new"]["pairs_placed"] == 2 and out["base"]["pairs_placed"] == 1
  assert out["new"]["reliance_db_t=0.8"] == 2.25 and "reliance_db_t=0.5" not in out["base"]
  assert json.loads(out_json.read_text())["new_minus_base"] == diff
  printed = capsys.readouterr().out
  assert "| 4.000 | 4.000 | 4.000 | 4.000 | +0.138 (2) | +0.100 ± 0.020 | +2.000 ± 0.500 | " \
         "1.50 / 2.25 |" in printed
  assert "| new − base (per pair) | +1.500 ± 0.500 |" in printed


@pytest.mark.parametrize("change, message", [
    (dict(ids=["p0", "p1", "p2", "p9"]), "scored different pairs"),
    (dict(variant="concat"), "has no parallel run"),
    (dict(missing=True), "not a readable benchmarks.learning report")])
def test_reports_of_other_pairs_or_without_the_variant_are_refused(tmp_path, change, message):
  new = _report(tmp_path / "new.json", "parallel", [1.0] * 4, [0.0] * 4)
  base = _report(tmp_path / "base.json", change.get("variant", "parallel"), [1.0] * 4,
                 [0.0] * 4, ids=change.get("ids", IDS))
  if change.get("missing"):
    base = str(tmp_path / "no_such_report.json")
  with pytest.raises(SystemExit, match=message):
    learning_compare.main([new, base])
