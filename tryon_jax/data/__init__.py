"""Data: the try-on record schema, paper preprocessing (agnostic image, segmented garment, keypoints) and the Grain pipeline."""
