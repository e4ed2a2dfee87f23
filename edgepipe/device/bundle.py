"""A deploy bundle made by `edgepipe bundle`, read as data: its manifest, its files (every one hashed, none outside
it), its evaluation set, its task, its ONNX files and the engines built in it.

Bundles made before the runtime became a package (flat edgepipe_device_runtime.py files beside the launcher)
read the same: nothing here depends on how the runtime itself was shipped.
"""

import os

import numpy as np

from .bounds import DeclaredTooLarge, load_arrays_bounded
from .common import basename, read_json, sha256_file
from .errors import DeviceError
from .layout import BUILD, CALIB_CACHE, EXPORT, FP16_ONNX, FP32_ONNX, INT8_TRT_ONNX, MANIFEST, QUANTIZE, REFERENCE_NPZ
from .scoring import TASK_SCORES


class Bundle(object):
    """A deploy bundle made by `edgepipe bundle`: manifest.json lists every file with its sha256."""

    def __init__(self, path):
        self.path = os.path.abspath(str(path))
        manifest_path = os.path.join(self.path, MANIFEST)
        if not os.path.isfile(manifest_path):
            raise DeviceError("{} is not a deploy bundle (no {}); make one with `edgepipe bundle RUN --target "
                              "PROFILE --out DIR`".format(path, MANIFEST))
        try:
            self.manifest = read_json(manifest_path)
        except ValueError as exc:
            raise DeviceError("{}: {} is not valid JSON ({})".format(path, MANIFEST, exc)) from None
        if self.manifest.get("stage") != "bundle":
            raise DeviceError("{} is a '{}' stage, not a deploy bundle".format(path, self.manifest.get("stage")))

    def file(self, relative):
        """A bundle file by its manifest path; never a path that leaves the bundle."""
        full = os.path.realpath(os.path.join(self.path, relative))
        if not (full == os.path.realpath(self.path) or full.startswith(os.path.realpath(self.path) + os.sep)):
            raise DeviceError("bundle {}: {} points outside the bundle; refusing to read it".format(self.path,
                                                                                                   relative))
        return full

    def verify(self):
        """Every listed file present and unchanged, named when not."""
        for entry in self.manifest.get("files") or []:
            path = self.file(entry["path"])
            if not os.path.isfile(path):
                raise DeviceError("bundle {} is missing {} (listed in its manifest.json); copy the whole bundle "
                                  "directory again".format(self.path, entry["path"]))
            if os.path.getsize(path) != entry.get("size_bytes") or sha256_file(path) != entry.get("sha256"):
                raise DeviceError("bundle {}: {} differs from the file bundled (sha256 mismatch); copy the bundle "
                                  "again or rerun `edgepipe bundle`".format(self.path, entry["path"]))
        return self

    def listed(self, relative):
        paths = set(entry["path"] for entry in self.manifest.get("files") or [])
        return self.file(relative) if relative in paths else None

    def build_files(self):
        return {"fp32_onnx": self.listed(EXPORT + "/" + FP32_ONNX),
                "fp16_onnx": self.listed(QUANTIZE + "/" + FP16_ONNX),
                "int8_trt_onnx": self.listed(QUANTIZE + "/" + INT8_TRT_ONNX),
                "calibration_cache": self.listed(QUANTIZE + "/" + CALIB_CACHE)}

    def stage_manifest(self, stage):
        path = os.path.join(self.path, stage, MANIFEST)
        if not os.path.isfile(path):
            return None
        return read_json(path)

    def check_cache(self, cache_path):
        """Refuse a calibration cache recorded for another model than the bundle's model.onnx."""
        quantize = self.stage_manifest(QUANTIZE) or {}
        record = quantize.get("calibration_cache") or {}
        fp32 = self.build_files()["fp32_onnx"]
        if not record or fp32 is None:
            return
        model = sha256_file(fp32)
        if record.get("model_sha256") != model:
            raise DeviceError("calibration cache {} is stale: made for model sha256 {}, this bundle's model is {}; "
                              "rerun `edgepipe quantize` and `edgepipe bundle`".format(
                                  basename(cache_path), str(record.get("model_sha256"))[:12], model[:12]))

    def reference(self):
        """(x, targets, outputs) of the bundled evaluation set: the inputs, what the task scores against (labels;
        the inputs themselves for reconstruction) and the original model's outputs on them (np.load without
        pickle: data only). Bundles made before the task seam store the outputs as "logits"."""
        task = self.task()
        try:
            data = load_arrays_bounded(self.file(REFERENCE_NPZ), "rerun `edgepipe bundle` with fewer --samples")
            x = data["x"]
            outputs = data["outputs"] if "outputs" in data else data["logits"]
            y = data.get("y")
        except DeclaredTooLarge as exc:
            raise DeviceError("bundle {}: {}".format(self.path, exc)) from None
        except (ValueError, KeyError, OSError, TypeError, AttributeError) as exc:
            raise DeviceError("bundle {}: {} is not a valid evaluation set ({})".format(self.path, REFERENCE_NPZ,
                                                                                      exc)) from None
        targets = task.targets(x.astype(np.float32), y)
        if targets is None or not len(x) == len(targets) == len(outputs):
            raise DeviceError("bundle {}: {} holds {} inputs, {} targets and {} reference outputs; rerun `edgepipe "
                              "bundle`".format(self.path, REFERENCE_NPZ, len(x),
                                               "no" if targets is None else len(targets), len(outputs)))
        return x.astype(np.float32), targets, outputs.astype(np.float32)

    def task(self):
        """The bundled model's task (classification when the bundle predates the record)."""
        record = self.manifest.get("task") or {}
        name = record.get("name", "classification") if isinstance(record, dict) else "classification"
        if name not in TASK_SCORES:
            raise DeviceError("bundle {}: task {!r} is not one this runtime scores ({}); use the edgepipe release "
                              "that made the bundle".format(self.path, name, ", ".join(sorted(TASK_SCORES))))
        std = ((self.manifest.get("dataset") or {}).get("preprocessing") or {}).get("std")
        return TASK_SCORES[name](std)

    def labels(self):
        return list((self.manifest.get("dataset") or {}).get("labels") or [])

    def onnx_artifacts(self):
        """(name, precision, path) of every ONNX file the bundle's stage manifests list, as `edgepipe eval` names
        them (export first, then quantize)."""
        found = []
        for stage in (EXPORT, QUANTIZE):
            manifest = self.stage_manifest(stage) or {}
            for entry in manifest.get("artifacts") or []:
                if entry.get("format") != "onnx":
                    continue
                path = self.listed(stage + "/" + entry["file"])
                if path is not None:
                    found.append((entry["name"], entry.get("precision", "fp32"), path))
        return found

    def engines(self):
        """(name, precision, path, settings) of every engine built in the bundle (build-*/manifest.json)."""
        found = []
        for directory in sorted(os.listdir(self.path)):
            manifest_path = os.path.join(self.path, directory, MANIFEST)
            if not directory.startswith(BUILD + "-") or not os.path.isfile(manifest_path):
                continue
            manifest = read_json(manifest_path)
            settings = (manifest.get("config") or {}).get("settings") or {}
            for entry in manifest.get("artifacts") or []:
                if entry.get("format") == "engine":
                    path = self.file(directory + "/" + entry["file"])
                    if os.path.isfile(path):
                        found.append((entry["name"], entry.get("precision", "fp32"), path, settings))
        return found

    def check_device(self, device):
        """Refuse a GPU of another compute capability than the bundle's target (its ONNX files were checked for
        that target's TensorRT and layers only)."""
        target = self.manifest.get("target") or {}
        wanted = str(target.get("sm", "")).replace("sm_", "")
        major, minor = device["compute_capability"]
        here = "{}{}".format(major, minor)
        if wanted and wanted != here:
            raise DeviceError("this bundle was made for {} ({}); this GPU is {} (sm_{}): rerun `edgepipe bundle RUN "
                              "--target PROFILE` for this device (`edgepipe targets` lists them)".format(
                                  target.get("name"), target.get("sm"), device["name"], here))
