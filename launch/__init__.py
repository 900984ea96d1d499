"""Launchers: XManager, GKE JobSet manifests, Docker image, Colab demo."""
