"""The names ``edgepipe.device.runtime`` offered before the device runtime became a package, re-exported so that
code and tests importing them keep working. New code imports from the module that owns a name (see the package
docstring); this module goes once nothing imports it."""

from .builder import build_serialized_engine, check_engine_deserializes, configure, default_parser_errors  # noqa: F401
from .bundle import Bundle  # noqa: F401
from .calib_cache import (  # noqa: F401
    CACHE_ALGORITHM,
    cache_header,
    check_calibrator_used_cache,
    make_cache_calibrator,
    read_cache,
    with_running_header,
)
from .cli import COMMANDS, main, make_parser  # noqa: F401
from .commands import RUNTIME_VERSION, bench_model, doctor_report, evaluate_bundle, infer_in_batches  # noqa: F401
from .common import (  # noqa: F401
    emit,
    read_json,
    say,
    sha256_file,
    tensorrt_version_number,
    version_tuple,
    write_bytes_atomic,
)
from .cuda import (  # noqa: F401
    MEMCPY_DEVICE_TO_HOST,
    MEMCPY_HOST_TO_DEVICE,
    Cudart,
    HostBuffer,
    cuda_device,
    cudart,
    jetson_model,
    set_cudart,
)
from .engine import Engine, OrtModel, TensorIO  # noqa: F401
from .errors import DeviceError, MissingPiece  # noqa: F401
from .layout import *  # noqa: F403 - every bundle layout name, as before
from .loader import (  # noqa: F401
    TENSORRT_INSTALL_HINT,
    import_tensorrt,
    load_tensorrt,
    make_logger,
    make_runtime,
    numpy_dtype,
    set_tensorrt_module,
    tensorrt_version,
)
from .planning import BuildPlan, plan_build  # noqa: F401
from .serving import deepstream_config, triton_config  # noqa: F401
from .settings import (  # noqa: F401
    DEFAULT_WORKSPACE_MIB,
    BuildSettings,
    check_release_supports,
    parse_batch,
)
from .trtexec import TRTEXEC, find_trtexec, trtexec_release  # noqa: F401
