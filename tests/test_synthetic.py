"""Tests of the synthetic paired try-on set (data_pipelines/synthetic.py + its renderer)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from data_pipelines import synthetic
from tryon_jax.data import synthetic_garment as sg
from tryon_jax.data import synthetic_render as sr

NUM, RES, SEED = 6, 96, 3
WIDTH, HEIGHT = RES * 3 // 4, RES
# The documented CIHP/LIP ids, written out here (not read from the renderer) so a swapped or
# renumbered label in the renderer fails these tests.
ID = {"background": 0, "hair": 2, "upper_clothes": 5, "pants": 9, "neck": 10, "skirt": 12,
      "face": 13, "left_arm": 14, "right_arm": 15, "left_leg": 16, "right_leg": 17,
      "left_shoe": 18, "right_shoe": 19}
DOCUMENTED_LABELS = set(ID.values())


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("synthetic"))
  result = synthetic.generate(root, NUM, resolution=RES, seed=SEED, split="train")
  return root, result


def _ids():
  return [synthetic.example_id(i) for i in range(NUM)]


def _load_keypoints(path):
  with open(path) as f:
    doc = json.load(f)
  assert doc["version"] == 1.3 and len(doc["people"]) == 1, path
  flat = doc["people"][0]["pose_keypoints_2d"]
  assert len(flat) == 75, path
  return np.asarray(flat, np.float64).reshape(25, 3)


def _within(mask, radius):
  """The pixels within ``radius`` px (a square) of ``mask``."""
  near = np.zeros_like(mask)
  for dy in range(-radius, radius + 1):
    for dx in range(-radius, radius + 1):
      near |= np.roll(mask, (dy, dx), (0, 1))
  return near


def _inside(mask):
  """The pixels of ``mask`` whose four neighbours are in it too."""
  inner = mask.copy()
  for shift in ((1, 0), (-1, 0), (0, 1), (0, -1)):
    inner &= np.roll(mask, shift, (0, 1))
  return inner


def _near(parse, xy, labels, radius):
  x, y = int(round(xy[0])), int(round(xy[1]))
  patch = parse[max(y - radius, 0):y + radius + 1, max(x - radius, 0):x + radius + 1]
  return bool(np.isin(patch, list(labels)).any())


def test_layout_and_counts(tree):
  root, result = tree
  assert result["written"] == NUM and result["skipped"] == 0
  assert sorted(os.listdir(root)) == ["train", "train_pairs.txt", "train_synthetic.json"]
  assert sorted(os.listdir(os.path.join(root, "train"))) == sorted(synthetic.SUBDIRS)
  expected = {
      "image": [f"{i}_00.jpg" for i in _ids()],
      "image-parse-v3": [f"{i}_00.png" for i in _ids()],
      "openpose_json": [f"{i}_00_keypoints.json" for i in _ids()],
      "cloth": [f"{i}_01.jpg" for i in _ids()],
      "cloth-mask": [f"{i}_01.jpg" for i in _ids()],
      "cloth-openpose_json": [f"{i}_01_keypoints.json" for i in _ids()],
  }
  for sub, names in expected.items():
    assert sorted(os.listdir(os.path.join(root, "train", sub))) == names, sub
  with open(os.path.join(root, "train_pairs.txt")) as f:
    assert f.read().splitlines() == [f"{i}_00.jpg {i}_01.jpg" for i in _ids()]
  for i in _ids():
    for sub, name, fmt in [("image", f"{i}_00.jpg", "JPEG"), ("cloth", f"{i}_01.jpg", "JPEG"),
                           ("cloth-mask", f"{i}_01.jpg", "JPEG"),
                           ("image-parse-v3", f"{i}_00.png", "PNG")]:
      with Image.open(os.path.join(root, "train", sub, name)) as img:
        assert img.format == fmt and img.size == (WIDTH, HEIGHT), (sub, name)


def test_parse_labels_are_documented_and_match_renderer(tree):
  root, _ = tree
  for index, i in enumerate(_ids()):
    parse = np.asarray(Image.open(os.path.join(root, "train", "image-parse-v3", f"{i}_00.png")))
    assert parse.shape == (HEIGHT, WIDTH) and parse.dtype == np.uint8
    assert set(np.unique(parse).tolist()) <= DOCUMENTED_LABELS
    assert {0, 5, 13} <= set(np.unique(parse).tolist())  # background, garment, face always seen
    ex = sr.render_example(index, resolution=RES, seed=SEED)
    np.testing.assert_array_equal(parse, ex.person_parse)  # PNG is lossless: ids survive
    assert set(np.unique(ex.cloth_parse).tolist()) <= DOCUMENTED_LABELS


def test_keypoints_lie_on_the_rendered_body(tree):
  root, _ = tree
  wrists_seen = 0
  for index, i in enumerate(_ids()):
    ex = sr.render_example(index, resolution=RES, seed=SEED)
    poses = [(_load_keypoints(os.path.join(root, "train", "openpose_json", f"{i}_00_keypoints.json")),
              ex.person_parse),
             (_load_keypoints(os.path.join(root, "train", "cloth-openpose_json",
                                           f"{i}_01_keypoints.json")), ex.cloth_parse)]
    for kp, parse in poses:
      hidden = kp[:, 2] == 0
      assert np.all(kp[hidden, :2] == 0)  # invisible: x = y = c = 0
      assert np.all((kp[~hidden, 0] <= WIDTH - 1) & (kp[~hidden, 1] <= HEIGHT - 1))
      for j in (sr.NOSE, sr.NECK, sr.RSHO, sr.LSHO, sr.MIDHIP):
        assert kp[j, 2] > 0, (i, j)
      x, y = np.round(kp[sr.NOSE, :2]).astype(int)
      assert parse[y, x] == ID["face"], i
      # The person's left is on the image's right, and wrists sit on their own side's arm.
      assert kp[sr.LSHO, 0] > kp[sr.RSHO, 0]
      for j, arm in [(sr.RWRI, "right_arm"), (sr.LWRI, "left_arm")]:
        if kp[j, 2] > 0:  # an outstretched arm may leave the frame (c = 0 then)
          wrists_seen += 1
          assert _near(parse, kp[j], {ID[arm]}, 1), (i, j)
      assert _near(parse, kp[sr.NECK], {ID["neck"], ID["upper_clothes"]}, 1)
      for j in (sr.RSHO, sr.LSHO):
        assert _near(parse, kp[j], {ID["upper_clothes"]}, 1), (i, j)
      for j, leg in [(sr.RANK, "right_leg"), (sr.LANK, "left_leg")]:
        if kp[j, 2] > 0:
          allowed = {ID[leg], ID["pants"], ID[leg.replace("leg", "shoe")]}
          assert _near(parse, kp[j], allowed, 1), (i, j)
  assert wrists_seen >= NUM * 2  # most wrists are in frame, so the check above really ran


def test_cloth_mask_is_the_upper_clothes_of_pose_a(tree):
  root, _ = tree
  for index, i in enumerate(_ids()):
    ex = sr.render_example(index, resolution=RES, seed=SEED)
    garment = ex.cloth_parse == ID["upper_clothes"]
    np.testing.assert_array_equal(ex.cloth_mask, np.where(garment, 255, 0))
    on_disk = np.asarray(Image.open(os.path.join(root, "train", "cloth-mask", f"{i}_01.jpg")))
    assert on_disk.ndim == 2 and garment.sum() > 100
    assert np.mean((on_disk > 127) != garment) < 0.002  # JPEG may blur only a pixel or two
    cloth = np.asarray(Image.open(os.path.join(root, "train", "cloth", f"{i}_01.jpg")), np.float64)
    error_a = np.abs(cloth - ex.cloth).mean()
    assert error_a < 3.0 and error_a < 0.3 * np.abs(cloth - ex.person).mean()  # pose A, not B


def test_the_two_poses_differ(tree):
  root, _ = tree
  for i in _ids():
    a = _load_keypoints(os.path.join(root, "train", "cloth-openpose_json", f"{i}_01_keypoints.json"))
    b = _load_keypoints(os.path.join(root, "train", "openpose_json", f"{i}_00_keypoints.json"))
    both = (a[:, 2] > 0) & (b[:, 2] > 0)
    assert both.sum() >= 10
    assert np.hypot(*(a[both, :2] - b[both, :2]).T).mean() > 0.03 * HEIGHT, i


def _masked_ncc_max(template, tmask, image, imask, min_overlap=0.5):
  """Max over all integer translations of the NCC over pixels inside both masks (via FFT)."""
  shape = (image.shape[0] + template.shape[0], image.shape[1] + template.shape[1])
  fft = lambda x: np.fft.rfft2(x, shape)
  corr = lambda x, y: np.fft.irfft2(np.conj(fft(x)) * fft(y), shape)
  tm, bm = tmask.astype(np.float64), imask.astype(np.float64)
  t, b = template * tm, image * bm
  n = corr(tm, bm)
  sa, sb, sab = corr(t, bm), corr(tm, b), corr(t, b)
  saa, sbb = corr(t * template, bm), corr(tm, b * image)
  n_safe = np.maximum(n, 1.0)
  cov = sab - sa * sb / n_safe
  var = np.maximum(saa - sa ** 2 / n_safe, 0) * np.maximum(sbb - sb ** 2 / n_safe, 0)
  valid = (n > min_overlap * tm.sum()) & (var > 1e-6 * n_safe ** 2)
  return float(np.where(valid, cov / np.sqrt(np.maximum(var, 1e-12)), -1.0).max())


def _best_similarity_ncc(img_a, mask_a, img_b, mask_b, scales):
  """Best NCC of A's garment crop against B over translations and the given isotropic scales."""
  gray_a, gray_b = img_a.astype(np.float64).mean(-1), img_b.astype(np.float64).mean(-1)
  ys, xs = np.nonzero(mask_a)
  crop = gray_a[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
  crop_mask = mask_a[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
  best = -1.0
  for s in scales:
    size = (max(2, round(crop.shape[1] * s)), max(2, round(crop.shape[0] * s)))
    c = np.asarray(Image.fromarray(crop.astype(np.float32)).resize(size, Image.BILINEAR))
    m = np.asarray(Image.fromarray(crop_mask.astype(np.uint8) * 255).resize(size, Image.NEAREST))
    best = max(best, _masked_ncc_max(c.astype(np.float64), m > 127, gray_b, mask_b))
  return best


def test_garment_texture_is_warped_not_moved():
  scales = (0.85, 0.92, 1.0, 1.08, 1.17)
  scores = []
  for index in range(6):
    ex = sr.render_example(index, resolution=128, seed=SEED)
    mask_a = ex.cloth_parse == ID["upper_clothes"]
    mask_b = ex.person_parse == ID["upper_clothes"]
    # Control: a rigidly shifted copy of pose A scores ~1, so a low score means real warping.
    shifted = np.roll(ex.cloth, (5, -7), (0, 1))
    shifted_mask = np.roll(mask_a, (5, -7), (0, 1))
    assert _best_similarity_ncc(ex.cloth, mask_a, shifted, shifted_mask, (1.0,)) > 0.99
    scores.append(_best_similarity_ncc(ex.cloth, mask_a, ex.person, mask_b, scales))
  assert max(scores) < 0.85, scores


def test_pattern_scale_coarsens_the_pattern_and_changes_nothing_else():
  scale = 3.0
  checked = 0
  for index in range(12):
    g1 = sg.sample_garment(np.random.default_rng(index), texels_per_unit=200.0)
    g3 = sg.sample_garment(np.random.default_rng(index), texels_per_unit=200.0,
                           pattern_scale=scale)
    assert g3.period == pytest.approx(scale * g1.period)
    if g1.tile is not None:  # an all-over print: its tile covers 3x the cloth
      assert g3.tile_units == pytest.approx(scale * g1.tile_units)
    assert (g3.kind, g3.decal_size, g3.hem) == (g1.kind, g1.decal_size, g1.hem)
    if g1.tile is None:  # procedural patterns: the scaled garment at scaled coordinates is g1
      x, y = np.meshgrid(np.linspace(-0.2, 0.2, 41), np.linspace(0, 0.3, 31))
      np.testing.assert_allclose(g3.colour(scale * x, scale * y, scale * 0.004),
                                 g1.colour(x, y, 0.004), atol=1e-5)
      checked += 1
  assert checked >= 4
  one = sr.render_example(2, resolution=RES, seed=SEED)
  assert (sr.render_example(2, resolution=RES, seed=SEED, pattern_scale=1.0).person
          == one.person).all()
  coarse = sr.render_example(2, resolution=RES, seed=SEED, pattern_scale=scale)
  np.testing.assert_array_equal(coarse.person_parse, one.person_parse)
  np.testing.assert_array_equal(coarse.cloth_keypoints, one.cloth_keypoints)
  assert coarse.meta["pattern_period_px"] == pytest.approx(scale * one.meta["pattern_period_px"])
  garment = one.person_parse == ID["upper_clothes"]
  near = garment | np.roll(garment, 1, 0) | np.roll(garment, -1, 0) | np.roll(garment, 1, 1) | \
      np.roll(garment, -1, 1)  # anti-aliased garment edges blend into their neighbours
  changed = (coarse.person != one.person).any(-1)
  assert changed[garment].mean() > 0.3 and not changed[~near].any()
  with pytest.raises(ValueError, match="pattern_scale"):
    sg.sample_garment(np.random.default_rng(0), 200.0, pattern_scale=-1.0)


def test_flat_twin_is_the_same_example_without_the_pattern():
  changed_examples = 0
  for index in range(6):
    ex = sr.render_example(index, resolution=RES, seed=SEED)
    twin = sr.render_example(index, resolution=RES, seed=SEED, flat_garment=True)
    assert twin.meta["pattern"] == ex.meta["pattern"]  # the same draws, the pattern left out
    for name in ("person_parse", "person_keypoints", "cloth_keypoints", "cloth_mask"):
      np.testing.assert_array_equal(getattr(twin, name), getattr(ex, name), err_msg=name)
    assert twin.person.shape == ex.person.shape == (HEIGHT, WIDTH, 3)
    garment = ex.person_parse == ID["upper_clothes"]
    near = _within(garment, 2)  # the renderer's anti-aliased edges
    changed = (twin.person != ex.person).any(-1)
    assert not changed[~near].any(), index  # every other pixel is the same
    if changed[garment].mean() > 0.2:  # a patterned garment: only the shading is left in the twin
      assert twin.person[garment].astype(float).var(0).sum() < \
          ex.person[garment].astype(float).var(0).sum(), index
      changed_examples += 1
  assert changed_examples >= 4
  g = sg.sample_garment(np.random.default_rng(5), 200.0)
  flat = sg.sample_garment(np.random.default_rng(5), 200.0, flat=True)
  assert flat.tile is None and flat.decal is None and (flat.colours == g.colours[0]).all()
  x, y = np.meshgrid(np.linspace(-0.2, 0.2, 21), np.linspace(0, 0.3, 21))
  np.testing.assert_allclose(flat.colour(x, y, 0.004),
                             np.broadcast_to(g.colours[0], x.shape + (3,)), atol=1e-6)


def test_same_pose_control_keeps_the_person_and_shows_the_cloth_in_its_pose():
  for index in range(4):
    ex = sr.render_example(index, resolution=RES, seed=SEED)
    control = sr.render_example(index, resolution=RES, seed=SEED, same_pose=True)
    for name in ("person", "person_parse", "person_keypoints"):  # the same draws: same target
      np.testing.assert_array_equal(getattr(control, name), getattr(ex, name), err_msg=name)
    assert np.abs(ex.cloth_keypoints - ex.person_keypoints)[:, :2].max() > 1.0  # two poses ...
    np.testing.assert_array_equal(control.cloth_keypoints, control.person_keypoints)  # ... one
    np.testing.assert_array_equal(control.cloth_parse, control.person_parse)
    garment = control.person_parse == ID["upper_clothes"]
    np.testing.assert_array_equal(control.cloth_mask, np.where(garment, 255, 0))
    inner = _inside(garment)  # away from anti-aliased edges, where the backgrounds may differ
    assert inner.sum() > 50
    assert (control.cloth != control.person).any(-1)[inner].mean() < 0.01, index
    assert (ex.cloth != ex.person).any(-1)[inner].mean() > 0.2, index  # moved: other pixels
    assert control.meta["same_pose"] and not ex.meta["same_pose"]


def test_noise_garments_replace_only_the_pattern_and_follow_the_cloth():
  for index in range(4):
    ex = sr.render_example(index, resolution=RES, seed=SEED, same_pose=True)
    noisy = sr.render_example(index, resolution=RES, seed=SEED, same_pose=True,
                              noise_garments=1.0)
    none = sr.render_example(index, resolution=RES, seed=SEED, same_pose=True,
                             noise_garments=0.0)
    np.testing.assert_array_equal(none.person, ex.person)  # share 0: the set as it was
    np.testing.assert_array_equal(none.cloth, ex.cloth)
    assert noisy.meta["pattern"] == "noise"
    for name in ("person_parse", "person_keypoints", "cloth_keypoints", "cloth_mask"):
      np.testing.assert_array_equal(getattr(noisy, name), getattr(ex, name), err_msg=name)
    garment = ex.person_parse == ID["upper_clothes"]
    near = _within(garment, 2)  # the renderer's anti-aliased edges
    changed = (noisy.person != ex.person).any(-1)
    assert not changed[~near].any() and changed[garment].mean() > 0.5, index
    inner = _inside(garment)  # the same noise on the cloth image: it follows the cloth
    assert (noisy.cloth != noisy.person).any(-1)[inner].mean() < 0.01, index
    flat = sr.render_example(index, resolution=RES, seed=SEED, flat_garment=True)
    flat_noisy = sr.render_example(index, resolution=RES, seed=SEED, flat_garment=True,
                                   noise_garments=1.0)
    np.testing.assert_array_equal(flat_noisy.person, flat.person)  # the flat twin stays flat
  shares = [sr.render_example(i, resolution=32, seed=SEED, noise_garments=0.3).meta["pattern"]
            == "noise" for i in range(100)]
  assert 0.18 < np.mean(shares) < 0.42
  assert shares == [sr.wears_noise_garment(i, seed=SEED, noise_garments=0.3) for i in range(100)]
  with pytest.raises(ValueError, match="noise_garments must be in \\[0, 1\\], got 1.5"):
    sr.render_example(0, resolution=RES, noise_garments=1.5)


def test_a_noise_garment_is_independent_from_cell_to_cell_and_smooth_within_one():
  g = sg.sample_garment(np.random.default_rng(1), 200.0)
  scale = 2.0
  noisy = sg.noise_garment(g, np.random.default_rng(7), pattern_scale=scale)
  assert noisy.decal is None and noisy.kind == "noise"
  assert (noisy.long_sleeves, noisy.hem, noisy.looseness) == (g.long_sleeves, g.hem, g.looseness)
  cell = sg.NOISE_CELL_UNITS * scale
  rng = np.random.default_rng(0)
  x, y = rng.uniform(-1, 1, 4000), rng.uniform(0, 1, 4000)

  def corr(dx):
    a, b = noisy.colour(x, y, 0.001), noisy.colour(x + dx, y, 0.001)
    return np.corrcoef(a.ravel(), b.ravel())[0, 1]

  assert corr(0.1 * cell) > 0.9  # bilinear within a cell
  assert abs(corr(3 * cell)) < 0.1  # cells apart: independent draws
  colours = noisy.colour(x, y, 0.001)
  assert 0.0 <= colours.min() and colours.max() <= 1.0 and abs(colours.mean() - 0.5) < 0.05
  other = sg.noise_garment(g, np.random.default_rng(8), pattern_scale=scale)
  assert not np.allclose(other.colour(x, y, 0.001), colours)  # another draw, another noise
  with pytest.raises(ValueError, match="pattern_scale"):
    sg.noise_garment(g, np.random.default_rng(7), pattern_scale=0.0)


def test_deterministic_per_seed_and_independent_per_example(tree, tmp_path):
  root, _ = tree
  again = str(tmp_path / "again")
  synthetic.generate(again, 2, resolution=RES, seed=SEED)
  other = str(tmp_path / "other")
  synthetic.generate(other, 2, resolution=RES, seed=SEED + 1)
  for index in range(2):
    for sub, path in synthetic.example_paths(root, "train", index).items():
      same = synthetic.example_paths(again, "train", index)[sub]
      diff = synthetic.example_paths(other, "train", index)[sub]
      with open(path, "rb") as f, open(same, "rb") as g, open(diff, "rb") as h:
        data = f.read()
        assert data == g.read(), sub  # same seed: identical bytes (even with fewer examples)
        if sub in ("image", "cloth"):
          assert data != h.read(), sub  # another seed: another person


def test_resume_rewrites_only_missing_examples_and_refuses_other_settings(tree, tmp_path):
  root, _ = tree
  out = str(tmp_path / "resume")
  synthetic.generate(out, 3, resolution=RES, seed=SEED)
  victim = synthetic.example_paths(out, "train", 1)["cloth"]
  os.remove(victim)
  result = synthetic.generate(out, 3, resolution=RES, seed=SEED)
  assert result["written"] == 1 and result["skipped"] == 2
  with open(victim, "rb") as f, open(synthetic.example_paths(root, "train", 1)["cloth"], "rb") as g:
    assert f.read() == g.read()
  with pytest.raises(ValueError, match="train_synthetic.json"):
    synthetic.generate(out, 3, resolution=RES, seed=SEED + 1)
  with pytest.raises(ValueError, match="pattern_scale=1.0 differs from requested 2.0"):
    synthetic.generate(out, 3, resolution=RES, seed=SEED, pattern_scale=2.0)
  with pytest.raises(ValueError, match="flat_garments=False differs from requested True"):
    synthetic.generate(out, 3, resolution=RES, seed=SEED, flat_garments=True)
  with pytest.raises(ValueError, match="same_pose=False differs from requested True"):
    synthetic.generate(out, 3, resolution=RES, seed=SEED, same_pose=True)
  with pytest.raises(ValueError, match="noise_garments=0.0 differs from requested 0.5"):
    synthetic.generate(out, 3, resolution=RES, seed=SEED, noise_garments=0.5)
  settings = os.path.join(out, "train_synthetic.json")
  with open(settings) as f:
    old = {k: v for k, v in json.load(f).items()
           if k not in ("pattern_scale", "flat_garments", "same_pose", "noise_garments")}
  with open(settings, "w") as f:
    json.dump(old, f)  # made before the settings: resumes as scale 1, patterned, two poses
  assert synthetic.generate(out, 3, resolution=RES, seed=SEED)["written"] == 0
  assert not [n for d, _, files in os.walk(out) for n in files if ".tmp" in n]


@pytest.mark.parametrize("kwargs, message", [
    ({"num": 0}, "num"), ({"num": 1, "resolution": 30}, "resolution"),
    ({"num": 1, "seed": -1}, "seed"), ({"num": 1, "split": "a/b"}, "split"),
    ({"num": 1, "pattern_scale": 0.0}, "pattern_scale"),
    ({"num": 1, "noise_garments": -0.5}, "noise_garments")])
def test_bad_input_is_refused_before_writing(tmp_path, kwargs, message):
  out = str(tmp_path / "bad")
  with pytest.raises(ValueError, match=message):
    synthetic.generate(out, **kwargs)
  assert not os.path.exists(out)


def test_cli_writes_the_tree(tmp_path):
  out = str(tmp_path / "cli")
  proc = subprocess.run(
      [sys.executable, "-m", "data_pipelines.synthetic", "--out", out, "--num", "2",
       "--resolution", "64", "--split", "test", "--noise_garments", "0.5"],
      capture_output=True, text=True, cwd=os.path.dirname(os.path.dirname(__file__)), check=False)
  assert proc.returncode == 0, proc.stderr
  assert synthetic.read_settings(out, "test")["noise_garments"] == 0.5
  assert sorted(os.listdir(os.path.join(out, "test", "image"))) == ["000000_00.jpg", "000001_00.jpg"]
  with Image.open(os.path.join(out, "test", "cloth", "000001_01.jpg")) as img:
    assert img.size == (48, 64)
  bad = subprocess.run([sys.executable, "-m", "data_pipelines.synthetic", "--out", out, "--num", "0"],
                       capture_output=True, text=True,
                       cwd=os.path.dirname(os.path.dirname(__file__)), check=False)
  assert bad.returncode == 2 and "num" in bad.stderr
