#!/usr/bin/env python3
"""Extract the Python API surface of a TensorRT release from its pybind11 sources.

Reads NVIDIA/TensorRT's ``python/src/**/*.cpp`` (pybind11 bindings) and the
packaging ``tensorrt/__init__.py``, and writes a small JSON summary: members of
selected classes, values of selected enums, and module-level names.

Usage (standard library only, Python >= 3.10):

    # from a checkout / exported tree (directory containing python/)
    python extract.py SRC_DIR --release 8.2 --ref release/8.2 --commit SHA -o 8.2.json

    # straight from a (bare) git clone of NVIDIA/TensorRT, read-only
    python extract.py --git-dir TensorRT.git --release 8.2 --ref release/8.2 -o 8.2.json

Extraction rules (token-level, not a C++ parser):
  * ``py::class_<...>(scope, "Name", ...)`` / ``py::enum_<...>(scope, "Name", ...)``,
    also the ``py::class_<...> var{scope, "Name"}`` form; a nested scope
    (``py::enum_<...>(var, "Severity")``) gives ``Parent.Severity``.
  * every chained ``.def*("name", ...)`` / ``.value("NAME", ...)`` call after the
    constructor, and later ``var.def*(...)`` chains on a named binding;
    ``.def(py::init...)`` is recorded as ``__init__``. Members are those bound on
    the class itself; inherited ones come from ``bases`` (bound C++ base classes
    named in the ``py::class_`` template arguments).
  * preprocessor conditionals are resolved with the full-bindings configuration
    (EXPORT_ALL_BINDINGS=1, ENABLE_INETWORK_SERIALIZE=0: NVIDIA-internal);
    other conditions keep their first branch.
  * ``m.def("name")`` / ``m.attr("name")`` give ``module_cpp``; top-level names
    defined by the packaging ``__init__.py`` give ``module``; attributes it
    patches onto classes (``Builder.__enter__ = ...``) give ``packaging_attrs``.
"""
from __future__ import annotations

import argparse
import ast
import json
import re
import subprocess
import sys
from pathlib import Path

CLASSES = [
    "Builder", "IBuilderConfig", "INetworkDefinition", "ITensor", "IOptimizationProfile",
    "OnnxParser", "ParserError", "ICudaEngine", "IExecutionContext", "Runtime", "IHostMemory",
    "ITimingCache", "ILogger", "Logger", "IInt8EntropyCalibrator2", "IInt8Calibrator",
]
ENUMS = [
    "BuilderFlag", "NetworkDefinitionCreationFlag", "MemoryPoolType", "HardwareCompatibilityLevel",
    "DeviceType", "DataType", "TensorIOMode", "Logger.Severity", "TilingOptimizationLevel",
]
DEFINES = {"EXPORT_ALL_BINDINGS": 1, "ENABLE_INETWORK_SERIALIZE": 0}
MEMBER_CALLS = {
    "def", "def_static", "def_property", "def_property_readonly", "def_property_static",
    "def_property_readonly_static", "def_readwrite", "def_readonly", "def_readwrite_static",
    "def_readonly_static",
}
INIT_PATHS = ["python/packaging/bindings_wheel/tensorrt/__init__.py", "python/packaging/tensorrt/__init__.py"]
PLACEHOLDERS = {"TENSORRT_MODULE": "tensorrt", "TENSORRT_NVINFER_NAME": "nvinfer",
                "TENSORRT_PLUGIN_DISABLED": "False"}

# ---------------------------------------------------------------- C++ side
TOKEN_RE = re.compile(r"""
    (?P<ws>\s+) | (?P<lc>//[^\n]*) | (?P<bc>/\*.*?\*/)
  | (?P<raw>R"(?P<delim>[^(\s]*)\(.*?\)(?P=delim)")
  | (?P<str>(?:u8|[uUL])?"(?:\\.|[^"\\\n])*") | (?P<chr>'(?:\\.|[^'\\\n])*')
  | (?P<id>[A-Za-z_]\w*) | (?P<num>\d[\w.']*) | (?P<op>::|.)
""", re.S | re.X)


