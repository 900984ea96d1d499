"""Converters and preprocessing on tiny drawn fixtures (64 x 48 people), broken entries included."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from data_pipelines import _convert
from data_pipelines import dresscode
from data_pipelines import manifest
from data_pipelines import viton_hd
from tryon_jax.data import labels
from tryon_jax.data import preprocess
from tryon_jax.data import schema
from tryon_jax.data import tfrecord

H, W = 64, 48
RES = 32
GARMENT_RGB = (220, 20, 20)
BACKGROUND_RGB = (250, 250, 250)
FILL = 0
# COCO-18 keypoints of the drawn person (pixels): arms hang down at the sides.
COCO = np.array([
    [24, 8],   # nose
    [24, 15],  # neck
    [15, 16], [10, 27], [8, 38],   # right shoulder, elbow, wrist (image left)
    [33, 16], [38, 27], [40, 38],  # left shoulder, elbow, wrist
    [19, 36], [19, 47], [19, 58],  # right hip, knee, ankle
    [29, 36], [29, 47], [29, 58],  # left hip, knee, ankle
    [22, 6], [26, 6], [20, 7], [28, 7]], np.float32)


def draw_person(parse_ids: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
  """Parse map [H, W] with ids from `parse_ids` (role -> id) and a photo coloured per role."""
  parse = np.zeros((H, W), np.int32)
  rgb = np.full((H, W, 3), BACKGROUND_RGB, np.uint8)
  roles = [  # (role, y0, y1, x0, x1, colour): later rows paint over earlier ones
      ("hair", 1, 6, 18, 30, (40, 30, 20)),
      ("face", 4, 14, 19, 29, (230, 180, 150)),
      ("right_arm", 15, 42, 6, 14, (200, 160, 130)),
      ("left_arm", 15, 42, 34, 42, (200, 160, 130)),
      ("garment", 14, 37, 14, 34, GARMENT_RGB),
      ("pants", 36, 56, 16, 32, (30, 40, 160)),
      ("right_shoe", 56, 62, 15, 23, (20, 20, 20)),
      ("left_shoe", 56, 62, 25, 33, (20, 20, 20)),
  ]
  for role, y0, y1, x0, x1, colour in roles:
    parse[y0:y1, x0:x1] = parse_ids[role]
    rgb[y0:y1, x0:x1] = colour
  # Sleeves: the garment covers the upper arms.
  for x0, x1 in ((6, 14), (34, 42)):
    parse[15:24, x0:x1] = parse_ids["garment"]
    rgb[15:24, x0:x1] = GARMENT_RGB
  return rgb, parse


VITON_IDS = {"hair": 2, "face": 13, "right_arm": 15, "left_arm": 14, "garment": 5, "pants": 9,
             "right_shoe": 19, "left_shoe": 18}
ATR_IDS = {"hair": 2, "face": 11, "right_arm": 15, "left_arm": 14, "garment": 4, "pants": 6,
           "right_shoe": 10, "left_shoe": 9}


def body25_json(coco: np.ndarray) -> dict:
  body = np.zeros((25, 3))
  for c, b in enumerate(labels.BODY25_TO_COCO18):
    body[b] = [coco[c, 0], coco[c, 1], 0.9]
  return {"version": 1.3, "people": [{"pose_keypoints_2d": body.reshape(-1).tolist()}]}


def garment_image() -> tuple[np.ndarray, np.ndarray]:
  img = np.full((H, W, 3), BACKGROUND_RGB, np.uint8)
  mask = np.zeros((H, W), np.uint8)
  img[12:50, 8:40] = GARMENT_RGB
  mask[12:50, 8:40] = 255
  return img, mask


def save(path: str, array: np.ndarray, **kw) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(array).save(path, **kw)


def write_json(path: str, obj) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    json.dump(obj, f)


def build_viton_tree(root: str, split: str = "train") -> dict[str, str]:
  """Good pairs p0, p1, p2 (p2's cloth has a pose), plus one broken pair per failure kind."""
  d = os.path.join(root, split)
  rgb, parse = draw_person(VITON_IDS)
  cloth, cmask = garment_image()
  names = ["p0", "p1", "p2", "missing_img", "trunc", "badjson", "wrongsize", "noperson"]
  for n in names:
    save(f"{d}/image/{n}.jpg", rgb, quality=95)
    save(f"{d}/image-parse-v3/{n}.png", parse.astype(np.uint8))
    write_json(f"{d}/openpose_json/{n}_keypoints.json", body25_json(COCO))
    save(f"{d}/cloth/c_{n}.jpg", cloth, quality=95)
    save(f"{d}/cloth-mask/c_{n}.jpg", cmask, quality=95)
  write_json(f"{d}/cloth-openpose_json/c_p2_keypoints.json", body25_json(COCO))
  os.remove(f"{d}/image/missing_img.jpg")
  data = open(f"{d}/image/trunc.jpg", "rb").read()
  open(f"{d}/image/trunc.jpg", "wb").write(data[: len(data) // 2])
  open(f"{d}/openpose_json/badjson_keypoints.json", "w").write('{"people": [')
  save(f"{d}/image-parse-v3/wrongsize.png", np.zeros((H // 2, W // 2), np.uint8))
  write_json(f"{d}/openpose_json/noperson_keypoints.json", {"people": []})
  with open(os.path.join(root, f"{split}_pairs.txt"), "w") as f:
    for n in names:
      f.write(f"{n}.jpg c_{n}.jpg\n")
    f.write("only_one_token.jpg\n")
  return {"missing_img": "missing person image", "trunc": "unreadable person image",
          "badjson": "malformed keypoint JSON", "wrongsize": "parse map is 24x32",
          "noperson": "no person detected", "train_pairs.txt:9": "want 'person cloth'"}


def opts(**kw) -> preprocess.PreprocessOptions:
  return _convert.make_options(**{"resolution": RES, "image_format": "png", **kw})


def read_all(out_dir: str) -> list[schema.TryOnRecord]:
  recs = []
  for name in sorted(os.listdir(out_dir)):
    if name.endswith(".tfrecord"):
      recs += [schema.deserialize(raw) for _, raw in tfrecord.read_tfrecord(f"{out_dir}/{name}")]
  return recs


def check_skips(summary: dict, expected: dict[str, str]) -> None:
  assert summary["skipped"] == len(expected), summary["skipped_items"]
  for key, reason in expected.items():
    hits = [s for s in summary["skipped_items"] if key in s["id"]]
    assert len(hits) == 1, (key, summary["skipped_items"])
    assert reason in hits[0]["reason"], (key, hits[0]["reason"])


# ---------------------------------------------------------------- VITON-HD
@pytest.fixture(scope="module")
def viton(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("viton"))
  expected = build_viton_tree(root)
  out = os.path.join(root, "records")
  summary = viton_hd.convert(root, "train", out, resolution=RES, num_shards=2,
                             image_format="png", progress=False)
  return root, out, summary, expected


def test_viton_summary_counts_and_reasons(viton):
  _, out, summary, expected = viton
  assert summary["written"] == 3
  check_skips(summary, expected)
  on_disk = json.load(open(os.path.join(out, "summary.json")))
  assert on_disk["written"] == 3 and on_disk["skipped"] == len(expected)
  assert sorted(f for f in os.listdir(out) if f.endswith(".tfrecord")) == [
      "train-00000-of-00002.tfrecord", "train-00001-of-00002.tfrecord"]
  assert not [f for f in os.listdir(out) if f.endswith(".tmp")]


def test_viton_records_decode(viton):
  _, out, _, _ = viton
  recs = {r.id: r for r in read_all(out)}
  assert sorted(recs) == ["p0__c_p0", "p1__c_p1", "p2__c_p2"]
  r = recs["p0__c_p0"]
  assert r.person.shape == r.agnostic.shape == r.garment.shape == (RES, RES, 3)
  assert r.person_orig_size == (H, W) and r.label_set == "viton_hd"
  assert r.person_pose_mask.sum() == 18
  assert not r.garment_pose_present and r.garment_pose_mask.sum() == 0
  assert np.all(r.garment_pose == 0)
  assert recs["p2__c_p2"].garment_pose_present and recs["p2__c_p2"].garment_pose_mask.sum() == 18
  # Keypoints are normalized by the square crop around the person.
  x0, y0, side = r.person_crop
  want = (COCO - np.array([x0, y0])) / side
  np.testing.assert_allclose(r.person_pose, want, atol=1e-5)
  assert np.all((r.person_pose >= 0) & (r.person_pose <= 1))
  # I_c: the garment is there, the white backdrop is gone (0).
  red = (r.garment[..., 0] > 150) & (r.garment[..., 1] < 90)
  assert red.sum() > 0.2 * RES * RES
  assert not np.any(np.all(r.garment > 200, axis=-1))


def test_viton_agnostic_has_no_garment_in_record(viton):
  _, out, _, _ = viton
  for r in read_all(out):
    red = (r.agnostic[..., 0] > 120) & (r.agnostic[..., 1] < 90) & (r.agnostic[..., 2] < 90)
    assert red.sum() == 0, r.id
    assert ((r.person[..., 0] > 120) & (r.person[..., 1] < 90)).sum() > 20  # garment was there
    blue = (r.agnostic[..., 2] > 120) & (r.agnostic[..., 0] < 80)
    assert blue.sum() > 10  # pants (lower body) kept


def test_rerun_overwrites_cleanly(viton, tmp_path):
  root, _, _, _ = viton
  out = str(tmp_path / "rerun")
  viton_hd.convert(root, "train", out, resolution=RES, num_shards=3, image_format="png",
                   progress=False)
  s = viton_hd.convert(root, "train", out, resolution=RES, num_shards=1, image_format="png",
                       progress=False)
  files = sorted(f for f in os.listdir(out) if f != "summary.json")
  assert files == ["train-00000-of-00001.tfrecord"], files  # stale 3-shard output removed
  assert s["shards"] == files and len(read_all(out)) == 3


def test_arrayrecord_output(viton, tmp_path):
  from array_record.python.array_record_module import ArrayRecordReader
  root, _, _, _ = viton
  out = str(tmp_path / "ar")
  s = viton_hd.convert(root, "train", out, resolution=RES, num_shards=1, fmt="arrayrecord",
                       image_format="png", progress=False)
  reader = ArrayRecordReader(os.path.join(out, s["shards"][0]))
  assert reader.num_records() == 3
  assert schema.deserialize(reader.read([0])[0]).person.shape == (RES, RES, 3)
  reader.close()


def test_cli_exit_codes(viton, tmp_path):
  root, _, _, _ = viton
  env = {**os.environ, "PYTHONPATH": os.getcwd()}

  def run(data_root, out):
    return subprocess.run(
        [sys.executable, "-m", "data_pipelines.viton_hd", "--root", data_root, "--split", "train",
         "--out", out, "--resolution", str(RES), "--no-progress"],
        capture_output=True, text=True, env=env)

  ok = run(root, str(tmp_path / "cli"))
  assert ok.returncode == 0, ok.stderr
  assert "3 written, 6 skipped" in ok.stdout
  empty = tmp_path / "empty"
  os.makedirs(empty / "train")
  (empty / "train_pairs.txt").write_text("nobody.jpg nothing.jpg\n")
  bad = run(str(empty), str(tmp_path / "cli2"))
  assert bad.returncode == 1 and "0 written, 1 skipped" in bad.stdout, bad.stdout + bad.stderr


# ---------------------------------------------------------------- preprocessing
def test_agnostic_masks_garment_keeps_head_hands_lower_body():
  rgb, parse = draw_person(VITON_IDS)
  o = opts()
  vis = np.ones(18, np.float32)
  ag = preprocess.agnostic_image(rgb, parse, COCO, vis, labels.VITON_HD, o)
  garment = np.isin(parse, list(labels.VITON_HD.garment))
  assert garment.sum() > 100
  assert np.all(ag[garment] == FILL)  # no garment pixel
  for role in ("face", "hair", "pants", "right_shoe"):
    region = parse == VITON_IDS[role]
    np.testing.assert_array_equal(ag[region], rgb[region], err_msg=role)
  # Hands: arm pixels just beyond each wrist are kept; the forearm near the elbow is masked.
  for wrist, elbow in ((labels.R_WRIST, labels.R_ELBOW), (labels.L_WRIST, labels.L_ELBOW)):
    (wx, wy), (ex, ey) = COCO[wrist].astype(int), COCO[elbow].astype(int)
    assert parse[wy + 2, wx] in labels.VITON_HD.right_arm | labels.VITON_HD.left_arm
    np.testing.assert_array_equal(ag[wy + 2, wx], rgb[wy + 2, wx])
    assert np.all(ag[ey + 2, ex] == FILL)
  # The person box is masked, the backdrop outside it is untouched.
  assert np.all(ag[:, :4] == BACKGROUND_RGB) and np.all(ag[:, -4:] == BACKGROUND_RGB)
  # A missing wrist pastes no hand on that side.
  vis2 = vis.copy()
  vis2[labels.L_WRIST] = 0
  ag2 = preprocess.agnostic_image(rgb, parse, COCO, vis2, labels.VITON_HD, o)
  wx, wy = COCO[labels.L_WRIST].astype(int)
  assert np.all(ag2[wy + 2, wx] == FILL)
  # The fill value is a flag.
  ag3 = preprocess.agnostic_image(rgb, parse, COCO, vis, labels.VITON_HD, opts(agnostic_fill=128))
  assert np.all(ag3[garment] == 128)


def test_keypoint_normalization_and_flip():
  kps = np.array([[10.0, 20.0]] * 18, np.float32)
  kps[labels.R_WRIST] = [5.0, 30.0]
  kps[labels.L_WRIST] = [25.0, 30.0]
  mask = np.ones(18, np.float32)
  mask[0] = 0
  norm, m = preprocess.normalize_keypoints(kps, mask, (-10, 0, 40))
  np.testing.assert_allclose(norm[labels.R_WRIST], [15 / 40, 30 / 40])
  assert m[0] == 0 and np.all(norm[0] == 0)
  # A point outside the crop becomes missing instead of leaving [0, 1].
  kps[1] = [100.0, 5.0]
  norm, m = preprocess.normalize_keypoints(kps, mask, (-10, 0, 40))
  assert m[1] == 0 and np.all(norm[1] == 0)
  flipped, fm = preprocess.flip_keypoints(norm, m)
  # New right wrist = old left wrist, mirrored.
  np.testing.assert_allclose(flipped[labels.R_WRIST], [1 - norm[labels.L_WRIST, 0],
                                                       norm[labels.L_WRIST, 1]])
  np.testing.assert_allclose(flipped[labels.L_WRIST], [1 - norm[labels.R_WRIST, 0],
                                                       norm[labels.R_WRIST, 1]])
  assert fm[0] == 0 and np.all(flipped[0] == 0)  # missing stays (0, 0), not (1, 0)
  back, bm = preprocess.flip_keypoints(flipped, fm)
  np.testing.assert_allclose(back, norm, atol=1e-6)
  np.testing.assert_array_equal(bm, m)


def test_body25_mapping_and_confidence():
  obj = body25_json(COCO)
  flat = obj["people"][0]["pose_keypoints_2d"]
  flat[4 * 3 + 2] = 0.01  # BODY_25 right wrist below the confidence threshold
  flat[8 * 3:8 * 3 + 3] = [99, 99, 1.0]  # mid-hip: dropped by the COCO-18 mapping
  kps, mask = preprocess.keypoints_from_openpose(obj, 0.05)
  assert kps.shape == (18, 2) and mask[labels.R_WRIST] == 0
  np.testing.assert_allclose(kps[8], COCO[8])  # COCO r_hip = BODY_25 9
  with pytest.raises(preprocess.InputError, match="no person"):
    preprocess.keypoints_from_openpose({"people": []}, 0.05)
  with pytest.raises(preprocess.InputError, match="75 or 54"):
    preprocess.keypoints_from_openpose({"people": [{"pose_keypoints_2d": [1, 2]}]}, 0.05)


# ---------------------------------------------------------------- DressCode
def build_dresscode_tree(root: str) -> dict[str, str]:
  cat = os.path.join(root, "upper_body")
  rgb, parse = draw_person(ATR_IDS)
  cloth, _ = garment_image()
  names = ["000000", "000001", "000002", "000003", "000004"]
  for n in names:
    save(f"{cat}/images/{n}_0.jpg", rgb, quality=95)
    save(f"{cat}/images/{n}_1.jpg", cloth, quality=95)
    # Label maps at half size (same aspect): resized, not skipped.
    save(f"{cat}/label_maps/{n}_4.png",
         np.asarray(Image.fromarray(parse.astype(np.uint8)).resize((W // 2, H // 2), 0)))
    kp = [[float(x) * 384 / W, float(y) * 512 / H, 0.9, i] for i, (x, y) in enumerate(COCO)]
    write_json(f"{cat}/keypoints/{n}_2.json", {"keypoints": kp})
  os.remove(f"{cat}/images/000001_1.jpg")  # missing garment
  open(f"{cat}/keypoints/000002_2.json", "w").write("not json")
  save(f"{cat}/label_maps/000003_4.png", np.zeros((10, 30), np.uint8))  # wrong aspect
  write_json(f"{cat}/keypoints/000004_2.json", {"keypoints": [[0, 0, 0, i] for i in range(18)]})
  with open(f"{cat}/train_pairs.txt", "w") as f:
    for n in names:
      f.write(f"{n}_0.jpg {n}_1.jpg\n")
  return {"000001": "missing garment image", "000002": "malformed keypoint JSON",
          "000003": "parse map is 30x10", "000004": "no person detected"}


def test_dresscode_converter(tmp_path):
  root = str(tmp_path / "dc")
  expected = build_dresscode_tree(root)
  out = str(tmp_path / "dc_out")
  s = dresscode.convert(root, "train", out, categories=["upper_body"], resolution=RES,
                        num_shards=1, image_format="png", progress=False)
  assert s["written"] == 1
  check_skips(s, expected)
  (r,) = read_all(out)
  assert r.label_set == "dresscode_upper_body" and r.id == "upper_body/000000_0__000000_1"
  x0, y0, side = r.person_crop  # keypoints came in the 384 x 512 frame
  np.testing.assert_allclose(r.person_pose, (COCO - [x0, y0]) / side, atol=1e-4)
  red = (r.agnostic[..., 0] > 120) & (r.agnostic[..., 1] < 90) & (r.agnostic[..., 2] < 90)
  assert red.sum() == 0
  assert not np.any(np.all(r.garment > 200, axis=-1))  # backdrop removed without a mask file


# ---------------------------------------------------------------- manifest
def test_manifest_converter(tmp_path):
  root = tmp_path / "own"
  rgb, parse = draw_person(VITON_IDS)
  cloth, cmask = garment_image()
  save(str(root / "img/p.png"), rgb)
  save(str(root / "parse/p.png"), parse.astype(np.uint8))
  write_json(str(root / "pose/p.json"), body25_json(COCO))
  save(str(root / "img/g.png"), rgb)  # a worn garment: its parse gives the mask
  save(str(root / "parse/g.png"), parse.astype(np.uint8))
  save(str(root / "mask/c.png"), cmask)
  save(str(root / "img/c.png"), cloth)
  kp = {"keypoints": [[float(x), float(y), 1.0] for x, y in COCO]}
  write_json(str(root / "pose/g.json"), kp)
  base = {"person_image": "img/p.png", "person_parse": "parse/p.png",
          "person_keypoints": "pose/p.json", "label_set": "viton_hd"}
  lines = [
      {**base, "id": "worn", "garment_image": "img/g.png", "garment_parse": "parse/g.png",
       "garment_keypoints": "pose/g.json"},
      {**base, "id": "flat", "garment_image": "img/c.png", "garment_mask": "mask/c.png"},
      {**base, "id": "nomask", "garment_image": "img/c.png"},
      {**base, "id": "badset", "garment_image": "img/c.png", "garment_mask": "mask/c.png",
       "label_set": "nope"},
      {**base, "id": "gone", "garment_image": "img/zzz.png", "garment_mask": "mask/c.png"},
  ]
  text = "\n".join(json.dumps(x) for x in lines) + "\n{broken\n"
  (root / "pairs.jsonl").write_text(text)
  out = str(tmp_path / "own_out")
  s = manifest.convert(str(root / "pairs.jsonl"), out, resolution=RES, num_shards=1,
                       image_format="png", progress=False)
  assert s["written"] == 2
  check_skips(s, {"nomask": "garment_mask|garment_parse", "badset": "unknown label_set",
                  "gone": "missing garment image", "pairs.jsonl:6": "malformed JSON"})
  recs = {r.id: r for r in read_all(out)}
  assert recs["worn"].garment_pose_present and not recs["flat"].garment_pose_present
  # I_c of the worn garment = only the garment labels of its parse.
  g = recs["worn"].garment.astype(int)
  assert ((g[..., 0] > 150) & (g[..., 1] < 90)).sum() > 50
  blue_or_skin = ((g[..., 2] > 120) & (g[..., 0] < 80)) | ((g[..., 1] > 140) & (g[..., 0] > 180))
  assert blue_or_skin.sum() == 0  # pants and face of the garment photo are gone


# ---------------------------------------------------------------- inspect
def test_inspect_prints_and_draws(viton, tmp_path, capsys):
  from data_pipelines import inspect
  _, out, _, _ = viton
  sheet = str(tmp_path / "sheet.png")
  assert inspect.main(["--records", f"{out}/*.tfrecord", "--contact-sheet", sheet, "--num", "2"]) == 0
  text = capsys.readouterr().out
  assert "2 tfrecord file(s), 3 records" in text
  assert "person_pose" in text and "[18, 2]" in text and f"[{RES}, {RES}, 3]" in text
  img = np.asarray(Image.open(sheet))
  assert img.shape == (2 * RES, 3 * RES, 3)
  # Keypoints were drawn: pure red / blue dots exist on the person panel.
  panel = img[:RES, :RES].astype(int)
  assert np.any((panel[..., 0] == 255) & (panel[..., 1] == 0) & (panel[..., 2] == 0))
