"""Command-line flags of ``--mode=tryon`` and ``--mode=eval`` (tryon_jax.main imports this module
so that absl knows them) and the plain options objects the runners take, so that the runners can
also be called from Python without flags.

  --mode=tryon --person IMG --person_parse PNG --person_pose JSON --garment IMG
               (--garment_mask IMG | --garment_parse PNG) [--garment_pose JSON]
               | --records GLOB [--pairs FILE]
               --ckpt_base128 DIR [--ckpt_sr256 DIR [--ckpt_sr1024 DIR]] --out DIR
  --mode=eval  --workdir DIR --records GLOB [--pairs FILE | --unpaired] [--ckpt_* DIR ...]

Sampler, steps and guidance weight take one value for every stage or one per stage (in cascade
order); unset, each stage uses its checkpoint config's (the paper's) values. Batch size and seed
default to ``config.inference``.
"""

from __future__ import annotations

import dataclasses

from absl import flags

_STAGES = ("base128", "sr256", "sr1024")

PERSON = flags.DEFINE_string("person", None, "--mode=tryon: person photo (JPEG/PNG).")
PERSON_PARSE = flags.DEFINE_string(
    "person_parse", None, "--mode=tryon: the person's parse map, a label-id PNG the photo's size "
    "(VITON-HD image-parse-v3 ids unless --label_set says otherwise).")
PERSON_POSE = flags.DEFINE_string("person_pose", None,
                                  "--mode=tryon: the person's OpenPose JSON (BODY_25 or COCO-18).")
GARMENT = flags.DEFINE_string("garment", None,
                              "--mode=tryon: garment photo (lay-flat, or worn by someone).")
GARMENT_MASK = flags.DEFINE_string("garment_mask", None,
                                   "--mode=tryon: garment mask (255 = garment), the photo's size.")
GARMENT_PARSE = flags.DEFINE_string(
    "garment_parse", None, "--mode=tryon: parse map of a worn garment's photo (instead of "
    "--garment_mask); the label set's garment ids are the garment.")
GARMENT_POSE = flags.DEFINE_string(
    "garment_pose", None, "--mode=tryon: OpenPose JSON of the person wearing the garment "
    "(omit for lay-flat garments).")
LABEL_SET = flags.DEFINE_string("label_set", "viton_hd",
                                "--mode=tryon: parse-map ids (tryon_jax/data/labels.py).")
RECORDS = flags.DEFINE_string("records", None,
                              "tryon/eval: glob of converted records (.tfrecord/.array_record).")
PAIRS = flags.DEFINE_string(
    "pairs", None, "tryon/eval: lines 'person garment' (ids or file names) pairing --records; "
    "default: each record with its own garment.")
UNPAIRED = flags.DEFINE_boolean(
    "unpaired", False, "--mode=eval without --pairs: person i wears record i+1's garment.")
CKPT = {s: flags.DEFINE_string(f"ckpt_{s}", None, f"tryon/eval: the {s} stage: a training "
                               "workdir, its checkpoints/ folder or a checkpoints/<step> folder.")
        for s in _STAGES}
SAMPLER = flags.DEFINE_list("sampler", [], "tryon/eval: ddpm|ddim|dpmpp_2m, one or one per stage.")
STEPS = flags.DEFINE_list("steps", [], "tryon/eval: sampler steps, one or one per stage.")
GUIDANCE = flags.DEFINE_list("guidance_weight", [],
                             "tryon/eval: classifier-free guidance weight, one or one per stage.")
SEED = flags.DEFINE_integer("seed", None, "tryon/eval: sampling seed (default config.inference).")
BATCH_SIZE = flags.DEFINE_integer("batch_size", None,
                                  "tryon/eval: pairs per batch (default config.inference).")
OUT = flags.DEFINE_string("out", None, "--mode=tryon: folder for the output PNGs.")
SAVE_STAGES = flags.DEFINE_boolean("save_stages", False,
                                   "--mode=tryon: also write every stage's output.")
PASTE_BACK = flags.DEFINE_boolean(
    "paste_back", False, "--mode=tryon with photo inputs: also write the try-on pasted back "
    "into the original photo (<id>.full.png).")
