"""Grain pipeline over tiny hand-made records: batch contract, flip, crops, host sharding, exact
resume (get_state/set_state and Orbax), eval padding, corrupt records named by file and offset."""

import os

import grain
import numpy as np
import pytest

from configs import base128
from configs import sr1024
from tryon_jax.data import labels
from tryon_jax.data import pipeline
from tryon_jax.data import schema
from tryon_jax.data import tfrecord

N, STORED, RES, BATCH = 12, 16, 8, 4


def make_record(i: int) -> schema.TryOnRecord:
  """Record i: person image value i*10 on the left half, 255 on the right (flip-visible)."""
  person = np.full((STORED, STORED, 3), 255, np.uint8)
  person[:, : STORED // 2] = i * 10
  pose = np.zeros((18, 2), np.float32)
  pose[:, 0] = np.linspace(0.1, 0.4, 18)  # all on the image's left: mirrored x lands > 0.5
  pose[:, 1] = i / 100.0
  mask = np.ones(18, np.float32)
  mask[0] = 0
  pose[0] = 0
  return schema.TryOnRecord(
      id=f"r{i:02d}", person_id=f"p{i}", garment_id=f"g{i}", source="test", label_set="viton_hd",
      person=person, agnostic=person // 2, garment=np.full_like(person, 7), person_pose=pose,
      person_pose_mask=mask, garment_pose=np.zeros((18, 2), np.float32),
      garment_pose_mask=np.zeros(18, np.float32), garment_pose_present=False,
      person_orig_size=(32, 24), garment_orig_size=(32, 24), person_crop=(0, 0, 32),
      garment_crop=(0, 0, 32))


def record_index(image: np.ndarray) -> int:
  """Recovers i from a (possibly flipped) float person image [R, R, 3]."""
  u8 = np.round((image + 1.0) * 127.5)
  return int(round(min(u8[0, 0, 0], u8[0, -1, 0]) / 10))


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
  d = tmp_path_factory.mktemp("records")
  raws = [schema.serialize(make_record(i), fmt="png") for i in range(N)]
  for s in range(3):  # 3 files of 4 records
    tfrecord.write_tfrecord(str(d / f"train-{s:05d}-of-00003.tfrecord"), raws[s * 4:(s + 1) * 4])
  from array_record.python.array_record_module import ArrayRecordWriter
  for s in range(2):
    w = ArrayRecordWriter(str(d / f"train-{s:05d}-of-00002.array_record"), "group_size:1")
    for raw in raws[s * 6:(s + 1) * 6]:
      w.write(raw)
    w.close()
  return str(d)


def config(path: str, stage: str = "base128", **data):
  c = sr1024.get_config() if stage == "sr1024" else base128.get_config()
  c.data.path = path
  c.data.resolution = RES
  c.data.shuffle_buffer = 5
  c.data.cycle_length = 2
  c.train.batch_size = BATCH
  for k, v in data.items():
    c.data[k] = v
  return c


def take(it, n):
  return [next(it) for _ in range(n)]


@pytest.mark.parametrize("ext", ["tfrecord", "array_record"])
def test_train_batch_contract(shards, ext):
  it = iter(pipeline.make_train_dataset(config(f"{shards}/*.{ext}")))
  batches = take(it, 6)  # 24 examples > 12 records: the dataset repeats
  it.close()
  b = batches[0]
  want = {"person": (BATCH, RES, RES, 3), "agnostic": (BATCH, RES, RES, 3),
          "garment": (BATCH, RES, RES, 3), "person_pose": (BATCH, 18, 2),
          "person_pose_mask": (BATCH, 18), "garment_pose": (BATCH, 18, 2),
          "garment_pose_mask": (BATCH, 18)}
  assert {k: v.shape for k, v in b.items()} == want
  assert all(v.dtype == np.float32 for v in b.values())
  assert b["person"].min() >= -1.0 and b["person"].max() <= 1.0
  assert np.all(b["garment_pose_mask"] == 0)
  seen = [record_index(x) for bb in batches for x in bb["person"]]
  assert sorted(set(seen)) == list(range(N))  # every record comes, in shuffled order
  assert seen[:N] != sorted(seen[:N])


@pytest.mark.parametrize("ext", ["tfrecord", "array_record"])
def test_resume_yields_exactly_the_next_batch(shards, ext):
  c = config(f"{shards}/*.{ext}")
  it = iter(pipeline.make_train_dataset(c))
  take(it, 5)
  state = it.get_state()
  want = take(it, 2)
  it.close()
  it2 = iter(pipeline.make_train_dataset(c))
  it2.set_state(state)
  got = take(it2, 2)
  it2.close()
  for w, g in zip(want, got):
    for k in w:
      np.testing.assert_array_equal(w[k], g[k], err_msg=k)


def test_orbax_checkpoint_of_iterator(shards, tmp_path):
  import orbax.checkpoint as ocp
  c = config(f"{shards}/*.tfrecord")
  it = iter(pipeline.make_train_dataset(c))
  take(it, 3)
  mngr = ocp.CheckpointManager(str(tmp_path / "ckpt"))
  mngr.save(3, args=ocp.args.Composite(data_iter=grain.checkpoint.CheckpointSave(it)))
  mngr.wait_until_finished()
  want = next(it)
  it.close()
  it2 = iter(pipeline.make_train_dataset(c))
  mngr.restore(3, args=ocp.args.Composite(data_iter=grain.checkpoint.CheckpointRestore(it2)))
  got = next(it2)
  it2.close()
  mngr.close()
  np.testing.assert_array_equal(want["person"], got["person"])
  np.testing.assert_array_equal(want["person_pose"], got["person_pose"])


def test_flip_mirrors_images_and_swaps_keypoints(shards):
  path = f"{shards}/*.tfrecord"
  it0, it1 = (iter(pipeline.make_train_dataset(config(path, flip_prob=p))) for p in (0.0, 1.0))
  plain, flipped = next(it0), next(it1)
  it0.close()
  it1.close()
  # Same shuffle seed: same records in the same order.
  np.testing.assert_allclose(flipped["person"], plain["person"][:, :, ::-1], atol=1e-6)
  np.testing.assert_allclose(flipped["agnostic"], plain["agnostic"][:, :, ::-1], atol=1e-6)
  perm = labels.COCO18_FLIP_PERM
  np.testing.assert_array_equal(flipped["person_pose_mask"], plain["person_pose_mask"][:, perm])
  vis = flipped["person_pose_mask"] > 0
  np.testing.assert_allclose(flipped["person_pose"][..., 0][vis],
                             (1.0 - plain["person_pose"][:, perm, 0])[vis], atol=1e-6)
  np.testing.assert_allclose(flipped["person_pose"][..., 1], plain["person_pose"][:, perm, 1])
  assert np.all(flipped["person_pose"][~vis] == 0)  # missing keypoints stay (0, 0)
  r_wrist, l_wrist = labels.R_WRIST, labels.L_WRIST
  np.testing.assert_allclose(flipped["person_pose"][:, r_wrist, 0],
                             1.0 - plain["person_pose"][:, l_wrist, 0], atol=1e-6)


def test_sr1024_random_crops(shards):
  c = config(f"{shards}/*.tfrecord", "sr1024", resolution=STORED, crop_size=6, flip_prob=0.0)
  it = iter(pipeline.make_train_dataset(c))
  b = take(it, 3)
  it.close()
  assert set(b[0]) == {"person"} and b[0]["person"].shape == (BATCH, 6, 6, 3)
  full = {i: make_record(i).person.astype(np.float32) / 127.5 - 1 for i in range(N)}
  offsets = set()
  for batch in b:
    for crop in batch["person"]:
      hits = [(i, y, x) for i in full for y in range(STORED - 5) for x in range(STORED - 5)
              if np.allclose(full[i][y:y + 6, x:x + 6], crop)]
      assert hits, "crop is not a window of any person image"
      offsets.add(hits[0][2])
  assert len(offsets) > 1  # crops move


def test_host_file_sharding_is_disjoint(shards):
  ids = []
  for host in range(2):
    c = config(f"{shards}/*.tfrecord", flip_prob=0.0)
    c.train.batch_size = 2 * BATCH  # local batch = BATCH
    it = iter(pipeline.make_train_dataset(c, process_index=host, process_count=2))
    ids.append({record_index(x) for bb in take(it, 4) for x in bb["person"]})
    it.close()
  assert not ids[0] & ids[1]
  assert ids[0] | ids[1] == set(range(N))  # host 0: files 0, 2; host 1: file 1
  c = config(f"{shards}/*.tfrecord")  # 3 files cannot feed 4 hosts
  with pytest.raises(ValueError, match="cannot be split over 4 hosts"):
    pipeline.make_train_dataset(c, process_index=3, process_count=4)


@pytest.mark.parametrize("ext", ["tfrecord", "array_record"])
def test_eval_in_order_with_padded_last_batch(shards, ext):
  batches = list(pipeline.make_eval_dataset(config(""), f"{shards}/*.{ext}", 5))
  assert len(batches) == 3
  ids = [i for b in batches for i, v in zip(b["id"], b["valid"]) if v]
  assert ids == [f"r{i:02d}" for i in range(N)]
  last = batches[-1]
  assert last["person"].shape == (5, RES, RES, 3)
  np.testing.assert_array_equal(last["valid"], [1, 1, 0, 0, 0])
  assert np.all(last["person"][2:] == 0) and list(last["id"][2:]) == ["", "", ""]


def _offsets(path):
  return [off for off, _ in tfrecord.read_tfrecord(path)]


def test_corrupt_payload_names_file_and_offset(shards, tmp_path):
  src = f"{shards}/train-00000-of-00003.tfrecord"
  bad = str(tmp_path / "bad.tfrecord")
  data = bytearray(open(src, "rb").read())
  off = _offsets(src)[2]
  data[off + 12 + 40] ^= 0xFF  # a byte inside record 2's payload
  open(bad, "wb").write(bytes(data))
  it = iter(pipeline.make_eval_dataset(config(""), bad, 1))
  next(it), next(it)  # records 0, 1 are fine
  with pytest.raises(tfrecord.CorruptRecordError) as e:
    next(it)
  assert f"{bad}" in str(e.value) and f"byte offset {off}" in str(e.value)


def test_corrupt_length_and_bad_example_are_named(shards, tmp_path):
  src = f"{shards}/train-00001-of-00003.tfrecord"
  data = bytearray(open(src, "rb").read())
  off = _offsets(src)[1]
  data[off + 3] ^= 0x7F  # record 1's length: would read a huge size without the header check
  bad = str(tmp_path / "badlen.tfrecord")
  open(bad, "wb").write(bytes(data))
  with pytest.raises(tfrecord.CorruptRecordError, match=f"{bad}.*byte offset {off}"):
    list(pipeline.make_eval_dataset(config(""), bad, 2))
  # Framing intact, payload not an Example of our schema: named by file@offset and field.
  junk = str(tmp_path / "junk.tfrecord")
  good = schema.serialize(make_record(0), fmt="png")
  tfrecord.write_tfrecord(junk, [good, b"\x0a\x03abc"])
  second = _offsets(junk)[1]
  with pytest.raises(tfrecord.CorruptRecordError, match=f"{junk}@{second}: corrupt record"):
    list(pipeline.make_eval_dataset(config(""), junk, 1))


def test_bad_paths_are_clear(shards):
  with pytest.raises(FileNotFoundError, match="matches no files"):
    pipeline.make_train_dataset(config(f"{shards}/*.nothing"))
  with pytest.raises(ValueError, match="only .tfrecord or only .array_record"):
    pipeline.make_train_dataset(config(f"{shards}/train-*"))
