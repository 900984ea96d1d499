"""Training: train state, the pure jitted train step, Orbax checkpoints and the training loop."""
