"""`edgepipe pipeline RECIPE`: every stage the recipe asks for, in order, skipping those already up to date."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgepipe.artifacts import write_bytes_atomic
from edgepipe.errors import EdgepipeError
from edgepipe.progress import say
from edgepipe.recipe import Recipe, is_onnx_file, load_recipe
from edgepipe.report import write_report
from edgepipe.run import EXPORT_NAMES, EXPORT_PRUNED, ONNX_ORIGIN_NEEDS_TORCH, TIMING_CACHE, RunLayout
from edgepipe.rundir import check_run_out, run_lock
from edgepipe.trust import is_import_path, trusting


def _quantize_config(recipe: Recipe):
    """The recipe's quantize section with its defaults filled from the rest of the recipe."""
    config = recipe.quantize
    update: dict[str, Any] = {}
    if recipe.target and "tensorrt_version" not in config.model_fields_set:
        from edgepipe.targets import get_target

        # The cache header names it (and build rewrites it to the release running on the device).
        profile = get_target(recipe.target)
        release = profile.default_release
        update["tensorrt_version"] = release.tensorrt if release is not None else profile.tensorrt_max
    return config.model_copy(update=update)


def _build_engines(out: Path, recipe: Recipe) -> None:
    """TensorRT engines where TensorRT and a GPU exist; elsewhere one line, and the CPU artifacts carry on."""
    from edgepipe.errors import MissingDependency
    from edgepipe.stages.build import build

    try:
        build(out, None, recipe.build, target=recipe.target, timing_cache=out / TIMING_CACHE)
    except MissingDependency as exc:
        say(f"[yellow]build skipped: {exc}[/yellow]")


def finish_report(run_dir: Path, recipe: Recipe, *, fresh_process: bool = True) -> dict[str, Any]:
    """The pipeline's last word: bench when the recipe has a bench: section, then report.md and report.png through
    the report writer; says the deployable pick.

    ``fresh_process``: bench as ``edgepipe bench RUN --settings FILE`` in a child Python (which hands its result to
    the same writer), so timings start from a fresh interpreter rather than one whose thread pools and allocator
    were just used for training. (PyTorch eager is also very sensitive to other processes on the same cores: its
    OpenMP threads wait on each other; report.md warns about load.)
    """
    from edgepipe.report import read_report, write_report

    run_dir = Path(run_dir)
    config = recipe.bench
    if config is None:
        report = write_report(run_dir)
    elif fresh_process:
        _bench_in_a_fresh_process(run_dir, config)
        report = read_report(run_dir)
    else:
        from edgepipe.stages.bench import bench

        report = write_report(run_dir, bench=bench(run_dir, config))
    for target, pick in (report.get("bench") or {}).get("deployable", {}).items():
        say(f"deploy on {target}: {pick['reason']}")
    return report


def _bench_in_a_fresh_process(run_dir: Path, config) -> None:
    """``edgepipe bench RUN --settings FILE`` in a child Python; its settings travel as a typed file (JSON)."""
    import subprocess

    from edgepipe.artifacts import write_json_atomic
    from edgepipe.child import python_module_argv
    from edgepipe.rundir import scratch_dir

    with scratch_dir(run_dir / "bench") as scratch:  # inside the run: a kill leaves nothing outside it
        settings = scratch / "bench.settings.json"
        write_json_atomic(settings, config.model_dump(mode="json"))
        done = subprocess.run(python_module_argv("edgepipe", "bench", str(run_dir.resolve()), "--settings",
                                                 str(settings)), check=False, stdout=subprocess.DEVNULL)
    if done.returncode != 0:
        raise EdgepipeError(f"bench of {run_dir} failed (exit {done.returncode}; its message is above)")


