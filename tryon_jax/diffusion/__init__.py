"""Diffusion: noise schedules, objective, noise-conditioning augmentation, classifier-free guidance, samplers, cascade."""
