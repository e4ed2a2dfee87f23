"""`edgepipe check`: offline TensorRT preflight on small hand-built ONNX graphs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import typer
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from edgepipe.check import check_model, check_onnx, has_errors
from edgepipe.cli import check as check_cli
from edgepipe.cli.main import user_errors
from edgepipe.preflight.operators import table_for

# check/doctor are not in cli/main.py's COMMANDS yet: register them with main's own error wrapper
app = typer.Typer()
app.command("check")(user_errors(check_cli.command))
app.command("noop")(lambda: None)  # two commands, so typer keeps the `check` subcommand name
runner = CliRunner()

RNG = np.random.default_rng(0)


def _conv_graph(
    extra_nodes: list[onnx.NodeProto] | None = None,
    weights: np.ndarray | None = None,
    shape: list[int | str] | None = None,
    opset: int = 13,
) -> onnx.ModelProto:
    """x[N,3,8,8] -> Conv(w) -> Relu -> (extra nodes reading 'r', last one writing 'y') -> y."""
    weights = RNG.normal(0, 0.1, size=(4, 3, 3, 3)).astype(np.float32) if weights is None else weights
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r" if extra_nodes else "y"], name="relu"),
    ] + (extra_nodes or [])
    graph = helper.make_graph(
        nodes,
        "net",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape or ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(weights, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def _qdq_nodes(zero_point: np.ndarray, scale: float = 0.05) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    nodes = [
        helper.make_node("QuantizeLinear", ["r", "s", "zp"], ["q"], name="quant"),
        helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["y"], name="dequant"),
    ]
    constants = [
        numpy_helper.from_array(np.array(scale, np.float32), "s"),
        numpy_helper.from_array(zero_point, "zp"),
    ]
    return nodes, constants


def _qdq_model(zero_point: np.ndarray, scale: float = 0.05) -> onnx.ModelProto:
    nodes, constants = _qdq_nodes(zero_point, scale)
    model = _conv_graph(nodes)
    model.graph.initializer.extend(constants)
    return model


def _rules(findings, severity: str) -> set[str]:
    return {finding.rule for finding in findings if finding.severity == severity}


def _save(model: onnx.ModelProto, tmp_path: Path, name: str = "model.onnx") -> Path:
    path = tmp_path / name
    onnx.save(model, path)
    return path


def test_clean_model_is_ready(tmp_path: Path) -> None:
    path = _save(_conv_graph(), tmp_path)
    result = runner.invoke(app, ["check", str(path), "--target", "jetson-orin-nano"])
    assert result.exit_code == 0, result.output
    assert "ready for jetson-orin-nano" in result.output
    assert not has_errors(check_onnx(path, "jetson-orin-nano", precision="int8"))


def test_unsupported_operator_fails_with_a_table(tmp_path: Path) -> None:
    unique = helper.make_node("Unique", ["r"], ["y"], name="dedupe")
    path = _save(_conv_graph([unique]), tmp_path)
    result = runner.invoke(app, ["check", str(path), "--target", "desktop-ada"])
    assert result.exit_code == 1
    assert "Unique" in result.output and "not supported" in result.output
    assert "not ready for desktop-ada" in result.output


def test_operator_support_follows_the_targets_tensorrt_version() -> None:
    # NonZero: "N" in onnx-tensorrt's 8.2/8.4 tables, "Y" from 8.5 (docs/operators.md per release branch)
    model = _conv_graph([helper.make_node("NonZero", ["r"], ["y"], name="nz")])
    nano = check_model(model, "jetson-nano")
    xavier = check_model(model, "jetson-xavier-nx")
    assert any(f.rule == "operator" and f.severity == "error" and f.node == "NonZero" for f in nano)
    assert not has_errors(xavier)
    assert not table_for("8.2").operators["NonZero"]["supported"]
    assert table_for("8.5").operators["NonZero"]["supported"]
    assert table_for("10.3").tensorrt == "10.1"  # newest table not newer than 10.3


def test_unlisted_op_is_a_warning_when_the_table_is_older_than_the_release() -> None:
    model = _conv_graph([helper.make_node("MadeUpOp", ["r"], ["y"], name="m")])
    onnx10 = check_model(model, "jetson-agx-orin")  # TensorRT 10.3, newest table 10.1
    assert any(f.node == "MadeUpOp" and f.severity == "warning" for f in onnx10)
    onnx85 = check_model(model, "jetson-xavier-nx")  # exact table
    assert any(f.node == "MadeUpOp" and f.severity == "error" for f in onnx85)


def test_custom_domain_op_needs_a_plugin() -> None:
    model = _conv_graph([helper.make_node("FusedGelu", ["r"], ["y"], name="g", domain="com.microsoft")])
    model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    findings = check_model(model, "desktop-ampere")
    assert any("custom-domain" in f.message and f.severity == "error" for f in findings)


def test_asymmetric_qdq_is_refused(tmp_path: Path) -> None:
    path = _save(_qdq_model(np.array(3, np.int8)), tmp_path)
    result = runner.invoke(app, ["check", str(path), "--target", "jetson-orin-nx", "--json"])
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert report["ready"] is False
    messages = [f["message"] for f in report["findings"] if f["rule"] == "qdq" and f["severity"] == "error"]
    assert any("zero point" in message and "asymmetric" in message for message in messages)


def test_symmetric_int8_qdq_passes_but_uint8_and_bad_scales_do_not() -> None:
    assert "qdq" not in _rules(check_model(_qdq_model(np.array(0, np.int8)), "jetson-orin-nx"), "error")
    uint8 = check_model(_qdq_model(np.array(0, np.uint8)), "jetson-orin-nx")
    assert any("uint8" in f.message for f in uint8 if f.severity == "error")
    negative = check_model(_qdq_model(np.array(0, np.int8), scale=-0.1), "jetson-orin-nx")
    assert any("positive" in f.message for f in negative if f.severity == "error")


def test_qdq_model_on_a_target_without_int8() -> None:
    findings = check_model(_qdq_model(np.array(0, np.int8)), "jetson-nano")
    assert any(f.rule == "precision" and f.severity == "error" and "INT8" in f.message for f in findings)


def test_per_channel_weight_axis_must_be_the_output_channel() -> None:
    def model_with_axis(axis: int) -> onnx.ModelProto:
        weights = RNG.integers(-127, 127, size=(4, 3, 3, 3)).astype(np.int8)
        channels = weights.shape[axis]
        dequant = helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["w_deq"], name="w_dq", axis=axis)
        conv = helper.make_node("Conv", ["x", "w_deq"], ["y"], name="conv", pads=[1, 1, 1, 1])
        graph = helper.make_graph(
            [dequant, conv],
            "net",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
            [
                numpy_helper.from_array(weights, "wq"),
                numpy_helper.from_array(np.full(channels, 0.01, np.float32), "ws"),
                numpy_helper.from_array(np.zeros(channels, np.int8), "wz"),
            ],
        )
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])

    assert not has_errors(check_model(model_with_axis(0), "jetson-agx-orin"))
    wrong = check_model(model_with_axis(1), "jetson-agx-orin")
    assert any("output-channel axis 0" in f.message and f.severity == "error" for f in wrong)


def test_dynamic_non_batch_axis_is_an_error(tmp_path: Path) -> None:
    path = _save(_conv_graph(shape=["N", 3, "height", 8]), tmp_path)
    result = runner.invoke(app, ["check", str(path), "--target", "desktop-hopper"])
    assert result.exit_code == 1
    assert "axis 2 is dynamic" in result.output
    batch_only = check_model(_conv_graph(shape=["N", 3, 8, 8]), "desktop-hopper")
    assert "dynamic-axes" in _rules(batch_only, "info") and not has_errors(batch_only)


def test_fp16_overflowing_initializer(tmp_path: Path) -> None:
    weights = RNG.normal(0, 0.1, size=(4, 3, 3, 3)).astype(np.float32)
    weights[0, 0, 0, 0] = 1.0e6
    path = _save(_conv_graph(weights=weights), tmp_path)
    fp16 = runner.invoke(app, ["check", str(path), "--target", "desktop-ampere", "--precision", "fp16"])
    assert fp16.exit_code == 1
    assert "65504" in fp16.output
    undecided = check_model(_conv_graph(weights=weights), "desktop-ampere")
    assert "fp16-range" in _rules(undecided, "warning") and not has_errors(undecided)
    fp32 = check_model(_conv_graph(weights=weights), "desktop-ampere", precision="fp32")
    assert not any(f.rule == "fp16-range" for f in fp32)


def test_tiny_weights_that_flush_to_zero_in_fp16() -> None:
    weights = np.full((4, 3, 3, 3), 1e-9, np.float32)
    findings = check_model(_conv_graph(weights=weights), "desktop-ampere", precision="fp16")
    assert any(f.rule == "fp16-range" and "flush" in f.message and f.severity == "warning" for f in findings)


def test_dla_rules(tmp_path: Path) -> None:
    sine = helper.make_node("Sin", ["r"], ["y"], name="sine")
    static = _save(_conv_graph([sine], shape=[1, 3, 8, 8]), tmp_path, "static.onnx")
    findings = check_onnx(static, "jetson-agx-orin", dla=True, precision="fp16")
    assert any(f.rule == "dla" and f.severity == "warning" and "Sin" in f.message for f in findings)
    assert not has_errors(findings)
    assert has_errors(check_onnx(static, "jetson-agx-orin", dla=True, precision="fp32"))
    # DLA needs static shapes: a dynamic batch works only when built with min=opt=max
    dynamic = check_model(_conv_graph(shape=["N", 3, 8, 8]), "jetson-agx-orin", dla=True)
    assert any(f.rule == "dynamic-axes" and "min=opt=max" in f.message for f in dynamic if f.severity == "warning")
    dynamic_height = check_model(_conv_graph(shape=[1, 3, "H", 8]), "jetson-agx-orin", dla=True)
    assert "dynamic-axes" in _rules(dynamic_height, "error")
    # Softmax is a DLA layer on Orin only
    softmax = _conv_graph([helper.make_node("Softmax", ["r"], ["y"], name="sm")], shape=[1, 3, 8, 8])
    assert any("needs Orin" in f.message for f in check_model(softmax, "jetson-xavier-nx", dla=True))
    assert not any("needs Orin" in f.message for f in check_model(softmax, "jetson-agx-orin", dla=True))


def test_dla_on_a_target_without_dla_is_a_user_error(tmp_path: Path) -> None:
    path = _save(_conv_graph(shape=[1, 3, 8, 8]), tmp_path)
    result = runner.invoke(app, ["check", str(path), "--target", "jetson-orin-nano", "--dla"])
    assert result.exit_code == 2
    assert "jetson-orin-nano has no DLA" in result.output


def test_opset_newer_than_the_parser_documents_is_a_warning() -> None:
    findings = check_model(_conv_graph(opset=17), "jetson-nano")  # TensorRT 8.2 documents up to opset 13
    assert "opset" in _rules(findings, "warning")


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["MISSING", "--target", "jetson-nano"], "no ONNX file at"),
        (["NOT_ONNX", "--target", "jetson-nano"], "is not a readable ONNX model"),
        (["MODEL", "--target", "jetson-tx2"], "unknown target 'jetson-tx2'; known targets: jetson-nano"),
        (["MODEL", "--target", "jetson-nano", "--precision", "int8"], "cannot run int8"),
    ],
)
def test_bad_input_is_one_line_exit_2(tmp_path: Path, arguments: list[str], expected: str) -> None:
    model_path = _save(_conv_graph(), tmp_path)
    not_onnx = tmp_path / "notes.onnx"
    not_onnx.write_text("this is not a protobuf\n")
    paths = {"MISSING": str(tmp_path / "absent.onnx"), "NOT_ONNX": str(not_onnx), "MODEL": str(model_path)}
    result = runner.invoke(app, ["check", paths[arguments[0]], *arguments[1:]])
    assert result.exit_code == 2
    assert expected in result.output
    assert "Traceback" not in result.output
    assert len([line for line in result.output.splitlines() if line.startswith("error:")]) == 1


def _low_precision_model(kind: str) -> onnx.ModelProto:
    """The conv net with an FP8 Q/DQ pair on its output (Model Optimizer's FP8 form) or FP4 weights (NVFP4)."""
    if kind == "fp8":
        zero = helper.make_tensor("zp", TensorProto.FLOAT8E4M3FN, [], [0.0])
        nodes, _ = _qdq_nodes(np.zeros((), np.int8))
        model = _conv_graph(nodes, opset=19)
        model.graph.initializer.extend([numpy_helper.from_array(np.array(0.05, np.float32), "s"), zero])
        return model
    model = _conv_graph(opset=23)
    model.graph.initializer.append(helper.make_tensor("w4", TensorProto.FLOAT4E2M1, [2], [0.5, 1.0]))
    return model


@pytest.mark.parametrize(("target", "kind", "refused"), [
    ("jetson-agx-orin", "fp8", True), ("jetson-orin-nano", "fp4", True), ("desktop-ampere", "fp8", True),
    ("desktop-hopper", "fp4", True), ("desktop-hopper", "fp8", False), ("jetson-thor", "fp4", False),
    ("desktop-blackwell", "fp8", False),
])
def test_fp8_and_fp4_models_are_refused_where_the_tensor_cores_lack_them(target, kind, refused) -> None:
    findings = check_model(_low_precision_model(kind), target)
    low = [f for f in findings if f.rule == "precision" and f.node == kind]
    assert bool(low) is refused, findings
    if refused:
        assert low[0].severity == "error" and f"no {kind.upper()} tensor cores" in low[0].message
    assert not any(f.rule == "qdq" for f in findings)  # an FP8 zero point is not a bad INT8 one
