"""Data: the try-on record schema, paper preprocessing (agnostic image, segmented garment, keypoints) and the Grain pipeline.

  labels.py      parsing-label tables (VITON-HD CIHP ids, DressCode ATR ids), COCO-18 keypoint layout
  schema.py      the record (tf.train.Example without TF): serialize / parse / deserialize
  tfrecord.py    TFRecord framing with CRC checks; a checked Grain TFRecord source
  preprocess.py  I_a, I_c, square crops, keypoint normalization and flip (pure numpy)
  pipeline.py    make_train_dataset / make_eval_dataset (Grain)
  synthetic_render.py  procedural people for the synthetic set (data_pipelines.synthetic)
docs/DATA.md documents the record schema and the converters (data_pipelines/).
"""
