"""Evaluation: FID and KID on InceptionV3 pool3 features, SSIM and PSNR."""
