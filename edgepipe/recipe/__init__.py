"""Typed recipes loaded from YAML. Unknown or misspelled keys are errors naming the key, file and allowed keys.

A recipe is flat on purpose (no inheritance): one file per model x target that a person can read
top to bottom. Sections other than ``model``, ``dataset`` and ``train`` are optional; a stage runs in
``edgepipe pipeline`` when its section is present.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    AliasChoices,
    BaseModel,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from edgepipe import defaults
from edgepipe.device.settings import OPTION as BUILD_OPTIONS
from edgepipe.errors import EdgepipeError, first_line
from edgepipe.recipe.base import (
    SEED_MAX,
    BatchSize,
    Section,
    distill_alpha_field,
    distill_mode_field,
    distill_temperature_field,
)
from edgepipe.recipe.prune import PruneConfig


class ModelConfig(Section):
    name: str = Field(description="zoo name (mlp, lenet5, resnet, vgg, mobilenetv2, lstm, gru, conv-autoencoder), "
                                  "torchvision:NAME, timm:NAME, package.module:callable, or an .onnx file trained "
                                  "elsewhere (the run starts from it: no training)")
    params: dict[str, Any] = Field(default_factory=dict, description="keyword arguments of the model builder")
    init: Literal["kaiming", "xavier", "default"] = Field(
        default="kaiming", description="zoo and import-path models; torchvision:/timm: models keep their own")
    weights: str | None = Field(default=None, description="pretrained weights: a local .pth state dict or "
                                ".safetensors file (never downloaded); the classifier is resized for the classes")
    trained: bool = Field(default=False, description="weights are a model already trained on this dataset's classes "
                          "(elsewhere): the run starts from it as the original, no training")
    outputs: Literal["edgepipe", "yolov5", "yolov8", "yolo-end2end"] | None = Field(
        default=None, description="detection: the output layout of a model trained elsewhere: yolov5 [N, A, 5+C], "
        "yolov8 (and YOLO11) [N, 4+C, A], yolo-end2end [N, K, 6], or edgepipe's own four outputs")
    raw_output: str | None = Field(default=None, description="the output in that layout, when the graph has several")

    @model_validator(mode="after")
    def _origin(self) -> ModelConfig:
        if self.trained and not self.weights:
            raise ValueError("trained: true needs weights (the state dict trained elsewhere)")
        if self.outputs not in (None, "edgepipe") and not is_onnx_file(self.name):
            raise ValueError(f"outputs: {self.outputs} describes an ONNX file trained elsewhere; model.name is "
                             f"{self.name!r}")
        return self

    @property
    def imported(self) -> bool:
        """The run starts from this model as it is (an ONNX file, or trained weights): no training stage."""
        return is_onnx_file(self.name) or self.trained


def is_onnx_file(name: str) -> bool:
    return name.lower().endswith(".onnx")


class AugmentConfig(Section):
    """imagefolder training augmentation (torchvision.transforms.v2); evaluation always uses the fixed view."""

    random_resized_crop: tuple[float, float] | None = Field(
        default=None, description="area range of RandomResizedCrop, e.g. [0.35, 1]; default: the eval view")
    horizontal_flip: float = Field(default=0.0, ge=0, le=1, description="probability of a left-right flip")
    color_jitter: float = Field(default=0.0, ge=0, le=1, description="brightness/contrast/saturation strength")
    rotation: float = Field(default=0.0, ge=0, le=180, description="max random rotation in degrees")

    @field_validator("random_resized_crop")
    @classmethod
    def _area_range(cls, scale: tuple[float, float] | None) -> tuple[float, float] | None:
        if scale is not None and not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError("random_resized_crop is an area range [low, high] with 0 < low <= high <= 1")
        return scale


class DatasetConfig(Section):
    name: Literal["mnist5k", "digits", "seqmnist", "imagefolder", "synthetic", "mnist-canvas", "coco", "yolo"]
    path: str | None = Field(default=None, description="imagefolder: class sub-folders, or train/ val/ test/ "
                                                       "folders of class sub-folders (taken as given); coco: the "
                                                       "folder of instances.json and images; yolo: the folder of "
                                                       "images/ and labels/")
    annotations: str | None = Field(default=None, description="coco: the instances JSON file, relative to path "
                                    "(default: path/instances.json, or instances_train/_val/_test.json as given "
                                    "splits)")
    split_seed: int = Field(default=0, ge=0, le=SEED_MAX)
    val_fraction: float = Field(default=0.1, gt=0, lt=0.5)
    test_fraction: float = Field(default=0.2, gt=0, lt=0.5)
    image_size: tuple[int, int] | None = Field(default=None, description="imagefolder, coco, yolo: resize to "
                                               "(H, W) (coco/yolo default 320x320); mnist-canvas: the canvas size "
                                               "(H, W), 64-256 (default 96x96)")
    channels: Literal[1, 3] | None = Field(default=None, description="imagefolder, coco, yolo: 1 = grayscale, 3 = RGB")
    names: list[str] | None = Field(default=None, min_length=1, description="yolo: the class names in index order "
                                    "(a model's full list where the folder shows only some classes or has no "
                                    "data.yaml); default: data.yaml's names, else the indices found")
    resize: int | None = Field(default=None, gt=0, description="imagefolder: resize the shorter side to this, then "
                               "centre-crop image_size (ImageNet: 256 for 224); default: resize to image_size")
    resize_mode: Literal["stretch", "crop", "letterbox"] | None = Field(
        default=None, description="imagefolder, coco, yolo: stretch to image_size, crop (resize the shorter side, "
        "then centre-crop; set by resize), or letterbox (fit inside image_size and pad, as YOLO detectors expect)")
    pad_value: int = Field(default=114, ge=0, le=255, description="letterbox: the padding's grey level (YOLO: 114)")
    channel_order: Literal["RGB", "BGR"] = Field(default="RGB", description="imagefolder, coco, yolo: BGR for "
                                                 "models trained on OpenCV's channel order")
    mean: list[float] | None = Field(default=None, description="imagefolder, coco, yolo: per-channel mean on the "
                                     "[0, 1] scale (ImageNet-pretrained weights: [0.485, 0.456, 0.406]); "
                                     "default: measured on training images")
    std: list[float] | None = Field(default=None, description="imagefolder: per-channel std, as mean "
                                    "(ImageNet: [0.229, 0.224, 0.225])")
    augment: AugmentConfig | None = Field(default=None, description="imagefolder: training augmentation")
    workers: int = Field(default=2, ge=0, le=64, description="imagefolder, coco, yolo: DataLoader worker processes")
    samples: int = Field(default=1200, gt=0, description="synthetic: number of samples")
    num_classes: int = Field(default=4, ge=2, description="synthetic: number of classes")
    shape: tuple[int, ...] = Field(default=(1, 12, 12), description="synthetic: per-sample shape")
    canvases: int | None = Field(default=None, gt=0, description="mnist-canvas: number of canvases, split by "
                                 "val_fraction/test_fraction (default 5000)")

    @model_validator(mode="after")
    def _consistent_view(self) -> DatasetConfig:
        if self.resize_mode == "crop" and self.resize is None:
            raise ValueError("resize_mode crop needs resize (the shorter side before the centre crop)")
        if self.resize is not None and self.resize_mode not in (None, "crop"):
            raise ValueError(f"resize {self.resize} is the crop mode's shorter side; resize_mode {self.resize_mode} "
                             "does not use it")
        if self.resize is not None and self.image_size is not None and self.resize < min(self.image_size):
            raise ValueError(f"resize {self.resize} is smaller than the image_size {list(self.image_size)} it is "
                             "cropped to")
        channels = self.channels or 3
        for name in ("mean", "std"):
            values = getattr(self, name)
            if values is not None and len(values) != channels:
                raise ValueError(f"{name} has {len(values)} values; the images have {channels} channel(s)")
        if self.std is not None and min(self.std) <= 0:
            raise ValueError("std values must be positive")
        if (self.mean is None) != (self.std is None):
            raise ValueError("give mean and std together (or neither, to measure them on training images)")
        if self.names is not None and self.name != "yolo":
            raise ValueError(f"names is for yolo folders; {self.name} takes its class names from the data")
        if self.names is not None and len(set(self.names)) != len(self.names):
            repeated = next(name for name in self.names if self.names.count(name) > 1)
            raise ValueError(f"names lists {repeated!r} twice")
        return self


class TrainConfig(Section):
    optimizer: Literal["sgd", "momentum", "nesterov", "adagrad", "adam", "adamw"] = "adam"
    lr: float = Field(default=1e-3, gt=0)
    momentum: float = Field(default=0.9, ge=0, lt=1)
    weight_decay: float = Field(default=0.0, ge=0)
    schedule: Literal["none", "step", "cosine", "onecycle"] = "cosine"
    epochs: int = Field(default=10, ge=1)
    batch_size: BatchSize = 64
    seed: int = Field(default=0, ge=0, le=SEED_MAX)
    device: str = Field(default="auto", description="auto | cpu | cuda | cuda:N")
    augment: bool = Field(default=False, description="random small rotations, scalings and shifts of images")
    label_smoothing: float = Field(default=0.0, ge=0, lt=1)
    grad_clip: float | None = Field(default=None, gt=0, description="max gradient norm (useful for RNNs)")
    init_from: str | None = Field(default=None, description="transfer learning: checkpoint or run to start from")
    freeze_backbone: bool = Field(default=False, description="with init_from or model.weights: train only the "
                                  "classifier")
    backbone_lr: float | None = Field(default=None, gt=0, description="learning rate of everything but the "
                                      "classifier (fine-tuning pretrained weights gently); default: lr")


class ExportConfig(Section):
    opset: int = Field(default=defaults.EXPORT["opset"], ge=13, le=23)
    dynamic_batch: bool = defaults.EXPORT["dynamic_batch"]
    exporter: Literal["dynamo", "torchscript"] = defaults.EXPORT["exporter"]
    parity_atol: float = Field(default=1e-3, gt=0, description="max abs output difference vs PyTorch, plus "
                               "parity_rtol times the largest output magnitude")
    parity_rtol: float = Field(default=1e-3, ge=0, description="relative part of the parity tolerance (as "
                               "Polygraphy's comparator: atol + rtol * |reference|, on the outputs' largest value)")
    min_agreement: float = Field(default=0.999, gt=0, le=1, description="top-1 agreement vs PyTorch")


class QuantizeConfig(Section):
    method: Literal["minmax", "entropy", "percentile"] = defaults.QUANTIZE["method"]
    percentile: float = Field(default=defaults.QUANTIZE["percentile"], gt=90, le=100,
                              description="method percentile: the range kept")
    calibration: str = Field(default=defaults.QUANTIZE["calibration"],
                             description="calibration set file or image folder")
    reduce_range: bool = Field(default=defaults.QUANTIZE["reduce_range"],
                               description="7-bit weights for the CPU track (CPUs without VNNI)")
    fp16: bool = True
    qat: bool = defaults.QUANTIZE["qat"]
    qat_epochs: int = Field(default=2, ge=1)
    qat_lr: float | None = Field(default=None, gt=0, description="QAT fine-tune learning rate (default train.lr / 10)")
    qat_distill: Literal["auto", "on", "off"] = distill_mode_field(defaults.QUANTIZE["qat_distill"], "QAT")
    qat_distill_alpha: float = distill_alpha_field(defaults.QUANTIZE["qat_distill_alpha"])
    qat_distill_temperature: float = distill_temperature_field(defaults.QUANTIZE["qat_distill_temperature"])
    max_drop: float | None = Field(default=defaults.QUANTIZE["max_drop"], ge=0,
                                   description="in the task's unit (points, dB); default: eval.max_drop")
    cpu_speed_fallback: bool = Field(default=defaults.QUANTIZE["cpu_speed_fallback"],
                                     description="CPU track: keep a layer in float where int8 is "
                                     "measured slower at speed_batch (e.g. a 1-channel stem conv)")
    speed_batch: BatchSize = Field(default=defaults.QUANTIZE["speed_batch"],
                                   description="batch size the CPU track's speed is measured at")
    retime: bool = Field(default=defaults.QUANTIZE["retime"],
                         description="measure the CPU track's speed decision again instead of reusing the one "
                         "this machine made for the same model (edgepipe.cache)")
    compare_naive: bool | None = Field(default=None, description="also quantize naively (every node INT8, "
                                       "onnxruntime's defaults) and score it beside the shipped INT8 on test "
                                       "(default: on for detectors)")
    keep_float: list[str] = Field(default_factory=list, description="ONNX node names (as Netron shows them) kept in "
                                  "float in both INT8 tracks, whatever the accuracy budget (e.g. a detector's neck)")
    speed_runtime: Literal["auto", "onnxruntime", "openvino"] = Field(
        default=defaults.QUANTIZE["speed_runtime"], description="CPU runtime the speed fallback measures on; auto: "
        "the installed one that runs the all-int8 graph fastest at speed_batch (the one that will run it)")
    tensorrt_version: str = Field(default=defaults.QUANTIZE["tensorrt_version"], pattern=r"^\d+(\.\d+){0,2}$",
                                  description="TensorRT that reads trt.calib.cache (its header names the version)")

    @field_validator("qat_distill")
    @classmethod
    def _distill_needs_qat(cls, distill: str, info: ValidationInfo) -> str:
        if distill == "on" and info.data.get("qat") is False:
            raise ValueError("distillation happens during QAT, and qat is off; set qat (--qat) or drop qat_distill")
        return distill


def _build_option(name: str) -> Any:
    """A BuildConfig field as the device runtime declares the setting (edgepipe/device/settings.py): its default,
    range and help are defined there once, for the device, this model and both command lines."""
    option = BUILD_OPTIONS[name]
    bounds = {key: value for key, value in (("ge", option.low), ("le", option.high)) if value is not None}
    return Field(default=option.default, description=option.help, **bounds)


_PRECISION_CHOICES = BUILD_OPTIONS["precision"].choices
_HARDWARE_COMPAT_CHOICES = BUILD_OPTIONS["hardware_compat"].choices


class BuildConfig(Section):
    """A TensorRT engine build (`edgepipe build` options and a recipe's build: section): one field per setting of
    edgepipe.device.settings.OPTIONS that a recipe holds."""

    precision: Literal[_PRECISION_CHOICES] = _build_option("precision")
    workspace_mib: int | None = _build_option("workspace_mib")
    batch: tuple[int, int, int] = _build_option("batch")
    dla_core: int | None = _build_option("dla_core")
    gpu_fallback: bool = _build_option("gpu_fallback")
    sparsity: bool = _build_option("sparsity")
    opt_level: int | None = _build_option("opt_level")
    version_compatible: bool = _build_option("version_compatible")
    hardware_compat: Literal[_HARDWARE_COMPAT_CHOICES] = _build_option("hardware_compat")
    tiling_optimization_level: int | None = _build_option("tiling_optimization_level")


class BenchConfig(Section):
    batch_sizes: list[BatchSize] = Field(default_factory=lambda: list(defaults.BENCH["batch_sizes"]))
    warmup: int = Field(default=defaults.BENCH["warmup"], ge=0, description="untimed calls before each timed window")
    warmup_seconds: float = Field(default=defaults.BENCH["warmup_seconds"], ge=0,
                                  description="and at least this long (trtexec's --warmUp)")
    iters: int = Field(default=defaults.BENCH["iters"], ge=1,
                       description="at least this many timed calls per artifact, batch and repeat")
    seconds: float | None = Field(default=defaults.BENCH["seconds"], gt=0,
                                  description="and at least this long per window (trtexec's "
                                  "--duration): what keeps sub-millisecond p50s steady")
    repeats: int = Field(default=defaults.BENCH["repeats"], ge=1,
                         description="interleaved rounds; the p50 spread across them is reported")
    threads: int | None = Field(default=defaults.BENCH["threads"], ge=1,
                                description="CPU threads for torch and onnxruntime (default: all)")
    backends: list[Literal["torch", "onnxruntime", "openvino", "tensorrt"]] | None = None
    cpu_runtimes: list[Literal["onnxruntime", "openvino"]] | None = Field(
        default=None, description="CPU runtimes every ONNX artifact is timed on, side by side (default: every "
        "one installed)")
    budget_s: float | None = Field(default=defaults.BENCH["budget_s"], gt=0,
                                   description="seconds the whole bench may take (null: no limit); planned from a "
                                   "probe of each call's cost, shrinking repeats, windows, the settings probe, "
                                   "scoring, memory and batch sizes in that order, each cut said")
    tune_settings: bool = Field(default=defaults.BENCH["tune_settings"],
                                description="per batch size, also probe fewer threads and OpenVINO's throughput "
                                "streams; keep one only where it beats the full thread budget in every probe round")
    end_to_end: bool = Field(default=defaults.BENCH["end_to_end"],
                             description="also time preprocessing from raw uint8 input")
    memory: bool = Field(default=defaults.BENCH["memory"], description="peak RSS per artifact, each in a fresh process")
    deploy_batch: BatchSize = Field(default=defaults.BENCH["deploy_batch"],
                                   description="batch size the deployable artifact is picked at")
    steady: bool = Field(default=defaults.BENCH["steady"],
                         description="before each timed window, wait out a slow phase of a shared "
                         "machine (probe-timed; waits are reported, the machine's fast probe is remembered in "
                         "~/.cache/edgepipe): for benchmarks; it can wait minutes")

    @field_validator("batch_sizes")
    @classmethod
    def _positive(cls, sizes: list[int]) -> list[int]:
        if not sizes or any(size <= 0 for size in sizes):
            raise ValueError("batch sizes must be positive integers")
        return sizes


class EvalConfig(Section):
    max_drop: float | None = Field(default=None, ge=0, validation_alias=AliasChoices("max_drop", "max_accuracy_drop"),
                                   description="what an artifact may lose vs the original, in the task's unit "
                                   "(classification: top-1 points, default 0.5; reconstruction: PSNR dB, default 1); "
                                   "max_accuracy_drop is the older name")
    batch_size: BatchSize = 256


class Recipe(Section):
    name: str
    # edgepipe.tasks owns what each task means (tests/unit/test_tasks.py keeps the two lists equal)
    task: Literal["classification", "reconstruction", "detection"] = Field(
        default="classification",
        description="what the model is for: classification (class logits), reconstruction (an autoencoder) or "
                    "detection (boxes: a detector whose graph ends in its decode)")
    target: str | None = Field(default=None, description="deployment target profile (see `edgepipe targets`)")
    model: ModelConfig
    dataset: DatasetConfig
    train: TrainConfig = TrainConfig()
    export: ExportConfig = ExportConfig()
    prune: PruneConfig | None = None
    quantize: QuantizeConfig | None = None
    build: BuildConfig | None = None
    bench: BenchConfig | None = None
    eval: EvalConfig = EvalConfig()

    @model_validator(mode="after")
    def _one_budget(self) -> Recipe:
        # A run has one budget against the original (edgepipe.tasks.budget): two different ones cannot both hold.
        quantize_drop = self.quantize.max_drop if self.quantize is not None else None
        if None not in (quantize_drop, self.eval.max_drop) and quantize_drop != self.eval.max_drop:
            raise ValueError(f"eval.max_drop {self.eval.max_drop} and quantize.max_drop {quantize_drop} differ: a run "
                             "has one budget against the original, spent by prune and quantize in turn; set "
                             "eval.max_drop only")
        return self


def _allowed_keys(model: type[BaseModel], location: tuple[Any, ...]) -> list[str]:
    """Walk the model classes along a validation error's location to list the keys allowed there."""
    current: Any = model
    for part in location[:-1]:
        field = current.model_fields.get(part) if isinstance(part, str) else None
        if field is None:
            break
        annotation = field.annotation
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        current = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), current)
    return sorted(current.model_fields)


