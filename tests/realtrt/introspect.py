"""Print the API surface of the real ``tensorrt`` module this process imports, as JSON (run by releases.py).

What pybind11 itself says, not what a reader of the sources infers: the members bound on each class, the exact
signatures pybind11 checks calls against, which properties have no setter, and each enum's members and values.
The JSON keeps the fields of the source-derived surfaces (tests/data/trt_api/README.md) and adds
``signatures``, ``properties`` and ``enum_values``.
"""

import inspect
import json
import re
import sys

from realtrt.bootstrap import tensorrt  # the real module, registered as ``tensorrt``

CLASSES = [
    "Builder", "IBuilderConfig", "INetworkDefinition", "ITensor", "IOptimizationProfile",
    "OnnxParser", "ParserError", "ICudaEngine", "IExecutionContext", "Runtime", "IHostMemory",
    "ITimingCache", "ILogger", "Logger", "IInt8EntropyCalibrator2", "IInt8Calibrator",
]
ENUMS = [
    "BuilderFlag", "NetworkDefinitionCreationFlag", "MemoryPoolType", "HardwareCompatibilityLevel",
    "DeviceType", "DataType", "TensorIOMode", "Logger.Severity", "TilingOptimizationLevel",
]
KEPT_DUNDERS = {"__init__", "__del__", "__enter__", "__exit__", "__len__", "__getitem__", "__setitem__"}
# pybind11 names its module by where it was built; normalise to the name users import.
MODULE_PREFIX = re.compile(r"\btensorrt(?:_bindings)?\.tensorrt\.")


def _resolve(dotted):
    value = tensorrt
    for part in dotted.split("."):
        value = getattr(value, part, None)
        if value is None:
            return None
    return value


def _normalise(text):
    return MODULE_PREFIX.sub("tensorrt.", text)


def _signatures(name, function):
    """pybind11's signature lines from the docstring: one per overload, as pybind11 checks them."""
    doc = getattr(function, "__doc__", None) or ""
    pattern = re.compile(r"^(?:\d+\. )?" + re.escape(name) + r"(\(.*\)(?: -> .*)?)$")
    found = [pattern.match(line.strip()) for line in doc.splitlines()]
    lines = [_normalise(m.group(1)) for m in found if m]
    if len(lines) > 1 and lines[0] == "(*args, **kwargs)":
        lines = lines[1:]  # "Overloaded function." header
    return lines


def _property_type(prop):
    getter = prop.fget
    doc = (getattr(getter, "__doc__", None) or "").strip().splitlines()
    match = re.match(r"^(?:\w+)?\((?:self|arg0): [^)]*\) -> (.*)$", doc[0]) if doc else None
    return _normalise(match.group(1)) if match else None


def _is_enum(value):
    return isinstance(value, type) and hasattr(value, "__members__")


def _class_entry(name, cls, surface):
    members = []
    for member, value in sorted(vars(cls).items()):
        if member.startswith("_") and member not in KEPT_DUNDERS:
            continue
        members.append(member)
        key = name + "." + member
        if isinstance(value, property):
            surface["properties"][key] = {"type": _property_type(value), "settable": value.fset is not None}
        else:
            function = getattr(value, "__func__", value)
            if callable(function):
                surface["signatures"][key] = _signatures(member, function)
    surface["classes"][name] = members
    bases = [b.__name__ for b in cls.__bases__ if getattr(tensorrt, b.__name__, None) is b]
    if bases:
        surface["bases"][name] = bases


def surface(key, distribution, version):
    found = {"release": key,
             "source": {"kind": "wheel", "distribution": distribution, "version": version,
                        "module_version": tensorrt.__version__,
                        "how": "introspected from the real module (tests/realtrt/introspect.py)"},
             "classes": {}, "enums": {}, "enum_values": {}, "bases": {}, "signatures": {}, "properties": {},
             "module": [], "all_classes": [], "missing": []}
    for name in CLASSES:
        cls = _resolve(name)
        if cls is None:
            found["missing"].append(name)
        else:
            _class_entry(name, cls, found)
    for name in ENUMS:
        enum = _resolve(name)
        if enum is None:
            found["missing"].append(name)
            continue
        members = dict(enum.__members__)
        found["enums"][name] = list(members)
        found["enum_values"][name] = {k: int(v) for k, v in members.items()}
    for name, value in sorted(vars(tensorrt).items()):
        if name.startswith("_"):
            continue
        if isinstance(value, type):
            found["all_classes"].append(name)
        elif not inspect.ismodule(value):
            found["module"].append(name)
    return found


if __name__ == "__main__":
    json.dump(surface(*sys.argv[1:4]), sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
