"""Diffusion: noise schedules, objective, noise-conditioning augmentation, classifier-free guidance, samplers, cascade.

Modules (all pure-functional jnp, usable inside jax.jit):
  schedules     make_schedule(config.diffusion): cosine / linear, alpha, sigma, logsnr, t sampling.
  prediction    eps / v parameterizations, (x0, eps) conversions, x0 clipping and thresholding.
  conditioning  training_cond / inference_cond: SR low-res input, noise-conditioning augmentation,
                conditioning dropout; null_cond (the unconditional branch).
  loss          diffusion_loss(model_fn, batch, key, config) -> (loss, metrics); min-SNR weighting.
  guidance      guided_model: classifier-free guidance in one batched forward pass.
  samplers      sample(...): ancestral DDPM, DDIM, DPM-Solver++(2M), one lax.fori_loop each.
  ema           ema_update(ema_tree, params_tree, decay).
  cascade       Stage / Cascade: 128 -> 256 -> 1024 inference with per-stage settings.
"""