def preprocess(text: str) -> str:
    """Drop lines in inactive #if branches (keeps line count)."""
    out, stack = [], []  # stack of (active_now, taken_any, parent_active)
    for line in text.splitlines():
        s = line.strip()
        m = re.match(r"#\s*(if|ifdef|ifndef|elif|else|endif)\b(.*)", s)
        if not m:
            out.append(line if all(a for a, _, _ in stack) else "")
            continue
        kw, cond = m.group(1), m.group(2).split("//")[0].strip()
        if kw in ("if", "ifdef", "ifndef"):
            parent = all(a for a, _, _ in stack)
            if kw == "if":
                c = bool(DEFINES[cond]) if cond in DEFINES else True
            else:
                c = (cond in DEFINES) == (kw == "ifdef") if cond in DEFINES else kw == "ifndef"
            stack.append((c, c, parent))
        elif kw == "elif" and stack:
            _, taken, parent = stack.pop()
            c = (not taken) and (bool(DEFINES[cond]) if cond in DEFINES else False)
            stack.append((c, taken or c, parent))
        elif kw == "else" and stack:
            _, taken, parent = stack.pop()
            stack.append((not taken, True, parent))
        elif kw == "endif" and stack:
            stack.pop()
        out.append("")
    return "\n".join(out)


def tokenize(text: str) -> list[tuple[str, str]]:
    toks = []
    for m in TOKEN_RE.finditer(preprocess(text)):
        kind = m.lastgroup if m.lastgroup != "delim" else "raw"
        if kind in ("ws", "lc", "bc"):
            continue
        if m.group("raw"):
            kind = "str"
        toks.append((kind, m.group()))
    return toks


def strval(tok: tuple[str, str]) -> str | None:
    kind, v = tok
    if kind != "str":
        return None
    v = re.sub(r'^(?:u8|[uUL])?(?:R"[^(]*\()?"?', "", v)
    return re.sub(r'(?:\)[^)"]*)?"$', "", v)


def match_close(toks, i: int) -> int:
    """toks[i] is ( [ or {; return index of the matching closer."""
    depth = 0
    for j in range(i, len(toks)):
        v = toks[j][1]
        if toks[j][0] == "op" and v in "([{":
            depth += 1
        elif toks[j][0] == "op" and v in ")]}":
            depth -= 1
            if depth == 0:
                return j
    raise ValueError("unbalanced brackets")


def split_args(toks, i: int, k: int) -> list[list[tuple[str, str]]]:
    """Arguments of the bracket pair toks[i]..toks[k] (top-level commas only)."""
    args, cur, j = [], [], i + 1
    while j < k:
        t = toks[j]
        if t[0] == "op" and t[1] in "([{":
            e = match_close(toks, j)
            cur.extend(toks[j:e + 1])
            j = e + 1
            continue
        if t == ("op", ","):
            args.append(cur)
            cur = []
        else:
            cur.append(t)
        j += 1
    if cur:
        args.append(cur)
    return args


def read_chain(toks, j: int, entry: dict) -> int:
    """Consume ``.call(...)`` links starting at toks[j]; record members into entry."""
    while j + 2 < len(toks) and toks[j] == ("op", ".") and toks[j + 1][0] == "id" and toks[j + 2] == ("op", "("):
        call, k = toks[j + 1][1], match_close(toks, j + 2)
        first = split_args(toks, j + 2, k)[:1]
        first = first[0] if first else []
        name = strval(first[0]) if len(first) == 1 else None
        if call in MEMBER_CALLS:
            if name is not None:
                entry["members"].append(name)
            elif call == "def" and [t[1] for t in first[:3]] == ["py", "::", "init"]:
                entry["members"].append("__init__")
            elif call == "def" and first and first[0][1] in ("py",):  # py::pickle etc.
                entry["members"].append("<" + "".join(t[1] for t in first[:3]) + ">")
            else:
                entry["unnamed"] += 1
        elif call == "value" and name is not None:
            entry["values"].append(name)
        j = k + 1
    return j


