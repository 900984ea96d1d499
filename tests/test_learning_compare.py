"""benchmarks.learning_compare: two learning-study runs, their rows and the change per pair."""

import json

import numpy as np
import pytest

from benchmarks import learning_compare

IDS = ["p0", "p1", "p2", "p3"]


def _report(path, variant, per_pair, pattern, ids=IDS, other=None, noise=None, **extra):
  """A benchmarks.learning report of one variant: every metric scores ``per_pair`` but the
  pattern score, which scores ``pattern``; with another pair's garment it scores ``other``."""
  scores = {m: list(per_pair) for m in learning_compare.METRICS}
  scores["pattern_corr_garment"] = list(pattern)
  run = {"train_steps": 10, "per_example": scores,
         **{m: float(np.mean(v)) for m, v in scores.items()}, **extra}
  if other is not None:
    run["other_garment"] = {"per_example": {m: list(other) for m in scores}}
  report = {"eval_ids": ids, "variants": {variant: run}}
  if noise is not None:
    report["eval_noise_garment"] = noise
  path.write_text(json.dumps(report))
  return str(path)


def test_rows_and_per_pair_difference(tmp_path, capsys):
  reliance = {"garment_reliance": {"t=0.5": {"reliance_db": 1.5}, "t=0.8": {"reliance_db": 2.25}}}
  new = _report(tmp_path / "new.json", "parallel", [2.0, 3.0, 4.0, 7.0],
                [0.3, 0.25, 0.1, -0.1], other=[0.0, 0.1, 0.1, 0.0], **reliance)
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
  # own - other per pair: pattern [0.3, 0.15, 0.0, -0.1], PSNR [2, 2.9, 3.9, 7].
  assert "| 4.000 | 4.000 | 4.000 | 4.000 | +0.138 (2) | +0.087 ± 0.087 | +3.950 ± 1.088 | " \
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


def test_pairs_are_chosen_by_whether_they_wear_noise(tmp_path, capsys):
  noise = [True, False, True, False]
  new = _report(tmp_path / "new.json", "parallel", [2.0, 3.0, 4.0, 7.0], [0.5, 0.0, 0.3, 0.1],
                other=[0.1] * 4, noise=noise,
                garment_reliance={"t=0.5": {"reliance_db": 1.5}})
  base = _report(tmp_path / "base.json", "parallel", [1.0] * 4, [0.0] * 4)
  out = learning_compare.main([new, base, "--pairs", "noise"])
  assert out["new"]["pairs"] == 2 and out["new"]["pattern_corr_garment"] == 0.4
  assert out["new"]["own_minus_other_pattern_corr_garment"]["mean"] == pytest.approx(0.3)
  assert "reliance_db_t=0.5" not in out["new"]  # measured over all the pairs at once
  assert out["new_minus_base"]["psnr_garment"]["mean"] == 2.0  # pairs 0 and 2: 1 and 3
  images = learning_compare.main([new, base, "--pairs", "images"])
  assert images["new"]["pattern_corr_garment"] == pytest.approx(0.05)
  assert "2 noise pairs" in capsys.readouterr().out
  with pytest.raises(SystemExit, match="records no eval_noise_garment"):
    learning_compare.main([base, base, "--pairs", "images"])
