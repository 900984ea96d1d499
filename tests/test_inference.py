"""--mode=tryon: inputs as the converters preprocess them, checkpoints restored with their EMA
parameters, one-line errors for bad input, and a real two-stage try-on written as PNGs.

One module fixture makes synthetic photos + records, trains the tiny base stage for two steps
(tryon_jax.main in a child process) and saves an initialized tiny sr1024 stage."""

from __future__ import annotations

import dataclasses
import json
import os
import sys

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_inference_support as support  # pylint: disable=wrong-import-position

from configs import demo  # pylint: disable=wrong-import-position
from data_pipelines import _convert  # pylint: disable=wrong-import-position
from data_pipelines import viton_hd  # pylint: disable=wrong-import-position
from tryon_jax.inference import checkpoints  # pylint: disable=wrong-import-position
from tryon_jax.inference import inputs  # pylint: disable=wrong-import-position
from tryon_jax.inference import options  # pylint: disable=wrong-import-position
from tryon_jax.inference import tryon  # pylint: disable=wrong-import-position


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  return support.shared_setup(tmp_path_factory)


def photo_options(data: dict, base_dir: str, out: str, **changes) -> options.TryOnOptions:
  opts = options.TryOnOptions(
      ckpt={"base128": base_dir}, person=data["person"], person_parse=data["person_parse"],
      person_pose=data["person_pose"], garment=data["garment"],
      garment_mask=data["garment_mask"], garment_pose=data["garment_pose"], out=out, steps=[2])
  return dataclasses.replace(opts, **changes)


# ------------------------------------------------------------------------------ inputs


def test_photo_inputs_are_preprocessed_exactly_as_the_converter_does(setup):
  data = setup["data"]
  opts = _convert.make_options(resolution=32)
  record = inputs.load_user_pair(
      inputs.UserPair(data["person"], data["person_parse"], data["person_pose"], data["garment"],
                      garment_mask=data["garment_mask"], garment_pose=data["garment_pose"]), opts)
  pair = viton_hd.VitonHDPair("x", "p", "g", split_dir=os.path.join(data["raw"], "train"),
                              person_file=os.path.basename(data["person"]),
                              cloth_file=os.path.basename(data["garment"]))
  got = pair.load(opts)
  reference = _convert.preprocess.make_record(
      pair_id="x", person_id="p", garment_id="g", source="viton_hd", label_set=got.label_set,
      person_image=got.person_image, person_parse=got.person_parse, person_kps=got.person_kps,
      person_kps_mask=got.person_kps_mask, garment_image=got.garment_image,
      garment_mask=got.garment_mask, garment_kps=got.garment_kps,
      garment_kps_mask=got.garment_kps_mask, opts=opts)
  for field in ("person", "agnostic", "garment", "person_pose", "person_pose_mask",
                "garment_pose", "garment_pose_mask"):
    np.testing.assert_array_equal(getattr(record, field), getattr(reference, field), field)
  assert record.id == "000000_00__000001_01"
  assert record.garment_pose_present and record.person_pose_mask.sum() >= 4


def test_garment_parse_selects_the_garment_labels(setup, tmp_path):
  data = setup["data"]
  # The garment photo's own parse: the synthetic set's cloth image is pair 1's pose-A photo; its
  # upper clothes (id 5) are exactly the cloth mask.
  mask = np.asarray(Image.open(data["garment_mask"]).convert("L")) >= 128
  parse = np.where(mask, 5, 13).astype(np.uint8)  # 13 = face: anything not a garment id
  Image.fromarray(parse, mode="L").save(tmp_path / "g_parse.png")
  opts = _convert.make_options(resolution=32)
  pair = lambda **g: inputs.UserPair(data["person"], data["person_parse"], data["person_pose"],
                                     data["garment"], garment_pose=data["garment_pose"], **g)
  by_parse = inputs.load_user_pair(pair(garment_parse=str(tmp_path / "g_parse.png")), opts)
  by_mask = inputs.load_user_pair(pair(garment_mask=data["garment_mask"]), opts)
  np.testing.assert_array_equal(by_parse.garment, by_mask.garment)