def extract_cpp(files: dict[str, str]) -> tuple[dict, list[str]]:
    bindings: dict[str, dict] = {}
    module_cpp: list[str] = []
    for path, text in files.items():
        toks = tokenize(text)
        var_of: dict[str, str] = {}
        i = 0
        while i < len(toks):
            kind, v = toks[i]
            # module-level m.def("x") / m.attr("x")
            if v == "m" and i + 3 < len(toks) and toks[i + 1] == ("op", ".") and toks[i + 2][1] in ("def", "attr") \
                    and toks[i + 3] == ("op", "(") and (i == 0 or toks[i - 1][1] in (";", "{", "}")):
                n = strval(toks[i + 4])
                if n:
                    module_cpp.append(n)
            if v in ("class_", "enum_") and i >= 2 and toks[i - 1][1] == "::" and toks[i - 2][1] == "py" \
                    and i + 1 < len(toks) and toks[i + 1] == ("op", "<"):
                j, depth, targs = i + 1, 0, [[]]
                while True:  # template arguments: <CppType, Base..., Trampoline, Holder>
                    depth += {"<": 1, ">": -1}.get(toks[j][1], 0) if toks[j][0] == "op" else 0
                    if depth == 1 and toks[j] == ("op", ","):
                        targs.append([])
                    elif toks[j][0] == "id" and depth == 1:
                        targs[-1].append(toks[j][1])
                    j += 1
                    if depth == 0:
                        break
                targs = [t[-1] for t in targs if t]  # last identifier: ILogger of nvinfer1::ILogger
                var = None
                if toks[j][0] == "id":
                    var, j = toks[j][1], j + 1
                if toks[j] not in (("op", "("), ("op", "{")):
                    i += 1
                    continue  # a type use, not a binding
                k = match_close(toks, j)
                args = split_args(toks, j, k)
                name = strval(args[1][0]) if len(args) > 1 and args[1] else None
                if name is None:
                    i = k + 1
                    continue
                scope = "".join(t[1] for t in args[0])
                qual = name if scope == "m" else f"{var_of.get(scope, scope)}.{name}"
                entry = bindings.setdefault(qual, {"kind": "enum" if v == "enum_" else "class", "file": path,
                                                   "members": [], "values": [], "unnamed": 0,
                                                   "cpp": targs[0] if targs else "", "targs": targs[1:]})
                if var:
                    var_of[var] = qual
                i = read_chain(toks, k + 1, entry)
                continue
            # later chains on a named binding:  var.def(...)...;
            if kind == "id" and v in var_of and i + 1 < len(toks) and toks[i + 1] == ("op", ".") \
                    and toks[i - 1][1] in (";", "{", "}"):
                i = read_chain(toks, i + 1, bindings[var_of[v]])
                continue
            i += 1
    by_cpp = {e["cpp"]: n for n, e in bindings.items() if e["kind"] == "class"}
    for e in bindings.values():  # bound base classes among the extra template arguments
        e["bases"] = [by_cpp[t] for t in e.pop("targs") if t in by_cpp]
    return bindings, module_cpp


# ---------------------------------------------------------- packaging side
def extract_init(text: str) -> tuple[list[str], dict[str, list[str]]]:
    src = re.sub(r"##(\w+)##", lambda m: PLACEHOLDERS.get(m.group(1), "0"), text)
    tree = ast.parse(src)
    names: list[str] = []
    patched: dict[str, list[str]] = {}

    def walk(body):
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                names.append(node.name)
            elif isinstance(node, ast.Assign):
                for t in node.targets:
                    if isinstance(t, ast.Name):
                        names.append(t.id)
                    elif isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name):
                        patched.setdefault(t.value.id, []).append(t.attr)
            elif isinstance(node, ast.Delete):
                for t in node.targets:
                    if isinstance(t, ast.Name) and t.id in names:
                        names.remove(t.id)
            elif isinstance(node, ast.If):
                try:  # only branches decidable after placeholder substitution
                    cond = eval(compile(ast.Expression(node.test), "<if>", "eval"), {"__builtins__": {}})
                except Exception:
                    continue  # platform-dependent (e.g. Windows DLL loading): skipped
                walk(node.body if cond else node.orelse)
            elif isinstance(node, ast.Try):
                walk(node.body)
            elif isinstance(node, ast.For):
                for sub in ast.walk(node):
                    if isinstance(sub, ast.Call) and getattr(sub.func, "id", None) == "setattr" \
                            and isinstance(sub.args[0], ast.Name):
                        patched.setdefault(sub.args[0].id, []).append(f"<for {ast.unparse(node.iter)}>")

    walk(tree.body)
    keep = [n for n in names if not n.startswith("_") or (n.startswith("__") and n.endswith("__"))]
    return sorted(set(keep)), {k: sorted(set(v)) for k, v in sorted(patched.items())}


