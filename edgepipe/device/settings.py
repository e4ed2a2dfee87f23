"""Every TensorRT build setting, declared once: its default, range, help, command-line flag, the first TensorRT
release that has it, how it is set on a trt.IBuilderConfig and how trtexec spells it.

The device's `build` options, `edgepipe build`'s options, recipe.BuildConfig's fields (defaults, ranges, help)
and the rebuild command a manifest records are all generated from OPTIONS; a new setting is one entry here and
one field in recipe.BuildConfig. API names per release from NVIDIA/TensorRT python/src/infer/pyCore.cpp (the
extracted surfaces in tests/data/trt_api); trtexec flags from samples/common/sampleOptions.cpp.
"""

from .common import version_tuple
from .errors import DeviceError
from .layout import PRECISIONS

DEFAULT_WORKSPACE_MIB = 1024


def parse_batch(text):
    """(1, 16, 64) from "1:16:64"; "8" -> (8, 8, 8), a static batch."""
    try:
        values = [int(part) for part in str(text).split(":")]
    except ValueError:
        values = []
    if len(values) == 1:
        values = values * 3
    if len(values) != 3 or not 1 <= values[0] <= values[1] <= values[2]:
        raise DeviceError("--batch {!r} must be MIN:OPT:MAX with 1 <= MIN <= OPT <= MAX (e.g. 1:16:64)".format(text))
    return tuple(values)


