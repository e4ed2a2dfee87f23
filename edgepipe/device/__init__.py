"""The device side: ``runtime.py`` runs a bundle with TensorRT + numpy only (copied into every bundle)."""