def test_record_set_pairs_paired_shifted_and_from_a_pairs_file(setup, tmp_path):
  records = inputs.RecordSet(setup["data"]["records"])
  assert len(records) == 4
  assert [r.pair_id for r in records.paired()] == [
      f"{i:06d}_00__{i:06d}_01" for i in range(4)]
  shifted = records.shifted()
  assert [(r.person_index, r.garment_index) for r in shifted] == [(0, 1), (1, 2), (2, 3), (3, 0)]
  pairs = tmp_path / "pairs.txt"
  pairs.write_text("000002_00.jpg 000000_01.jpg\n\n000001_00 000001_01\n")
  refs = records.from_pairs_file(str(pairs))
  assert [r.pair_id for r in refs] == ["000002_00__000000_01", "000001_00__000001_01"]
  assert [r.paired for r in refs] == [False, True]
  unpaired = records.example(refs[0], 16)
  own = records.example(records.paired()[2], 16)
  other = records.example(records.paired()[0], 16)
  np.testing.assert_array_equal(unpaired["agnostic"], own["agnostic"])  # person 2 ...
  np.testing.assert_array_equal(unpaired["garment"], other["garment"])  # ... in garment 0
  np.testing.assert_array_equal(unpaired["garment_pose"], other["garment_pose"])
  assert unpaired["garment"].shape == (16, 16, 3) and unpaired["garment"].dtype == np.float32
  assert -1.0 <= unpaired["agnostic"].min() and unpaired["agnostic"].max() <= 1.0
  pairs.write_text("000002_00 nobody_01\n")
  with pytest.raises(inputs.InputError, match=r"pairs.txt:1: no record has garment 'nobody_01'"):
    records.from_pairs_file(str(pairs))


def test_paste_back_puts_the_square_where_it_was_cut_even_past_the_border():
  photo = np.zeros((6, 5, 3), np.uint8)
  tryon_square = np.full((4, 4, 3), 200, np.uint8)
  out = tryon.paste_back(photo, tryon_square, (-2.0, 1.0, 4.0))  # x from -2: half outside
  assert out.shape == photo.shape
  assert (out[1:5, 0:2] == 200).all()
  assert out[0].sum() == 0 and out[5].sum() == 0 and out[:, 2:].sum() == 0


def test_one_value_or_one_per_stage():
  assert options.per_stage(["3"], 2, "steps", int) == [3, 3]
  assert options.per_stage(["ddpm", "ddim"], 2, "sampler", str) == ["ddpm", "ddim"]
  assert options.per_stage([], 3, "steps", int) == [None, None, None]
  with pytest.raises(options.OptionError, match="--steps: 2 values for 3 stages"):
    options.per_stage(["1", "2"], 3, "steps", int)
  with pytest.raises(options.OptionError, match="--guidance_weight: cannot read"):
    options.per_stage(["x"], 1, "guidance_weight", float)


# ------------------------------------------------------------------------------ checkpoints


def test_checkpoint_found_from_workdir_checkpoints_dir_or_step_dir(setup):
  base = setup["base"]
  step_dir = os.path.join(base, "checkpoints", "2")
  for path in (base, os.path.join(base, "checkpoints"), step_dir):
    assert checkpoints.resolve_step_dir(path, "--ckpt_base128") == os.path.abspath(step_dir)
  ckpt = checkpoints.resolve(base, "--ckpt_base128", "base128")
  assert ckpt.step == 2 and ckpt.stage == "base128"
  assert ckpt.config.model.channels == (8, 16)  # JSON lists back to tuples
  with pytest.raises(checkpoints.CheckpointError,
                     match=r"--ckpt_sr256: .* holds a 'base128' stage, not 'sr256'"):
    checkpoints.resolve(base, "--ckpt_sr256", "sr256")
  with pytest.raises(checkpoints.CheckpointError, match=r"--ckpt_base128: no checkpoint in"):
    checkpoints.resolve(setup["data"]["raw"], "--ckpt_base128")