def default_workspace_mib(device_memory_mib):
    """1 GiB, but never more than a quarter of the device's memory (Jetsons share it with the CPU)."""
    if device_memory_mib is None:
        return DEFAULT_WORKSPACE_MIB
    return max(64, min(DEFAULT_WORKSPACE_MIB, int(device_memory_mib) // 4))


class Option(object):
    """One build setting. kind: "int", "bool", "choice", "batch" (MIN:OPT:MAX) or "path"."""

    kind = "int"
    default = None
    flag = None  # the command-line option; --name-with-dashes unless said
    choices = ()
    low = high = None  # an int's inclusive range
    help = ""
    first = None  # (major, minor): the first TensorRT release that has it
    recipe = True  # False: a command-line option only (not in a recipe's build: section)
    always = False  # recorded in the rebuild command even at its default (resolved values)

    def __init__(self, name, **fields):
        self.name = name
        for key, value in fields.items():
            if not hasattr(type(self), key):
                raise TypeError("{} has no field {!r}".format(type(self).__name__, key))
            setattr(self, key, value)
        self.flag = self.flag or "--" + name.replace("_", "-")

    def asked(self, value):
        return value is not None and value is not False and value != self.default

    def first_release(self, value):
        """The first TensorRT release with ``value`` of this setting, or None where every release has it."""
        return self.first if self.asked(value) else None

    def describe(self, value):
        return self.flag

    def check(self, value):
        """``value`` as the setting holds it, or DeviceError naming the flag."""
        if value is None:
            return None
        if self.kind == "batch":
            return parse_batch(value) if isinstance(value, str) else parse_batch(":".join(str(v) for v in value))
        if self.kind == "bool":
            return bool(value)
        if self.kind == "path":
            return str(value)
        if self.kind == "choice":
            if value not in self.choices:
                raise DeviceError("{} {!r} unknown; choose one of {}".format(self.flag, value, ", ".join(self.choices)))
            return value
        if isinstance(value, bool) or int(value) != value:
            raise DeviceError("{} {!r} must be a whole number".format(self.flag, value))
        value = int(value)
        if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
            span = "at least {}".format(self.low) if self.high is None else "between {} and {}".format(self.low,
                                                                                                       self.high)
            raise DeviceError("{} {} must be {}".format(self.flag, value, span))
        return value

    def to_json(self, value):
        return list(value) if self.kind == "batch" else value

    def command_line(self, value):
        """The options that ask for ``value`` again (the device's `build` and `edgepipe build` take the same)."""
        if value is None or value is False or (value == self.default and not self.always):
            return []
        if self.kind == "bool":
            return [self.flag]
        if self.kind == "batch":
            return [self.flag, ":".join(str(v) for v in value)]
        return [self.flag, str(value)]

    def trtexec(self, value):
        """trtexec's spelling of ``value``; [] where the recorded command line already carries it."""
        return []

    def apply(self, trt, config, value, applied):
        """Set ``value`` on the IBuilderConfig (the builder applies DLA, profile, workspace and cache itself)."""


class BuilderFlagOption(Option):
    """A boolean that is one trt.BuilderFlag."""

    kind = "bool"
    default = False
    builder_flag = ""
    trtexec_flag = ""

    def apply(self, trt, config, value, applied):
        if value:
            config.set_flag(getattr(trt.BuilderFlag, self.builder_flag))
            applied["builder_flags"].append(self.builder_flag)

    def trtexec(self, value):
        return [self.trtexec_flag] if value else []


class LevelOption(Option):
    """An integer level set as an IBuilderConfig attribute; through a trt enum's members when ``members``."""

    attribute = ""
    members = ()  # the trt enum's member names by level, where the attribute takes the enum
    enum = ""
    trtexec_flag = ""

    def apply(self, trt, config, value, applied):
        if value is None:
            return
        level = getattr(getattr(trt, self.enum), self.members[value]) if self.members else value
        setattr(config, self.attribute, level)
        applied[self.attribute] = self.members[value] if self.members else value

    def trtexec(self, value):
        return [] if value is None else ["{}={}".format(self.trtexec_flag, value)]


class HardwareCompatOption(Option):
    """trt.HardwareCompatibilityLevel: engines that load on other GPUs (desktop Ampere and later)."""

    kind = "choice"
    default = "none"
    # flag value -> (HardwareCompatibilityLevel member, trtexec's name, first release)
    levels = {"none": ("NONE", "none", None), "ampere_plus": ("AMPERE_PLUS", "ampere+", (8, 6)),
              "same_cc": ("SAME_COMPUTE_CAPABILITY", "sameComputeCapability", (10, 9))}
    choices = ("none", "ampere_plus", "same_cc")

    def first_release(self, value):
        return self.levels[value][2]

    def describe(self, value):
        return self.flag if value == "ampere_plus" else "{} {}".format(self.flag, value)

    def apply(self, trt, config, value, applied):
        if value != "none":
            member = self.levels[value][0]
            config.hardware_compatibility_level = getattr(trt.HardwareCompatibilityLevel, member)
            applied["hardware_compatibility_level"] = member

    def trtexec(self, value):
        return [] if value == "none" else ["--hardwareCompatibilityLevel=" + self.levels[value][1]]


# In the order the builder applies them and the rebuild command lists them.
OPTIONS = (
    Option("precision", kind="choice", default="best", choices=("best",) + PRECISIONS, always=True,
           help="fp32, fp16, int8, or best (the fastest the target, or this GPU, supports)"),
    Option("workspace_mib", flag="--workspace", low=1, always=True,
           help="builder workspace limit in MiB (default: 1024, at most a quarter of the device's memory: Jetsons "
                "share it with the CPU)"),
    Option("dla_core", low=0, help="run on this DLA core (Jetson Xavier/Orin)"),
    Option("gpu_fallback", kind="bool", default=False, help="let layers DLA cannot run fall back to the GPU"),
    BuilderFlagOption("sparsity", builder_flag="SPARSE_WEIGHTS", trtexec_flag="--sparsity=enable",
                      help="use 2:4 sparse tensor cores (a model pruned with method 2:4)"),
    Option("timing_cache", kind="path", recipe=False,
           help="timing cache file: reused when present, saved after the build"),
    Option("batch", kind="batch", default=(1, 16, 64), always=True,
           help="optimization profile batch sizes MIN:OPT:MAX (or one static N)"),
    # IBuilderConfig.builder_optimization_level: 0..5, TensorRT's default 3 (8.6+).
    LevelOption("opt_level", low=0, high=5, first=(8, 6), attribute="builder_optimization_level",
                trtexec_flag="--builderOptimizationLevel",
                help="builder optimization level 0-5 (TensorRT >= 8.6; its default is 3)"),
    BuilderFlagOption("version_compatible", builder_flag="VERSION_COMPATIBLE", trtexec_flag="--versionCompatible",
                      first=(8, 6), help="build an engine later TensorRT versions of the same major can load"),
    HardwareCompatOption("hardware_compat",
                         help="hardware compatibility: none, ampere_plus (8.6+) or same_cc (10.9+)"),
    # IBuilderConfig.tiling_optimization_level takes trt.TilingOptimizationLevel (NONE, FAST, MODERATE, FULL), from
    # TensorRT 10.8 (its release notes; pyCore.cpp); trtexec --tilingOptimizationLevel=N.
    LevelOption("tiling_optimization_level", low=0, high=3, first=(10, 8), attribute="tiling_optimization_level",
                enum="TilingOptimizationLevel", members=("NONE", "FAST", "MODERATE", "FULL"),
                trtexec_flag="--tilingOptimizationLevel",
                help="cross-kernel tiling search effort 0-3 (TensorRT >= 10.8; 0, its default, tiles nothing)"),
)
OPTION = dict((option.name, option) for option in OPTIONS)


class BuildSettings(object):
    """One build's settings: a resolved precision and every other option, checked against its range."""

    def __init__(self, precision, **values):
        if precision not in PRECISIONS:
            raise DeviceError("precision {!r} unknown; choose one of {}".format(precision, ", ".join(PRECISIONS)))
        unknown = sorted(set(values) - set(OPTION))
        if unknown or "precision" in values:
            raise TypeError("BuildSettings has no setting {}".format(", ".join(unknown) or "precision twice"))
        self.precision = precision
        for option in OPTIONS[1:]:
            setattr(self, option.name, option.check(values.get(option.name, option.default)))
        if self.workspace_mib is None:
            self.workspace_mib = DEFAULT_WORKSPACE_MIB

    def to_json(self):
        data = {"precision": self.precision}
        for option in OPTIONS[1:]:
            data[option.name] = option.to_json(getattr(self, option.name))
        return data

    def command_line(self):
        """The `build` options that reproduce these settings."""
        flags = []
        for option in OPTIONS:
            flags += option.command_line(getattr(self, option.name))
        return flags


def check_combinations(settings):
    """Combinations no TensorRT accepts, refused with what to do instead (before any work)."""
    if settings.gpu_fallback and settings.dla_core is None:
        raise DeviceError("--gpu-fallback only applies to DLA builds; add --dla-core N or drop it")
    if settings.dla_core is not None:
        if settings.precision == "fp32":
            # DLA runs FP16 and INT8 only (TensorRT developer guide, "Working with DLA").
            raise DeviceError("DLA cannot run fp32; use --precision fp16 or int8 with --dla-core")
        if settings.batch[0] != settings.batch[2]:
            # DLA loadables are built for static shapes; a dynamic profile would push every layer to the GPU.
            raise DeviceError("DLA needs a static batch; got --batch {0}, use --batch {1}:{1}:{1}".format(
                ":".join(str(b) for b in settings.batch), settings.batch[1]))
        if settings.hardware_compat != "none":
            raise DeviceError("--hardware-compat does not apply to DLA engines; drop one of them")


def check_release_supports(trt, settings):
    """Refuse, in one line and before any work, a setting the running TensorRT release does not have."""
    check_version_supports(trt.__version__, settings)


def check_version_supports(version, settings):
    """The same for TensorRT ``version`` ("8.5.2"; trtexec's release where the Python bindings are missing)."""
    release = version_tuple(version)[:2]
    for option in OPTIONS:
        value = getattr(settings, option.name)
        first = option.first_release(value)
        if first is not None and release < first:
            raise DeviceError("{} needs TensorRT {}.{} or newer; this machine has {}: drop it".format(
                option.describe(value), first[0], first[1], version))


def trtexec_options(settings):
    """trtexec's flags for the settings a recorded command line does not carry (the profile, workspace, DLA and
    timing cache are applied to the line itself)."""
    flags = []
    for option in OPTIONS:
        flags += option.trtexec(getattr(settings, option.name))
    return flags
