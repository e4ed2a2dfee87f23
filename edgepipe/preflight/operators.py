"""ONNX operators against the TensorRT ONNX parser's own support matrix.

The table (onnx_tensorrt_operators.json) is onnx-tensorrt's docs/operators.md parsed per release
branch, each with the commit it came from. For a TensorRT release newer than the newest table, the
newest table is used and an op it does not list is a warning, not an error: it may have been added since.
"""

from __future__ import annotations

import functools
import json
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources

import onnx

from edgepipe.preflight import Finding
from edgepipe.targets import parse_version

DEFAULT_DOMAINS = ("", "ai.onnx")


@dataclass(frozen=True)
class OperatorTable:
    tensorrt: str  # the release the table documents ("8.6")
    source: str
    verified: bool
    opset_min: int | None
    opset_max: int
    operators: dict[str, dict]


@functools.cache
def _tables() -> dict[str, OperatorTable]:
    text = resources.files("edgepipe.preflight").joinpath("onnx_tensorrt_operators.json").read_text("utf-8")
    data = json.loads(text)["versions"]
    return {
        version: OperatorTable(
            tensorrt=version,
            source=entry["source"],
            verified=entry["verified"],
            opset_min=entry["opset_min"],
            opset_max=entry["opset_max"],
            operators=entry["operators"],
        )
        for version, entry in data.items()
    }


def known_table_versions() -> list[str]:
    return sorted(_tables(), key=parse_version)


def table_for(tensorrt_version: str) -> OperatorTable:
    """The newest table not newer than `tensorrt_version` (major.minor); the oldest one below that."""
    wanted = parse_version(tensorrt_version)[:2]
    versions = known_table_versions()
    eligible = [version for version in versions if parse_version(version) <= wanted]
    return _tables()[eligible[-1] if eligible else versions[0]]


def iter_nodes(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
    """Every node, including those inside If/Loop/Scan bodies (the parser imports those too)."""
    for node in graph.node:
        yield node
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                yield from iter_nodes(attribute.g)
            elif attribute.type == onnx.AttributeProto.GRAPHS:
                for subgraph in attribute.graphs:
                    yield from iter_nodes(subgraph)


def default_opset(model: onnx.ModelProto) -> int | None:
    for opset in model.opset_import:
        if opset.domain in DEFAULT_DOMAINS:
            return opset.version
    return None


def _names(nodes: list[str]) -> str:
    shown = ", ".join(nodes[:3])
    return shown + (f" (+{len(nodes) - 3} more)" if len(nodes) > 3 else "")


def check_operators(model: onnx.ModelProto, tensorrt_version: str) -> list[Finding]:
    """One finding per op type the parser of `tensorrt_version` rejects, flags, or restricts."""
    table = table_for(tensorrt_version)
    wanted = parse_version(tensorrt_version)[:2]
    exact = parse_version(table.tensorrt)[:2] == wanted
    where = f"TensorRT {table.tensorrt} ONNX parser"
    findings: list[Finding] = []
    if not exact:
        findings.append(
            Finding(
                "info",
                "operator",
                f"no operator table for TensorRT {tensorrt_version}; using the one for {table.tensorrt} "
                f"({table.source}); ops added since are reported as warnings",
            )
        )
    if not table.verified:
        findings.append(Finding("warning", "operator", f"operator table source unverified: {table.source}"))

    opset = default_opset(model)
    if opset is not None and opset > table.opset_max:
        findings.append(
            Finding(
                "warning",
                "opset",
                f"model uses opset {opset}; the {where} documents opsets up to {table.opset_max}: "
                f"re-export with opset {table.opset_max} if parsing fails",
            )
        )
    if opset is not None and table.opset_min is not None and opset < table.opset_min:
        findings.append(
            Finding(
                "error",
                "opset",
                f"model uses opset {opset}; the {where} needs opset {table.opset_min} or newer: re-export",
            )
        )

    by_op: dict[tuple[str, str], list[str]] = defaultdict(list)
    for index, node in enumerate(iter_nodes(model.graph)):
        by_op[(node.domain, node.op_type)].append(node.name or f"{node.op_type}#{index}")

    for (domain, op_type), nodes in sorted(by_op.items()):
        label = f"{op_type} ×{len(nodes)}: {_names(nodes)}"
        if domain not in DEFAULT_DOMAINS:
            findings.append(
                Finding(
                    "error",
                    "operator",
                    f"{domain}::{op_type} is a custom-domain op; the {where} needs a TensorRT plugin for it "
                    f"({label})",
                    node=op_type,
                )
            )
            continue
        entry = table.operators.get(op_type)
        if entry is None:
            severity = "error" if exact else "warning"
            findings.append(
                Finding(
                    severity, "operator", f"{op_type} is not in the {where} support matrix ({label})", op_type
                )
            )
        elif not entry["supported"]:
            findings.append(
                Finding("error", "operator", f"{op_type} is not supported by the {where} ({label})", op_type)
            )
        else:
            if entry.get("experimental"):
                findings.append(
                    Finding(
                        "warning", "operator", f"{op_type} is experimental in the {where} ({label})", op_type
                    )
                )
            if entry.get("restrictions"):
                findings.append(
                    Finding("info", "operator", f"{op_type}: {entry['restrictions']} ({where})", op_type)
                )
    return findings
