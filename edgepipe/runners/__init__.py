"""Backends behind one small contract: open/close (context manager), ``input_spec``, ``infer(batch)``."""

from edgepipe.runners.base import Runner, TensorSpec, infer_in_batches

__all__ = ["Runner", "TensorSpec", "infer_in_batches"]
