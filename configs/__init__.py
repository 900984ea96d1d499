"""ml_collections configs: base128, sr256, sr1024 (paper settings) and demo (tiny, CPU)."""
