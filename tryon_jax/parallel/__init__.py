"""Parallelism: the device mesh and logical-axis sharding rules. Sharding decisions live here and nowhere else."""
