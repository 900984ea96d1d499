"""Where the Parallel-UNet's cross-attention looks: the implicit warp, measured in a trained run.

  python -m benchmarks.learning_attention --json OUT.json -- --workdir W --pattern_scale 4 [...]

Everything after ``--`` is benchmarks.learning's own flags for the run (its workdir, data options,
--steps, --set ...), so the same held-out pairs and the same network are read back. The probe
noises each pair's target to diffusion time --t, runs the EMA network of the newest checkpoint (or
of --checkpoint_step; the workdir is only read, so a run may still be training there) once and
records the softmax weights of every person-UNet cross-attention layer.

The place a person token *should* read: person and garment keypoints are the same body points, so
a least-squares affine map from the person's keypoints to I_c's takes a person-image place to
the garment-image place that shows it. In the same-pose control (``--same_pose``) the garment is
only scaled and moved, so the map is exact up to the crop's rounding; across poses it is only the
best single affine map (``affine_fit_rms_tokens`` says how far the keypoints are from it).
``--expected pose_affine`` or ``pose_parts`` scores against the place the model's own pose code
sends a token to instead (learning_copy_pairs.pose_maps: the torso's ridge-fitted map, or each
body part's), the read a network with that ``model.cross_attention_position`` is offered.

Per layer, over the person tokens on the target's garment (mask pooled to the layer's grid):
  * ``expected_shift``: tokens from a person token's own grid place to the place it should read;
    ``peak_mass``: the largest single weight of its attention (head mean), how sharp it looks;
    ``garment_mass``: its attention on I_c's garment tokens, not the black around it
    (``garment_mass_uniform``: their share of the grid).
  * ``near_mass``: attention within --radius tokens of that place, averaged over heads;
    ``near_mass_best_head``: the same for the head that puts most there; ``near_mass_uniform``:
    what attention spread evenly over I_c's whole grid would put there;
    ``near_mass_even_on_garment``: what the same garment mass spread evenly over I_c's garment
    would put there (reading the garment, but not a place on it).
  * ``centroid_error``: tokens from the attention's weighted mean place to the expected one
    (head mean), and ``centroid_error_uniform`` for even attention (the grid's centre).
  * ``near_mass_same_place`` / ``centroid_error_same_place``: the same scores against the
    person token's own grid place in I_c, i.e. reading the garment without moving it. Where the
    expected place is far from it, attention that follows the garment scores higher on the first.
  * ``near_minus_even_on_garment_by_pair``, ``near_minus_same_place_by_pair``: near_mass less
    each reference, averaged over a pair's tokens, then mean and standard error over pairs.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

import numpy as np

from benchmarks import learning, learning_copy_pairs


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, argparse.Namespace]:
  """(probe args, benchmarks.learning args) from ``PROBE_FLAGS -- LEARNING_FLAGS``."""
  argv = list(sys.argv[1:] if argv is None else argv)
  split = argv.index("--") if "--" in argv else len(argv)
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--json", default="", help="also write the result here")
  p.add_argument("--t", type=float, default=0.5, help="diffusion time of the noised targets")
  p.add_argument("--radius", type=float, default=1.5,
                 help="tokens around the expected place that count as 'near'")
  p.add_argument("--min_shift", type=float, default=0.0,
                 help="score only person tokens whose expected place is at least this far from "
                      "their own (fraction of the image side), where following the garment and "
                      "staying in place can be told apart")
  p.add_argument("--expected", default="keypoint_affine",
                 choices=("keypoint_affine", *learning_copy_pairs.POSE_POSITIONS),
                 help="the place a token should read: the affine fit of all shared keypoints, or "
                      "the model's pose code's map (module docstring)")
  p.add_argument("--seed", type=int, default=0, help="noise of x_t")
  p.add_argument("--checkpoint_step", type=int, default=None,
                 help="probe this saved step of the run (default: its newest checkpoint)")
  probe = p.parse_args(argv[:split])
  return probe, learning.parse_args(argv[split + 1:])


def keypoint_affine(src: np.ndarray, dst: np.ndarray, mask: np.ndarray
                    ) -> tuple[np.ndarray, float]:
  """Least-squares affine map of src [K, 2] onto dst [K, 2] over mask [K] (1 = both present) ->
  (A [3, 2] with dst ~ [src, 1] @ A, RMS residual in the keypoints' units). Fewer than three
  points cannot fix an affine map: ValueError."""
  keep = mask > 0
  if keep.sum() < 3:
    raise ValueError(f"only {int(keep.sum())} keypoints shared by person and garment; need 3")
  x = np.concatenate([src[keep], np.ones((keep.sum(), 1))], axis=1)
  a, *_ = np.linalg.lstsq(x, dst[keep], rcond=None)
  rms = float(np.sqrt(np.mean(np.sum((x @ a - dst[keep]) ** 2, axis=1))))
  return a, rms


def token_centres(side: int) -> np.ndarray:
  """[side * side, 2] (x, y) centres of a side x side token grid in [0, 1], row-major."""
  u = (np.arange(side) + 0.5) / side
  y, x = np.meshgrid(u, u, indexing="ij")
  return np.stack([x.ravel(), y.ravel()], axis=-1)


def pool_mask(mask: np.ndarray, side: int) -> np.ndarray:
  """[R, R] bool -> [side * side] bool: the tokens whose pixels are mostly garment."""
  r = mask.shape[0]
  f = r // side
  return mask.reshape(side, f, side, f).mean(axis=(1, 3)).ravel() > 0.5


def look_scores(weights: np.ndarray, expected: np.ndarray, queries: np.ndarray,
                radius: float, keys_on_garment: np.ndarray) -> dict[str, float]:
  """Scores of one pair's attention at one layer.

  weights [heads, S*S, S*S] (person token -> garment token); expected [S*S, 2] the garment place
  each person token should read, in [0, 1]; queries [S*S] bool, the person tokens scored;
  keys_on_garment [S*S] bool, the I_c tokens that show the garment.
  Returns the per-pair sums behind the module docstring's scores (``n`` = queries scored).
  """
  side = int(round(np.sqrt(weights.shape[-1])))
  keys = token_centres(side)
  w = weights[:, queries]  # [heads, Q, S*S]
  target = expected[queries]  # [Q, 2]
  dist = np.linalg.norm(keys[None] - target[:, None], axis=-1) * side  # [Q, S*S] in tokens
  near = dist <= radius
  near_mass = (w * near[None]).sum(-1)  # [heads, Q]
  # The same query's garment mass spread evenly over I_c's garment tokens: what reading "the
  # garment somewhere" would put near the place, as the place may simply be denser in garment.
  on_garment_mass = (w * keys_on_garment).sum(-1)  # [heads, Q]
  near_share = (near & keys_on_garment).sum(-1) / max(int(keys_on_garment.sum()), 1)  # [Q]
  centroid = w @ keys  # [heads, Q, 2]
  centroid_error = np.linalg.norm(centroid - target[None], axis=-1) * side
  own = keys[queries]  # the person tokens' own places
  return {"n": int(queries.sum()),
          "expected_shift": float((np.linalg.norm(target - own, axis=-1) * side).sum()),
          "peak_mass": float(w.max(-1).mean(0).sum()),
          "garment_mass": float(on_garment_mass.mean(0).sum()),
          "near_mass_even_on_garment": float((on_garment_mass * near_share).mean(0).sum()),
          "garment_mass_uniform": float(keys_on_garment.mean() * queries.sum()),
          "near_mass": float(near_mass.mean(0).sum()),
          "near_mass_by_head": near_mass.sum(1),
          "near_mass_uniform": float(near.mean(-1).sum()),
          "centroid_error": float(centroid_error.mean(0).sum()),
          "centroid_error_uniform": float(
              (np.linalg.norm(target - 0.5, axis=-1) * side).sum())}


def by_pair(values: Sequence[float]) -> dict[str, float]:
  """{"mean", "sem", "pairs"} of one value per pair."""
  return {**learning.mean_and_sem(values), "pairs": len(values)}


def record_cross_attention(model, x_t, t, cond) -> dict[str, np.ndarray]:
  """Runs ``model`` once, recording every cross-attention layer's weights ->
  {layer path: [B, heads, T, S]} (layer path like "person_unet/decoder/0/1/cross_attn")."""
  from flax import nnx  # pylint: disable=g-import-not-at-top
  from tryon_jax.models import layers, parallel_unet  # pylint: disable=g-import-not-at-top
  attn = [m for _, m in nnx.iter_modules(model) if isinstance(m, layers.CrossAttention)]
  if not attn:
    raise ValueError("the model has no cross-attention (the concat variant?)")
  if any(isinstance(m, parallel_unet.ScannedBlocks) for _, m in nnx.iter_modules(model)):
    raise ValueError("model.scan_blocks=True: the probe records each block's layer unrolled; "
                     "run it with model.scan_blocks=False")
  for m in attn:
    m.record_weights = True
  _, recorded = nnx.capture(model, nnx.Intermediate)(x_t, t, cond)
  out = {}
  for path, var in nnx.to_flat_state(recorded):
    out["/".join(str(p) for p in path[:-1])] = np.asarray(var.get_value()[0])
  return out


def main(argv: Sequence[str] | None = None) -> dict:
  probe, args = parse_args(argv)
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from tryon_jax.diffusion import conditioning, schedules  # pylint: disable=g-import-not-at-top
  from tryon_jax.train import loop  # pylint: disable=g-import-not-at-top
  from tryon_jax.train import state as state_lib  # pylint: disable=g-import-not-at-top
  # The run first: a workdir without one fails here, not after prepare_data has made a data set.
  # (The probe trains nothing, so the config needs no training records.)
  config = learning.make_config("parallel", args, train_glob="")
  spec, step, state = loop.restore_state(config, f"{args.workdir}/parallel",
                                        probe.checkpoint_step)
  data = learning.prepare_data(args)
  batch, masks = learning.eval_batch(config, data, args.eval_split, args.num_test)
  inputs = learning.model_inputs(batch)
  key_cond, key_noise = jax.random.split(jax.random.key(probe.seed))
  x0 = jnp.asarray(batch["person"], jnp.float32)
  tb = jnp.full((x0.shape[0],), probe.t)
  x_t = schedules.make_schedule(config.diffusion).add_noise(
      x0, jax.random.normal(key_noise, x0.shape), tb)
  with jax.set_mesh(spec.mesh):
    cond = conditioning.inference_cond(inputs, key_cond, config)
    weights = record_cross_attention(state_lib.ema_model(spec, state), x_t, tb, cond)

  # I_c is the garment times its mask, black elsewhere ([-1, -1, -1] here).
  cloth_masks = np.any(np.asarray(batch["garment"]) > -1 + 1e-3, axis=-1)
  fits = [keypoint_affine(p, g, pm * gm) for p, g, pm, gm in zip(
      batch["person_pose"], batch["garment_pose"], batch["person_pose_mask"],
      batch["garment_pose_mask"])]
  result = {"command": "python -m benchmarks.learning_attention "
                       + " ".join(sys.argv[1:] if argv is None else argv),
            "workdir": args.workdir, "step": int(step), "t": probe.t, "radius": probe.radius,
            "min_shift": probe.min_shift, "expected": probe.expected,
            "num_pairs": len(masks), "layers": {}}
  maps = (None if probe.expected == "keypoint_affine"
          else learning_copy_pairs.pose_maps(config, batch, probe.expected))
  for name, w in sorted(weights.items()):
    side = int(round(np.sqrt(w.shape[-1])))
    centres = token_centres(side)
    if maps is None:
      expected = [np.concatenate([centres, np.ones((len(centres), 1))], 1) @ a for a, _ in fits]
    else:
      expected = list(learning_copy_pairs.mapped_places(maps, side).reshape(len(fits), -1, 2))
    queries = [pool_mask(m, side) & (np.linalg.norm(e - centres, axis=-1) >= probe.min_shift)
               for m, e in zip(masks, expected)]
    on_garment = [pool_mask(m, side) for m in cloth_masks]
    warp = [look_scores(w[i], expected[i], queries[i], probe.radius, on_garment[i])
            for i in range(len(fits))]
    same = [look_scores(w[i], centres, queries[i], probe.radius, on_garment[i])
            for i in range(len(fits))]
    n = sum(s["n"] for s in warp)
    if not n:
      raise ValueError(f"{name}: no garment token moves by --min_shift={probe.min_shift}")
    by_head = np.sum([s["near_mass_by_head"] for s in warp], axis=0) / n

    def mean(sums, key):
      return sum(s[key] for s in sums) / n

    result["layers"][name] = {
        "side": side, "heads": int(w.shape[1]), "queries": n,
        **{k: mean(warp, k) for k in ("expected_shift", "peak_mass", "garment_mass",
                                      "garment_mass_uniform", "near_mass", "near_mass_uniform",
                                      "near_mass_even_on_garment", "centroid_error",
                                      "centroid_error_uniform")},
        "near_mass_best_head": float(by_head.max()),
        "near_mass_same_place": mean(same, "near_mass"),
        "centroid_error_same_place": mean(same, "centroid_error"),
        # Pairs as the unit of uncertainty (each pair's own tokens averaged first).
        "near_minus_even_on_garment_by_pair": by_pair(
            [(s["near_mass"] - s["near_mass_even_on_garment"]) / s["n"] for s in warp if s["n"]]),
        "near_minus_same_place_by_pair": by_pair(
            [(s["near_mass"] - t["near_mass"]) / s["n"] for s, t in zip(warp, same) if s["n"]])}
  result["affine_fit_rms_tokens"] = {
      str(side): float(np.mean([rms for _, rms in fits]) * side)
      for side in sorted({v["side"] for v in result["layers"].values()})}
  text = json.dumps(result, indent=1)
  print(text)
  if probe.json:
    with open(probe.json, "w", encoding="utf-8") as f:
      f.write(text + "\n")
  return result


if __name__ == "__main__":
  main()