# ------------------------------------------------------------------- driver
def load_sources(src: Path | None, git_dir: str | None, ref: str) -> tuple[dict[str, str], str | None, str | None]:
    def wanted(p: str) -> bool:
        return (p.startswith("python/src/") and p.endswith(".cpp")) or p in INIT_PATHS
    if git_dir:
        git = ["git", "--git-dir", git_dir]
        commit = subprocess.check_output(git + ["rev-parse", ref + "^{commit}"], text=True).strip()
        paths = subprocess.check_output(git + ["ls-tree", "-r", "--name-only", commit, "python/"], text=True).split()
        files = {p: subprocess.check_output(git + ["show", f"{commit}:{p}"], text=True, errors="replace")
                 for p in sorted(paths) if wanted(p)}
    else:
        commit = None
        files = {p.relative_to(src).as_posix(): p.read_text(errors="replace")
                 for p in sorted(src.rglob("*")) if p.is_file() and wanted(p.relative_to(src).as_posix())}
    init = next((p for p in INIT_PATHS if p in files), None)
    return files, init, commit


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src", nargs="?", type=Path, help="directory that contains python/src and python/packaging")
    ap.add_argument("--git-dir", help="read the sources from this git repository at --ref instead")
    ap.add_argument("--release", required=True)
    ap.add_argument("--repo", default="NVIDIA/TensorRT")
    ap.add_argument("--ref", default=None, help="default: release/<release>")
    ap.add_argument("--commit", default=None)
    ap.add_argument("--all", action="store_true", help="emit every class and enum, not only the selected ones")
    ap.add_argument("-o", "--output", type=Path)
    a = ap.parse_args(argv)
    if not a.src and not a.git_dir:
        ap.error("give SRC or --git-dir")
    ref = a.ref or f"release/{a.release}"
    files, init, commit = load_sources(a.src, a.git_dir, ref)
    cpp = {p: t for p, t in files.items() if p.endswith(".cpp")}
    bindings, module_cpp = extract_cpp(cpp)
    # Logger.Severity: bound on Logger (8.0) or on ILogger and aliased by __init__.py (8.2+).
    if "Logger.Severity" not in bindings and "ILogger.Severity" in bindings:
        bindings["Logger.Severity"] = bindings["ILogger.Severity"]
    module, patched = extract_init(files[init]) if init else ([], {})
    cls = lambda n: bindings.get(n, {}).get("kind") == "class"  # noqa: E731
    enm = lambda n: bindings.get(n, {}).get("kind") == "enum"  # noqa: E731
    cnames = sorted(n for n in bindings if cls(n)) if a.all else [n for n in CLASSES if cls(n)]
    enames = sorted(n for n in bindings if enm(n)) if a.all else [n for n in ENUMS if enm(n)]
    uniq = lambda xs: list(dict.fromkeys(xs))  # noqa: E731  (keep source order, drop overloads)
    used = sorted({bindings[n]["file"] for n in cnames + enames} | ({init} if init else set()))
    out = {
        "release": a.release,
        "source": {"repo": a.repo, "ref": ref, "commit": a.commit or commit, "files": used},
        "classes": {n: uniq(bindings[n]["members"]) for n in cnames},
        "enums": {n: uniq(bindings[n]["values"]) for n in enames},
        "bases": {n: bindings[n]["bases"] for n in cnames if bindings[n]["bases"]},
        "module": module,
        "module_cpp": sorted(set(module_cpp)),
        "packaging_attrs": {k: v for k, v in patched.items() if a.all or k in CLASSES or k in ENUMS},
        "missing": [n for n in CLASSES + ENUMS if n not in cnames + enames] if not a.all else [],
    }
    for n in cnames + enames:
        if bindings[n]["unnamed"]:
            print(f"warning: {n}: {bindings[n]['unnamed']} member call(s) without a literal name", file=sys.stderr)
    text = json.dumps(out, indent=1) + "\n"
    if a.output:
        a.output.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
