"""Inference: cascade try-on from user inputs (person + garment photos, parse maps, keypoints) with trained checkpoints."""