def check_recipe(recipe: Recipe) -> None:
    """Everything a recipe names, checked before any stage starts (not after 40 s of training)."""
    import inspect

    from edgepipe.models import ZOO, import_callable, is_registry_model

    if recipe.target:
        from edgepipe.targets import get_target

        get_target(recipe.target)
    if is_onnx_file(recipe.model.name):  # a model trained elsewhere, as a file: it must be there
        if not Path(recipe.model.name).expanduser().is_file():
            raise EdgepipeError(f"model.name: {recipe.model.name} is not a file")
        if recipe.prune is not None or recipe.quantize is not None and recipe.quantize.qat:
            raise EdgepipeError(ONNX_ORIGIN_NEEDS_TORCH.format(where=recipe.model.name))
        builder = None
    elif is_registry_model(recipe.model.name):  # torchvision:NAME / timm:NAME: the library checks its own params
        from edgepipe.models.backbones import check_backbone_name

        check_backbone_name(recipe.model.name)
        builder = None
    elif is_import_path(recipe.model.name):
        builder = import_callable(recipe.model.name)
    elif recipe.model.name in ZOO:
        builder = ZOO[recipe.model.name]
    else:
        raise EdgepipeError(f"model.name: unknown model '{recipe.model.name}'; known: {', '.join(ZOO)}, or a "
                            "'package.module:callable' import path")
    try:
        if builder is not None:
            inspect.signature(builder).bind_partial(**recipe.model.params)
    except TypeError as exc:
        raise EdgepipeError(f"model.params: {exc} (model '{recipe.model.name}')") from None
    except ValueError:
        pass  # a builder without an inspectable signature (a C function): train will say what is wrong
    if recipe.build is not None:
        from edgepipe.stages.build import check_request

        check_request(recipe.build, recipe.target)  # DLA without a static batch, --gpu-fallback without DLA, ...
    if recipe.dataset.path is not None and not Path(recipe.dataset.path).is_dir():
        raise EdgepipeError(f"dataset.path: {recipe.dataset.path} is not a directory")
    if recipe.train.init_from:
        from edgepipe.checkpoint import resolve_checkpoint

        resolve_checkpoint(Path(recipe.train.init_from))
    if recipe.quantize is not None:
        from edgepipe.quant.calibration import read_definition, resolve_calibration_path

        calibration = resolve_calibration_path(recipe.quantize.calibration)
        if calibration.is_file():
            read_definition(calibration)


def _check_prunable(recipe: Recipe) -> None:
    """A recipe that prunes: its model must be one the pruner can take, found on the untrained model before any
    training (ShuffleNet's channel shuffle was refused by prune after 98 s of training and export)."""
    if recipe.prune is None:
        return
    from edgepipe.data import load_dataset
    from edgepipe.models import build_model
    from edgepipe.pruning.checks import check_prune_request
    from edgepipe.stages.train import model_spec

    spec = model_spec(recipe, load_dataset(recipe.dataset))
    check_prune_request(build_model(spec), spec, recipe.prune)


def run_pipeline(recipe_path: Path, out: Path) -> dict[str, Any]:
    """Run the recipe into run directory ``out``; returns the report (also written to out/report.json).

    The recipe is checked whole before anything is written; the run is locked against a second writer;
    the recipe's own ``package.module:callable`` is trusted for this run (its manifests name it).
    """
    recipe: Recipe = load_recipe(recipe_path)
    out = Path(out)
    check_recipe(recipe)
    check_run_out(out)
    recipe_bytes = Path(recipe_path).read_bytes()
    with run_lock(out), trusting([recipe.model.name]):
        return _run_stages(recipe, recipe_bytes, out)


def _run_stages(recipe: Recipe, recipe_bytes: bytes, out: Path) -> dict[str, Any]:
    from edgepipe.stages.context import run_context
    from edgepipe.stages.evaluate import evaluate
    from edgepipe.stages.export import export
    from edgepipe.stages.train import train

    layout = RunLayout(out)
    if recipe.model.imported:  # a model trained elsewhere is the original: no training
        from edgepipe.stages.importing import import_model

        origin = import_model(recipe, layout.imported, reuse=True)
    else:
        _check_prunable(recipe)
        origin = train(recipe, layout.train, reuse=True)
    context = run_context(out, recipe=recipe)  # the typed recipe, task, dataset and budget, for every stage below
    # The recipe copy changes only once training accepted it (its data and model params really work).
    if not layout.recipe_copy.is_file() or layout.recipe_copy.read_bytes() != recipe_bytes:
        write_bytes_atomic(layout.recipe_copy, recipe_bytes)
    onnx_origin = is_onnx_file(recipe.model.name)  # the original is the graph already: nothing to export or prune
    if onnx_origin and recipe.prune is not None:
        raise EdgepipeError(ONNX_ORIGIN_NEEDS_TORCH.format(where=recipe.model.name) + " (drop the prune: section)")
    if not onnx_origin:
        export(origin, layout.export, recipe.export, reuse=True)
    if recipe.prune is not None:
        from edgepipe.stages.prune import prune

        prune_dir = prune(origin, layout.prune, recipe.prune, reuse=True, context=context)
        export(prune_dir, layout.export_pruned, recipe.export, reuse=True, name=EXPORT_NAMES[EXPORT_PRUNED])
    if recipe.quantize is not None:
        from edgepipe.stages.quantize import quantize

        quantize(out, layout.quantize, _quantize_config(recipe), reuse=True, context=context)

    if recipe.build is not None:
        _build_engines(out, recipe)
    write_report(out, evaluation=evaluate(out, recipe.eval), summary=False)
    report = finish_report(out, recipe)  # bench (in a fresh process), report.md/.png, the deployable pick
    if recipe.target:
        from edgepipe.stages.bundle import make_bundle

        make_bundle(out, recipe.target, layout.bundle(recipe.target))
    say(f"pipeline: report → {out / 'report.json'}")
    return report