@pytest.mark.filterwarnings("ignore:Sharding info not provided")
def test_restores_the_ema_parameters_not_the_raw_ones(setup):
  import jax  # pylint: disable=g-import-not-at-top
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  from flax import nnx  # pylint: disable=g-import-not-at-top
  ckpt = checkpoints.resolve(setup["base"], "--ckpt_base128", "base128")
  _, (params, _) = checkpoints.restore_ema_model(ckpt)
  saved = ocp.PyTreeCheckpointer().restore(os.path.join(ckpt.step_dir, "state"))
  leaves = lambda tree: jax.tree.leaves(tree)
  restored = leaves(nnx.to_pure_dict(params))
  ema, raw = leaves(saved["ema"]), leaves(saved["model"])
  assert len(restored) == len(ema) > 0
  for got, want in zip(restored, ema):
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
  # After two steps the EMA (decay 0.995) still differs from the trained parameters.
  assert any(not np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(restored, raw))


# ------------------------------------------------------------------------------ errors


def _run_error(setup, tmp_path, capsys, **changes) -> str:
  out = str(tmp_path / "out")
  opts = photo_options(setup["data"], setup["base"], out, **changes)
  code = tryon.run(demo.get_config(), opts)
  err = capsys.readouterr().err.strip()
  assert code != 0
  assert len(err.splitlines()) == 1 and err.startswith("ERROR: "), err
  assert not os.path.exists(out) or not os.listdir(out)  # nothing (half) written
  return err


