"""The names ``edgepipe.device.runtime`` offered before the device runtime became a package, re-exported so that
code and tests importing them keep working. New code imports from the module that owns a name (see the package
docstring); this module goes once nothing imports it."""

from .builder import (  # noqa: F401
    build_serialized_engine,
    check_engine_deserializes,
    configure,
    default_parser_errors,
    network_flags,
    profile_shapes,
)
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
from .commands import (  # noqa: F401
    RUNTIME_VERSION,
    bench_model,
    command_bench,
    command_build,
    command_doctor,
    command_eval,
    command_infer,
    doctor_report,
    evaluate_bundle,
    infer_in_batches,
)
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
    _injected,
    import_tensorrt,
    load_tensorrt,
    make_logger,
    make_runtime,
    numpy_dtype,
    set_tensorrt_module,
    tensorrt_version,
)
from .planning import BuildPlan, plan_build  # noqa: F401
from .scoring import DISPLAY_SCORE, TASK_SCORES, model_outputs  # noqa: F401
from .serving import command_deepstream, command_triton, deepstream_config, triton_config  # noqa: F401
from .settings import (  # noqa: F401
    DEFAULT_WORKSPACE_MIB,
    OPTION,
    BuildSettings,
    check_release_supports,
    parse_batch,
)
from .trtexec import TRTEXEC, find_trtexec, trtexec_release  # noqa: F401

# Constants that were spelled out here and now live in the settings table.
DEFAULT_BATCH = OPTION["batch"].default
MAX_OPT_LEVEL = OPTION["opt_level"].high
HARDWARE_COMPAT_LEVELS = dict((name, level[0]) for name, level in OPTION["hardware_compat"].levels.items())
_trtexec_release = trtexec_release
