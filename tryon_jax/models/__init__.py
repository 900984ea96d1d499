"""Networks of TryOnDiffusion: Parallel-UNet (128/256 stages) and Imagen Efficient-UNet (SR 1024)."""