def _describe(error: dict[str, Any], source: str) -> str:
    location = tuple(error["loc"])
    dotted = ".".join(str(part) for part in location)
    if error["type"] == "extra_forbidden":
        allowed = ", ".join(_allowed_keys(Recipe, location))
        return f"{source}: unknown key '{dotted}'; allowed keys here: {allowed}"
    if error["type"] == "missing":
        return f"{source}: missing required key '{dotted}'"
    if not location:  # a rule over the whole recipe (one budget): its own words say what is wrong
        return f"{source}: {error['msg'].removeprefix('Value error, ')}"
    return f"{source}: {dotted}: {error['msg']} (got {error.get('input')!r})"


def parse_recipe(data: Any, source: str = "<recipe>") -> Recipe:
    if not isinstance(data, dict):
        raise EdgepipeError(f"{source}: a recipe must be a YAML mapping, got {type(data).__name__}")
    try:
        return Recipe.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise EdgepipeError(_describe(errors[0], source) + more) from None


def load_recipe(path: str | Path) -> Recipe:
    path = Path(path)
    if not path.is_file():
        raise EdgepipeError(f"recipe not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise EdgepipeError(f"{path}: not a text file (a recipe is UTF-8 YAML)") from None
    except yaml.YAMLError as exc:
        raise EdgepipeError(f"{path}: not valid YAML ({first_line(exc)})") from None
    except RecursionError:
        raise EdgepipeError(f"{path}: nests too deeply to be a recipe") from None
    return parse_recipe(data, source=str(path))


def recipe_to_dict(recipe: Recipe) -> dict[str, Any]:
    return recipe.model_dump(mode="json")
