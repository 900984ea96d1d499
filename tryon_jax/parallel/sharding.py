"""The device mesh and the logical-axis rules: the one place where sharding is decided.

Models annotate every parameter with *logical* axis names (``nnx.with_partitioning``) and every
large activation with ``constrain(x, names)``; nothing else in the code base names a mesh axis.
The rules below map logical names onto the mesh axes ``(data, fsdp, tensor)``:

  * ``batch``     activations are data-parallel over ``data`` and ``fsdp``;
  * ``conv_in`` / ``embed``  weights are fully sharded (ZeRO-3 style) over ``fsdp``;
  * ``conv_out`` / ``mlp`` / ``heads``  weights are tensor-parallel over ``tensor``.

A dimension that a mesh axis does not divide is replicated along that axis instead (e.g. the 3 RGB
input channels of the first conv), so the same rules serve 1 device, 8 fake CPU devices and a pod.
"""

from __future__ import annotations

from collections.abc import Sequence
import contextlib
import math
from typing import Any

import jax
from jax.sharding import NamedSharding, PartitionSpec as P
from flax import nnx

MESH_AXES = ("data", "fsdp", "tensor")

# Logical axis name -> mesh axis (or axes, or None = replicated).
LOGICAL_AXIS_RULES: tuple[tuple[str, Any], ...] = (
    ("batch", ("data", "fsdp")),
    ("conv_in", "fsdp"),
    ("conv_out", "tensor"),
    ("embed", "fsdp"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("kh", None),
    ("kw", None),
    ("norm", None),
    ("keypoints", None),
    ("coords", None),
    ("length", None),
    ("height", None),
    ("width", None),
    ("channels", None),
    ("blocks", None),  # a scanned level's stacked blocks (model.scan_blocks): each step slices one
)


def make_mesh(shape: Sequence[int], axes: Sequence[str] = MESH_AXES,
              devices: Sequence[jax.Device] | None = None) -> jax.sharding.Mesh:
  """Builds a mesh of ``shape`` over ``axes``; one entry may be -1 (= fill with the rest).

  Axis types are ``Auto`` (GSPMD propagation), which the conv layers need in jax 0.10.
  """
  devices = list(devices if devices is not None else jax.devices())
  shape = list(shape)
  if len(shape) != len(axes):
    raise ValueError(f"mesh.shape {tuple(shape)} and mesh.axes {tuple(axes)} differ in length")
  if shape.count(-1) > 1:
    raise ValueError(f"mesh.shape {tuple(shape)}: at most one -1 (fill) entry")
  known = math.prod(s for s in shape if s != -1)
  if -1 in shape:
    if len(devices) % known:
      raise ValueError(f"mesh.shape {tuple(shape)} does not divide {len(devices)} devices")
    shape[shape.index(-1)] = len(devices) // known
  if math.prod(shape) != len(devices):
    raise ValueError(f"mesh.shape {tuple(shape)} needs {math.prod(shape)} devices, "
                     f"{len(devices)} are available")
  return jax.make_mesh(tuple(shape), tuple(axes), devices=devices,
                       axis_types=(jax.sharding.AxisType.Auto,) * len(axes))


def rules_context(rules=LOGICAL_AXIS_RULES):
  """Context in which logical names resolve: ``with rules_context(): ...``."""
  return nnx.logical_axis_rules(rules)


@contextlib.contextmanager
def mesh_context(mesh: jax.sharding.Mesh, rules=LOGICAL_AXIS_RULES):
  """Mesh + logical rules active together (flax shards variables eagerly at creation)."""
  with jax.set_mesh(mesh), nnx.logical_axis_rules(rules):
    yield


def _mesh_axes_for(name: str | None, rules) -> Any:
  if name is None:
    return None
  for logical, mesh_axes in rules:
    if logical == name:
      return mesh_axes
  raise KeyError(f"logical axis {name!r} has no rule in LOGICAL_AXIS_RULES")


def logical_to_spec(names: Sequence[str | None], shape: Sequence[int], mesh: jax.sharding.Mesh,
                    rules=LOGICAL_AXIS_RULES) -> P:
  """PartitionSpec for an array of ``shape`` annotated with logical ``names``.

  Mesh axes that do not divide the dimension, or that are already used by an earlier dimension,
  are dropped (that dimension is replicated along them).
  """
  used: set[str] = set()
  spec = []
  for name, dim in zip(names, shape):
    mesh_axes = _mesh_axes_for(name, rules)
    if mesh_axes is None:
      spec.append(None)
      continue
    mesh_axes = (mesh_axes,) if isinstance(mesh_axes, str) else tuple(mesh_axes)
    kept = []
    size = 1
    for ax in mesh_axes:
      if ax in used or ax not in mesh.shape:
        continue
      if dim % (size * mesh.shape[ax]) == 0:
        kept.append(ax)
        size *= mesh.shape[ax]
    used.update(kept)
    spec.append(None if not kept else kept[0] if len(kept) == 1 else tuple(kept))
  return P(*spec)


def state_shardings(abstract_state: Any, mesh: jax.sharding.Mesh, rules=LOGICAL_AXIS_RULES) -> Any:
  """NamedShardings for an nnx State of abstract (or concrete) variables, from their annotations.

  Variables without ``out_sharding`` metadata (e.g. optimizer step counters) are replicated.
  """

  def one(var):
    value = var.get_value() if isinstance(var, nnx.Variable) else var
    names = var.get_metadata().get("out_sharding") if isinstance(var, nnx.Variable) else None
    if names is None:
      names = (None,) * len(value.shape)
    sharding = NamedSharding(mesh, logical_to_spec(names, value.shape, mesh, rules))
    return var.replace(sharding) if isinstance(var, nnx.Variable) else sharding

  return jax.tree.map(one, abstract_state, is_leaf=lambda x: isinstance(x, nnx.Variable))


def batch_sharding(mesh: jax.sharding.Mesh, rules=LOGICAL_AXIS_RULES) -> NamedSharding:
  """Sharding of input batches: leading (batch) dimension over the ``batch`` rule's mesh axes."""
  axes = _mesh_axes_for("batch", rules)
  return NamedSharding(mesh, P(axes))


def constrain(x: jax.Array, names: Sequence[str | None]) -> jax.Array:
  """Sharding constraint on an activation by logical names; a no-op outside a mesh context."""
  mesh = jax.sharding.get_abstract_mesh()
  if mesh is None or mesh.empty:
    return x
  return jax.lax.with_sharding_constraint(x, logical_to_spec(names, x.shape, mesh))


def replicated_sharding(mesh: jax.sharding.Mesh) -> NamedSharding:
  """Sharding of values every device holds whole (scalars, metrics, small sample batches)."""
  return NamedSharding(mesh, P())


def host_local_to_global(local: Any, sharding: NamedSharding) -> Any:
  """Per-host numpy arrays -> global jax.Arrays laid out by ``sharding`` (multi-host safe).

  With ``batch_sharding`` each host passes its own slice of the global batch ([B / hosts, ...]);
  with ``replicated_sharding`` every host passes the same whole array.
  """
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), local)
