"""The device runtime: build, eval, infer and bench a deploy bundle with nothing but TensorRT and numpy.

Shipped whole in every bundle as the package ``edgepipe_device/`` beside the ``edgepipe_device.py`` launcher
(launcher.py), which checks the Python version first. It imports the standard library, numpy (>= 1.13) and
``tensorrt`` (8.0 to 11.x), and reaches CUDA through ``ctypes`` on libcudart, as Polygraphy's
polygraphy/cuda/cuda.py does: no pycuda (no aarch64 wheel), no torch (PyPI's aarch64 torch has no CUDA), no
scikit-learn, pydantic, typer, rich, yaml, onnx or PIL. Its syntax runs on Python 3.6 (JetPack 4.6 on the Nano;
checked by ``vermin -t=3.6-`` in the tests); its modules import each other relatively, so the same files run as
``edgepipe.device`` on the workstation and as ``edgepipe_device`` in a bundle. The full ``edgepipe build / eval /
bench`` use the same engine, builder, settings and CUDA code from here (edgepipe/trt/, edgepipe/runners/): one
implementation of everything that touches TensorRT.

Modules, bottom up: errors, layout, common (output, files, versions), cuda (libcudart), scoring (task scores),
loader (import tensorrt), settings (every build setting, declared once), calib_cache, planning (what a precision
needs per release), builder, engine (runners), bundle, trtexec, commands, serving (Triton, DeepStream), cli.
"""
