"""Pruning building blocks used by the `prune` stage.

- channel.py: structured channel pruning with torch-pruning's dependency graph (ratio or MAC target).
- replay.py: the JSON pruning history and its replay on a fresh zoo model (no unpickling on load).
- sparsity24.py: 2:4 semi-structured masks, mask-preserving fine-tuning, verification on ONNX weights.
- measure.py: MACs/params and side-by-side onnxruntime latency of the unpruned and pruned models.
"""
