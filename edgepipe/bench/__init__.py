"""Pieces of `edgepipe bench`: the machine, model complexity, peak memory, and the deployable pick.

The stage itself (timing through the runner contract, interleaved across artifacts) is stages/bench.py.
"""
