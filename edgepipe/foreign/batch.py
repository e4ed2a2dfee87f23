"""A foreign graph exported with its batch fixed (``yolo export`` writes batch 1 unless ``dynamic=True``): made
dynamic where that is provably the same model, refused in one line where the graph bakes its batch in.

Calibration, eval and bench feed batches of any size, so a run needs a dynamic batch axis. Many fixed-batch exports
are batch-agnostic inside (every Reshape keeps its batch as 0 or -1), and only their input and output declarations
say "1": for those, renaming the axis is enough. Others bake it into a constant (``view(1, C, -1)`` traced with
batch 1, as a static ``yolo export`` does once the exporter folds ``x.shape[0]`` into a constant): for those, each
Reshape whose constant target starts with the batch is given 0 there instead, ONNX's "copy this axis from the input"
(Reshape, allowzero=0). Neither graph is trusted untested: it runs on real samples at twice the fixed batch, and must
give each sample exactly what the original gives it at its own batch; anything else is refused with how to
re-export.
"""

from __future__ import annotations

import numpy as np

from edgepipe.errors import EdgepipeError, first_line

DYNAMIC_BATCH = "batch"


def _renamed(graph, batch: int):
    """A copy of ``graph`` whose input and outputs declare a named batch axis where they said ``batch``."""
    relaxed = type(graph)()
    relaxed.CopyFrom(graph)
    for value in [*relaxed.graph.input, *relaxed.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if dims and dims[0].HasField("dim_value") and dims[0].dim_value == batch:
            dims[0].Clear()
            dims[0].dim_param = DYNAMIC_BATCH
    del relaxed.graph.value_info[:]  # inferred intermediate shapes still say the old batch; they are optional
    return relaxed


def _reshapes_copy_the_batch(graph, batch: int) -> int:
    """Give 0 ("copy from the input") to the leading ``batch`` of every Reshape target that is a constant; how many."""
    from onnx import numpy_helper

    initializers = {tensor.name: tensor for tensor in graph.graph.initializer}
    constants = {node.output[0]: node for node in graph.graph.node if node.op_type == "Constant"}
    changed = 0
    for node in graph.graph.node:
        allowzero = any(a.name == "allowzero" and a.i for a in node.attribute)  # then 0 means a zero-size axis
        if node.op_type != "Reshape" or len(node.input) < 2 or allowzero:
            continue
        tensor = initializers.get(node.input[1])
        if tensor is None and node.input[1] in constants:
            tensor = next((a.t for a in constants[node.input[1]].attribute if a.name == "value"), None)
        if tensor is None:
            continue
        target = numpy_helper.to_array(tensor)
        if target.ndim != 1 or not len(target) or int(target[0]) != batch:
            continue
        target = target.copy()
        target[0] = 0
        # a target shared by several Reshapes is rewritten once for all of them, which the check then covers
        tensor.CopyFrom(numpy_helper.from_array(target, tensor.name))
        changed += 1
    return changed


def _run(graph, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # a graph that bakes its batch warns on every Reshape; the check says it once
    session = ort.InferenceSession(graph.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, feed)


def make_batch_dynamic(graph, input_name: str, batch: int, samples: np.ndarray, name: str):
    """(``graph`` fixed at ``batch`` with a dynamic batch axis instead, the Reshapes rewritten for it), checked on
    ``samples`` (at least 2 x batch real inputs); one line naming why when the graph's batch cannot be freed."""
    if len(samples) < 2 * batch:
        raise EdgepipeError(f"{name}: input '{input_name}' has a fixed batch of {batch}, more than half the val split "
                            f"({len(samples)} images) can check; re-export it with a dynamic batch axis")
    probe = np.ascontiguousarray(samples[:2 * batch], dtype=np.float32)
    expected = [np.concatenate(parts) for parts in zip(*(_run(graph, {input_name: probe[start:start + batch]})
                                                         for start in (0, batch)), strict=True)]
    how = ("re-export it with a dynamic batch axis (torch.onnx.export dynamic_axes={'images': {0: 'batch'}}, or "
           "`yolo export format=onnx dynamic=True`)")
    why = ""
    for rewrite_reshapes in (False, True):
        relaxed = _renamed(graph, batch)
        rewritten = _reshapes_copy_the_batch(relaxed, batch) if rewrite_reshapes else 0
        if rewrite_reshapes and not rewritten:
            break
        why = _differs(relaxed, input_name, probe, expected)
        if not why:
            return relaxed, rewritten
    raise EdgepipeError(f"{name}: input '{input_name}' has a fixed batch of {batch} that the graph bakes in ({why}); "
                        f"{how}")


def _differs(relaxed, input_name: str, probe: np.ndarray, expected: list[np.ndarray]) -> str:
    """Why ``relaxed`` at the probe's batch is not the per-sample original, or ''."""
    try:
        found = _run(relaxed, {input_name: probe})
    except Exception as exc:  # onnxruntime's Fail/RuntimeException on a Reshape whose constant holds the batch
        return first_line(exc)[:120]
    for index, (want, got) in enumerate(zip(expected, found, strict=True)):
        scale = float(np.abs(want).max()) or 1.0
        if want.shape != got.shape or not np.allclose(got, want, rtol=1e-4, atol=1e-5 * scale):
            return (f"output {index} at batch {len(probe)} is not the per-sample result: shape {list(got.shape)}, "
                    f"expected {list(want.shape)}")
    return ""