def test_error_mismatched_image_and_parse_sizes(setup, tmp_path, capsys):
  parse = Image.open(setup["data"]["person_parse"])
  small = tmp_path / "small_parse.png"
  parse.resize((parse.width // 2, parse.height // 2), Image.NEAREST).save(small)
  err = _run_error(setup, tmp_path, capsys, person_parse=str(small))
  assert "--person_parse" in err and str(small) in err and "24x32" in err and "48x64" in err


def test_error_person_json_with_no_people(setup, tmp_path, capsys):
  pose = tmp_path / "nobody_keypoints.json"
  pose.write_text(json.dumps({"version": 1.3, "people": []}))
  err = _run_error(setup, tmp_path, capsys, person_pose=str(pose))
  assert "--person_pose" in err and str(pose) in err and "no person detected" in err


def test_error_person_with_too_few_keypoints(setup, tmp_path, capsys):
  pose = tmp_path / "faint_keypoints.json"
  pose.write_text(json.dumps({"people": [{"pose_keypoints_2d": [0.0] * 75}]}))
  err = _run_error(setup, tmp_path, capsys, person_pose=str(pose))
  assert "--person_pose" in err and "0 visible keypoints" in err


def test_error_unreadable_image(setup, tmp_path, capsys):
  broken = tmp_path / "broken.jpg"
  broken.write_bytes(open(setup["data"]["garment"], "rb").read()[:200])  # truncated JPEG
  err = _run_error(setup, tmp_path, capsys, garment=str(broken))
  assert "--garment" in err and "unreadable" in err and str(broken) in err


def test_error_missing_garment_mask(setup, tmp_path, capsys):
  err = _run_error(setup, tmp_path, capsys, garment_mask=None)
  assert "missing --garment_mask" in err
  gone = str(tmp_path / "no_such_mask.jpg")
  err = _run_error(setup, tmp_path, capsys, garment_mask=gone)
  assert "--garment_mask" in err and gone in err


def test_error_wrong_number_of_per_stage_values(setup, tmp_path, capsys):
  err = _run_error(setup, tmp_path, capsys, ckpt={"base128": setup["base"], "sr1024": setup["sr"]},
                   steps=[2, 2, 2])
  assert "--steps: 3 values for 2 stages" in err


def test_cli_errors_are_one_line_without_traceback(setup, tmp_path):
  """Through tryon_jax.main (flags, exit status): children run side by side."""
  data = setup["data"]
  nobody = tmp_path / "nobody_keypoints.json"
  nobody.write_text(json.dumps({"people": []}))
  photo_flags = [f"--{k}={data[k]}" for k in ("person", "person_parse", "garment", "garment_mask")]
  cases = {
      "missing_ckpt": (["--ckpt_base128=" + str(tmp_path / "no_such_workdir"),
                        f"--person_pose={data['person_pose']}"],
                       ["--ckpt_base128", "no_such_workdir", "does not exist"]),
      "no_people": ([f"--ckpt_base128={setup['base']}", f"--person_pose={nobody}"],
                    ["--person_pose", "no person detected"]),
  }
  children = {}
  for name, (flags, _) in cases.items():
    out = tmp_path / f"out_{name}"
    children[name] = (out, support.start_main(
        ["--mode=tryon", "--config=configs/demo.py", *photo_flags, *flags, f"--out={out}",
         "--steps=2"]))
  for name, (out, child) in children.items():
    stdout, stderr = child.communicate(timeout=300)
    assert child.returncode == 1, (name, stderr[-2000:])
    assert "Traceback" not in stderr and "Traceback" not in stdout, name
    errors = [l for l in stderr.splitlines() if l.startswith("ERROR: ")]
    assert len(errors) == 1, (name, stderr[-2000:])
    assert all(word in errors[0] for word in cases[name][1]), (name, errors[0])
    assert not out.exists()


# ------------------------------------------------------------------------------ try-on


def test_two_stage_tryon_writes_pngs_of_each_stage_size(setup, tmp_path):
  data = setup["data"]
  out = tmp_path / "out"
  flags = [f"--{k}={data[k]}" for k in ("person", "person_parse", "person_pose", "garment",
                                        "garment_mask", "garment_pose")]
  proc = support.run_main(["--mode=tryon", "--config=configs/demo.py", *flags,
                           f"--ckpt_base128={setup['base']}", f"--ckpt_sr1024={setup['sr']}",
                           "--steps=2", "--sampler=ddpm,ddim", f"--out={out}", "--save_stages",
                           "--paste_back"])
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "try-on: 100%" in proc.stderr  # the tqdm bar
  pair_id = "000000_00__000001_01"
  sizes = {}
  for suffix in ("", ".base128", ".sr1024", ".full"):
    with Image.open(out / f"{pair_id}{suffix}.png") as image:
      sizes[suffix] = image.size
      pixels = np.asarray(image)
    assert pixels.dtype == np.uint8 and pixels.shape[-1] == 3
  # base 16 px -> Efficient-UNet x4 -> 64 px; the paste-back has the person photo's size.
  assert sizes == {"": (64, 64), ".base128": (16, 16), ".sr1024": (64, 64), ".full": (48, 64)}
  assert sorted(os.listdir(out)) == sorted(f"{pair_id}{s}.png" for s in sizes)  # no temp files
  with Image.open(out / f"{pair_id}.png") as final, Image.open(
      out / f"{pair_id}.sr1024.png") as last_stage:
    np.testing.assert_array_equal(np.asarray(final), np.asarray(last_stage))


def test_records_with_a_pairs_file_give_one_png_per_pair(setup, tmp_path, monkeypatch):
  monkeypatch.setattr(checkpoints, "build_cascade", support.stand_in_build_cascade)
  pairs = tmp_path / "pairs.txt"
  pairs.write_text("000003_00.jpg 000000_01.jpg\n000001_00.jpg 000001_01.jpg\n")
  out = tmp_path / "out"
  opts = options.TryOnOptions(ckpt={"base128": setup["base"]}, records=setup["data"]["records"],
                              pairs=str(pairs), out=str(out), batch_size=4)
  written = tryon.tryon(demo.get_config(), opts)
  names = ["000003_00__000000_01.png", "000001_00__000001_01.png"]
  assert written == [str(out / n) for n in names] and sorted(os.listdir(out)) == sorted(names)
  records = inputs.RecordSet(setup["data"]["records"])
  for name, ref in zip(names, records.from_pairs_file(str(pairs))):
    with Image.open(out / name) as image:
      got = np.asarray(image)
    # the stand-in base stage returns the person's agnostic image at the stage's 16 px
    want = tryon.to_uint8(records.example(ref, 16)["agnostic"])
    assert got.shape == (16, 16, 3)
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1


def test_array_record_sets_read_like_tfrecord_sets(setup, tmp_path):
  viton_hd.convert(setup["data"]["raw"], "train", str(tmp_path / "ar"), fmt="arrayrecord",
                   resolution=support.RECORD_RESOLUTION, progress=False)
  from_ar = inputs.RecordSet(str(tmp_path / "ar" / "*.array_record"))
  from_tf = inputs.RecordSet(setup["data"]["records"])
  assert from_ar.ids == from_tf.ids
  a, b = from_ar.example(from_ar.shifted()[1], 16), from_tf.example(from_tf.shifted()[1], 16)
  for key in a:
    np.testing.assert_array_equal(a[key], b[key], key)