EVAL_NAME = flags.DEFINE_string("eval_name", None,
                                "--mode=eval: results go to WORKDIR/eval/<name>.json.")
MAX_EXAMPLES = flags.DEFINE_integer("max_examples", None,
                                    "--mode=eval: evaluate the first N pairs only.")
INCEPTION = flags.DEFINE_string(
    "inception_weights", None, "--mode=eval: InceptionV3 .npz for FID/KID "
    "(default config.inference.inception_weights; FID/KID are skipped without it).")


class OptionError(ValueError):
  """A flag value that cannot be used; the message names the flag."""


@dataclasses.dataclass
class SamplingOptions:
  """What both modes share: stages, sampler overrides, seed, batch size."""
  ckpt: dict[str, str] = dataclasses.field(default_factory=dict)  # stage name -> path
  samplers: list[str | None] = dataclasses.field(default_factory=list)
  steps: list[int | None] = dataclasses.field(default_factory=list)
  guidance_weights: list[float | None] = dataclasses.field(default_factory=list)
  seed: int | None = None
  batch_size: int | None = None

  def check(self, num_stages: int) -> None:
    """Per-stage lists hold nothing (checkpoint values) or one entry per stage."""
    for flag, values in (("sampler", self.samplers), ("steps", self.steps),
                         ("guidance_weight", self.guidance_weights)):
      if values and len(values) != num_stages:
        raise OptionError(f"--{flag}: {len(values)} values for {num_stages} stages; give one "
                          "value or one per stage")


@dataclasses.dataclass
class TryOnOptions(SamplingOptions):
  person: str | None = None
  person_parse: str | None = None
  person_pose: str | None = None
  garment: str | None = None
  garment_mask: str | None = None
  garment_parse: str | None = None
  garment_pose: str | None = None
  label_set: str = "viton_hd"
  records: str | None = None
  pairs: str | None = None
  out: str | None = None
  save_stages: bool = False
  paste_back: bool = False


@dataclasses.dataclass
class EvalOptions(SamplingOptions):
  records: str | None = None
  pairs: str | None = None
  unpaired: bool = False
  name: str | None = None
  max_examples: int | None = None
  inception_weights: str | None = None


def per_stage(values: list[str], num_stages: int, flag: str, cast) -> list:
  """One value for all stages, or one per stage; each cast (int/float/str)."""
  if not values:
    return [None] * num_stages
  if len(values) == 1:
    values = values * num_stages
  if len(values) != num_stages:
    raise OptionError(f"--{flag}: {len(values)} values for {num_stages} stages; give one value "
                      "or one per stage")
  try:
    return [cast(v) for v in values]
  except ValueError:
    raise OptionError(f"--{flag}: cannot read {values} as {cast.__name__}") from None


def _sampling_from_flags() -> dict:
  ckpt = {s: f.value for s, f in CKPT.items() if f.value}
  n = max(len(ckpt), 1)
  return dict(ckpt=ckpt, samplers=per_stage(SAMPLER.value, n, "sampler", str),
              steps=per_stage(STEPS.value, n, "steps", int),
              guidance_weights=per_stage(GUIDANCE.value, n, "guidance_weight", float),
              seed=SEED.value, batch_size=BATCH_SIZE.value)


def tryon_from_flags() -> TryOnOptions:
  return TryOnOptions(
      **_sampling_from_flags(), person=PERSON.value, person_parse=PERSON_PARSE.value,
      person_pose=PERSON_POSE.value, garment=GARMENT.value, garment_mask=GARMENT_MASK.value,
      garment_parse=GARMENT_PARSE.value, garment_pose=GARMENT_POSE.value,
      label_set=LABEL_SET.value, records=RECORDS.value, pairs=PAIRS.value, out=OUT.value,
      save_stages=SAVE_STAGES.value, paste_back=PASTE_BACK.value)


def eval_from_flags() -> EvalOptions:
  return EvalOptions(
      **_sampling_from_flags(), records=RECORDS.value, pairs=PAIRS.value, unpaired=UNPAIRED.value,
      name=EVAL_NAME.value, max_examples=MAX_EXAMPLES.value, inception_weights=INCEPTION.value)
