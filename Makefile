# Two commands for a newcomer: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# On machines without an NVIDIA driver, pin a torch + torchvision pair that imports on a CPU (constraints-cpu.txt).
CONSTRAINTS ?= $(if $(shell command -v nvidia-smi 2>/dev/null),,-c constraints-cpu.txt)

.PHONY: install demo test test-fast lint bench clean trt-wheels

$(BIN)/edgepipe: pyproject.toml constraints-cpu.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(CONSTRAINTS) -e '.[dev,openvino,timm]'
	# tensorrt-stubs: `import tensorrt` then finds an empty namespace package, which the loader and doctor tests
	# check is not mistaken for TensorRT. --no-deps: its only dependency is TensorRT itself (not on PyPI).
	$(BIN)/python -m pip install -q --no-deps 'tensorrt-stubs==10.13.0.35.1'
	touch $@

install: $(BIN)/edgepipe

# NVIDIA's real TensorRT Python bindings (pinned in tests/realtrt/releases.py), run over stand-in core libraries
# built with the system C/C++ compiler; offline, their tests skip with one line naming the wheel.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
trt-wheels: install
	@command -v g++ >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && $(SUDO) apt-get install -y -q g++; } \
		|| echo "trt-wheels: no C/C++ compiler; the real-TensorRT tests will skip"
	EDGEPIPE_TRT_WHEELS=$${EDGEPIPE_TRT_WHEELS:-.cache/trt-wheels} $(BIN)/python tests/realtrt/releases.py download

demo: install
	$(BIN)/edgepipe pipeline recipes/mnist-lenet5.yaml --out runs/demo

test: install trt-wheels
	$(BIN)/ruff check edgepipe tests benchmarks
	$(BIN)/python -m pytest

test-fast: install trt-wheels
	$(BIN)/python -m pytest -m "not integration"

lint: install
	$(BIN)/ruff check edgepipe tests benchmarks
	$(BIN)/python -m pytest -q tests/unit/test_import_layers.py  # the layers import downward only

bench: install
	$(BIN)/python benchmarks/cpu_table.py

clean:
	rm -rf runs .pytest_cache
