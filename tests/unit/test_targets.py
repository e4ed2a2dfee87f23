"""Target profiles: the facts the rest of edgepipe refuses or resolves requests with."""

from __future__ import annotations

import pytest

from edgepipe.errors import EdgepipeError
from edgepipe.targets import (
    TargetProfile,
    get_target,
    list_targets,
    parse_version,
    require_dla,
    resolve_precision,
)

EXPECTED = {
    # name: (compute capability, precisions, DLA cores, sparse tensor cores, TensorRT min)
    "jetson-nano": ((5, 3), {"fp32", "fp16"}, 0, False, "8.0"),
    "jetson-xavier-nx": ((7, 2), {"fp32", "fp16", "int8"}, 2, False, "8.0"),
    "jetson-orin-nano": ((8, 7), {"fp32", "fp16", "int8"}, 0, True, "8.5"),
    "jetson-orin-nx": ((8, 7), {"fp32", "fp16", "int8"}, 2, True, "8.5"),
    "jetson-agx-orin": ((8, 7), {"fp32", "fp16", "int8"}, 2, True, "8.4"),
    "jetson-thor": ((11, 0), {"fp32", "fp16", "int8", "fp8", "fp4"}, 0, True, "10.13"),
    "desktop-ampere": ((8, 6), {"fp32", "fp16", "int8"}, 0, True, "8.6"),
    "desktop-ada": ((8, 9), {"fp32", "fp16", "int8", "fp8"}, 0, True, "8.6"),
    "desktop-hopper": ((9, 0), {"fp32", "fp16", "int8", "fp8"}, 0, True, "8.6"),
    "desktop-blackwell": ((12, 0), {"fp32", "fp16", "int8", "fp8", "fp4"}, 0, True, "10.8"),
}


def test_every_expected_profile_exists_with_its_facts() -> None:
    assert [profile.name for profile in list_targets()] == list(EXPECTED)
    for name, (capability, precisions, dla, sparse, trt_min) in EXPECTED.items():
        profile = get_target(name)
        assert profile.compute_capability == capability, name
        assert profile.precisions == frozenset(precisions), name
        assert profile.dla_cores == dla, name
        assert profile.sparse_tensor_cores is sparse, name
        assert profile.tensorrt_min == trt_min, name


def test_profiles_are_frozen_and_sourced() -> None:
    for profile in list_targets():
        assert isinstance(profile, TargetProfile)
        assert profile.sources, f"{profile.name} has no sources"
        assert profile.memory_mib > 0
        assert parse_version(profile.tensorrt_min) <= parse_version(profile.tensorrt_max)
        assert (profile.kind == "jetson") == (profile.jetpack is not None)
    with pytest.raises(AttributeError):
        get_target("jetson-nano").dla_cores = 2  # type: ignore[misc]


def test_every_jetpack_a_module_runs_is_in_its_profile() -> None:
    nano, xavier, orin = get_target("jetson-nano"), get_target("jetson-xavier-nx"), get_target("jetson-agx-orin")
    assert [(r.jetpack, r.tensorrt, r.python) for r in nano.releases] == [("4.6", "8.0.1", "3.6"),
                                                                          ("4.6.1", "8.2.1", "3.6")]
    assert [r.tensorrt for r in xavier.releases][-1] == "8.5.2" and xavier.release_for("8.5.2.2").python == "3.8"
    assert [r.jetpack for r in orin.releases] == ["5.0.2", "5.1", "6.0", "6.1", "7.2", "7.2.2"]
    for version in ("8.4.1", "8.5.2", "8.6.2", "10.3.0", "10.16.0", "11.4.1"):
        assert orin.supports_tensorrt(version), version
    assert not orin.supports_tensorrt("10.13.0") and not nano.supports_tensorrt("8.5.2")
    # JetPack 7.0/7.1 are Thor-only; 7.2 brings Orin along (TensorRT 10.16), 7.2.2 TensorRT 11.4.1
    thor = get_target("jetson-thor")
    assert [(r.jetpack, r.tensorrt) for r in thor.releases] == [("7.0", "10.13.3"), ("7.2", "10.16.0"),
                                                                ("7.2.2", "11.4.1")]
    assert thor.release_for("10.13.3.9").cuda == "13.0" and thor.dla_cores == 0
    assert all(r.jetpack == "7.2" for r in get_target("jetson-orin-nano").releases if r.tensorrt.startswith("10.16"))
    for desktop in ("desktop-ampere", "desktop-ada", "desktop-hopper", "desktop-blackwell"):
        assert get_target(desktop).supports_tensorrt("11.4.0.106"), desktop
    # Bundles are made and preflighted for the profile's named release; desktops have no JetPack.
    assert orin.jetpack == "6.1" and orin.default_release.tensorrt == "10.3.0" and orin.checked_tensorrt == "10.3.0"
    assert get_target("desktop-ampere").releases == () and get_target("desktop-ampere").checked_tensorrt == "8.6"


