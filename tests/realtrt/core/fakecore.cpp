// A fake TensorRT core under NVIDIA's real Python bindings: compiled against one release's public headers
// (NvInfer.h, NvInferImpl.h, NvInferRuntime*.h, NvOnnxParser.h from NVIDIA/TensorRT include/ at the release
// tag), it implements the apiv:: interfaces and the ONNX parser interface that edgepipe's build, load and
// execute paths reach through the bindings. Everything else is a generated stub (stubs.h, gen_stubs.py) that
// aborts naming the method. One translation unit: common.h, builder.h, runtime.h and parser.h hold the classes,
// this file the entry points the bindings link (createInferBuilder_INTERNAL, ...).
//
// - The ONNX "parser" takes the graph's inputs and outputs from a side description, <model>.onnx.fakecore,
//   lines "input|output NAME DATATYPE NBDIMS D0 D1 ..." (DataType as TensorRT numbers it, -1 for a dynamic
//   dim); a line "error NODE 0 0" makes the parse fail at that node.
// - An engine serializes to text the fake runtime deserializes: "FAKECORE-ENGINE <NV_TENSORRT_VERSION>", the
//   build flags, then the I/O tensors with the profile's min/opt/max. Another release's engine is refused.
// - Execution reads each float input at its tensor address and writes every float output as
//   out[n, k] = sum(input[n]) * (k + 1): deterministic, and it proves the bytes went through.
// - Every call edgepipe's paths make is appended to $FAKECORE_LOG ("Class::method args"), so a test asserts
//   exactly what the real bindings passed down.
#include "stubs.h"

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <array>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

using namespace nvinfer1;

// Where the releases' signatures differ (NvInferImpl.h, NvOnnxParser.h of 8.6 vs 10.x/11.x)
#if NV_TENSORRT_MAJOR >= 10
#define FAKECORE_DIMS_IN Dims const&
#define FAKECORE_PARSER_NOEXCEPT noexcept
#else
#define FAKECORE_DIMS_IN Dims
#define FAKECORE_PARSER_NOEXCEPT
#endif

[[noreturn]] void fakecore_unimplemented(char const* method) noexcept
{
    std::fprintf(stderr, "fake TensorRT core: %s is not implemented (the real bindings called it)\n", method);
    std::fflush(stderr);
    std::abort();
}

#include "common.h"
#include "builder.h"
#include "runtime.h"
#include "parser.h"


extern "C"
{
    TENSORRTAPI void* createInferBuilder_INTERNAL(void* logger, int32_t version) noexcept
    {
        record("createInferBuilder %d", version);
        return versionMatches(version, "createInferBuilder", logger) ? new Builder(static_cast<ILogger*>(logger))
                                                                     : nullptr;
    }
    TENSORRTAPI void* createInferRuntime_INTERNAL(void* logger, int32_t version) noexcept
    {
        record("createInferRuntime %d", version);
        return versionMatches(version, "createInferRuntime", logger) ? new Runtime(static_cast<ILogger*>(logger))
                                                                     : nullptr;
    }
    TENSORRTAPI void* createInferRefitter_INTERNAL(void*, void*, int32_t) noexcept
    {
        fakecore_unimplemented("createInferRefitter_INTERNAL");
    }
    TENSORRTAPI int32_t getInferLibVersion() noexcept
    {
        return NV_TENSORRT_VERSION;
    }
    TENSORRTAPI nvinfer1::IPluginRegistry* getPluginRegistry() noexcept
    {
        return nullptr;
    }
    TENSORRTAPI nvinfer1::IPluginRegistry* getBuilderPluginRegistry(nvinfer1::EngineCapability) noexcept
    {
        return nullptr;
    }
    TENSORRTAPI void* createNvOnnxParser_INTERNAL(void* network, void* logger, int version) FAKECORE_PARSER_NOEXCEPT
    {
        record("createNvOnnxParser %d", version);
        return new Parser(*static_cast<Network*>(static_cast<INetworkDefinition*>(network)), static_cast<ILogger*>(logger));
    }
    TENSORRTAPI void* createNvOnnxParserRefitter_INTERNAL(void*, void*, int32_t) noexcept
    {
        fakecore_unimplemented("createNvOnnxParserRefitter_INTERNAL");
    }
    TENSORRTAPI int getNvOnnxParserVersion() FAKECORE_PARSER_NOEXCEPT
    {
        return NV_TENSORRT_VERSION;
    }
    TENSORRTAPI bool initLibNvInferPlugins(void*, char const*) noexcept
    {
        return true;
    }
}