def test_unknown_target_lists_the_known_ones() -> None:
    with pytest.raises(EdgepipeError) as caught:
        get_target("jetson-tx2")
    message = str(caught.value)
    assert "jetson-tx2" in message
    for name in EXPECTED:
        assert name in message
    assert "\n" not in message


def test_best_precision_is_int8_where_supported_and_fp16_on_the_nano() -> None:
    precision, reason = resolve_precision(get_target("jetson-orin-nano"), "best")
    assert precision == "int8"
    assert "jetson-orin-nano" in reason
    precision, reason = resolve_precision(get_target("jetson-nano"), "best")
    assert precision == "fp16"
    assert "no int8" in reason and "\n" not in reason


def test_explicit_precision_is_kept_or_refused_with_what_is_supported() -> None:
    assert resolve_precision(get_target("desktop-ada"), "FP16")[0] == "fp16"
    with pytest.raises(EdgepipeError, match=r"jetson-nano .*cannot run int8; it supports fp16, fp32"):
        resolve_precision(get_target("jetson-nano"), "int8")
    with pytest.raises(EdgepipeError, match="unknown precision 'int4'"):
        resolve_precision(get_target("jetson-nano"), "int4")


def test_dla_requests_are_checked_against_the_core_count() -> None:
    require_dla(get_target("jetson-agx-orin"), 1)
    with pytest.raises(EdgepipeError, match="jetson-orin-nano has no DLA"):
        require_dla(get_target("jetson-orin-nano"), 0)
    with pytest.raises(EdgepipeError, match="2 DLA core"):
        require_dla(get_target("jetson-xavier-nx"), 2)


def test_tensorrt_range() -> None:
    nano = get_target("jetson-nano")
    assert nano.supports_tensorrt("8.2.1.8")
    assert not nano.supports_tensorrt("8.5.2")
    assert parse_version("8.6.2-1+cuda12.2") == (8, 6, 2)
    assert get_target("jetson-agx-orin").sm == "sm_87"


def test_targets_command_lists_every_profile_with_sources() -> None:
    import json

    import typer
    from typer.testing import CliRunner

    from edgepipe.cli import targets as targets_cli
    from edgepipe.cli.main import user_errors

    app = typer.Typer()
    app.command("targets")(user_errors(targets_cli.command))
    app.command("noop")(lambda: None)
    runner = CliRunner()
    table = runner.invoke(app, ["targets"], env={"COLUMNS": "80"})
    assert table.exit_code == 0, table.output
    assert "jetson-orin-nano" in table.output and "sm_87" in table.output
    # readable on an 80-column terminal: nothing cut to "…", every line fits
    lines = table.output.splitlines()
    assert "…" not in table.output and max(len(line) for line in lines) <= 80, table.output
    thor = next(line for line in lines if line.lstrip().startswith("jetson-thor"))
    assert thor.split() == ["jetson-thor", "sm_110", "int8,fp16,fp8,fp4", "0", "yes", "128", "10.13–11.4",
                            "7.0–7.2.2"]
    listed = json.loads(runner.invoke(app, ["targets", "--json"]).output)
    assert [row["name"] for row in listed] == list(EXPECTED)
    nano = listed[0]
    assert nano["precisions"] == ["fp16", "fp32"] and nano["compute_capability"] == [5, 3]
    assert all(row["sources"] for row in listed)


@pytest.mark.parametrize(("target", "precision", "expected"), [
    ("jetson-agx-orin", "fp8", "jetson-agx-orin (sm_87) cannot run fp8: its tensor cores have no FP8"),
    ("jetson-orin-nano", "fp4", "jetson-orin-nano (sm_87) cannot run fp4"),
    ("desktop-ampere", "fp8", "desktop-ampere (sm_86) cannot run fp8"),
    ("desktop-hopper", "fp4", "desktop-hopper (sm_90) cannot run fp4"),
    ("desktop-hopper", "fp8", "desktop-hopper runs fp8, but edgepipe builds int8, fp16, fp32 only"),
    ("jetson-thor", "fp4", "jetson-thor runs fp4, but edgepipe builds int8, fp16, fp32 only"),
])
def test_fp8_and_fp4_are_refused_where_the_tensor_cores_lack_them(target, precision, expected) -> None:
    with pytest.raises(EdgepipeError) as caught:
        resolve_precision(get_target(target), precision)
    assert str(caught.value).startswith(expected) and "\n" not in str(caught.value)


def test_best_never_picks_a_precision_edgepipe_does_not_build() -> None:
    assert resolve_precision(get_target("desktop-blackwell"), "best")[0] == "int8"
    assert resolve_precision(get_target("jetson-thor"), "best")[0] == "int8"
