// A fake TensorRT core under NVIDIA's real Python bindings: compiled against one release's public headers
// (NvInfer.h, NvInferImpl.h, NvInferRuntime*.h, NvOnnxParser.h from NVIDIA/TensorRT include/ at the release
// tag), it implements the apiv:: interfaces and the ONNX parser interface that edgepipe's build, load and
// execute paths reach through the bindings. Everything else is a generated stub (stubs.h, gen_stubs.py) that
// aborts naming the method.
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

namespace
{
constexpr int64_t kActivationBytes = 3 << 20;  // what a fake engine says it needs for activations

void record(char const* format, ...)
{
    char const* path = std::getenv("FAKECORE_LOG");
    if (!path)
        return;
    FILE* log = std::fopen(path, "a");
    if (!log)
        return;
    va_list args;
    va_start(args, format);
    std::vfprintf(log, format, args);
    va_end(args);
    std::fputc('\n', log);
    std::fclose(log);
}

std::string dimsText(Dims const& dims)
{
    std::string text;
    for (int32_t i = 0; i < dims.nbDims; ++i)
        text += (i ? "," : "") + std::to_string(static_cast<long long>(dims.d[i]));
    return "(" + text + ")";
}

Dims readDims(std::istream& in)
{
    Dims dims{};
    in >> dims.nbDims;
    for (int32_t i = 0; i < dims.nbDims; ++i)
    {
        long long value;
        in >> value;
        dims.d[i] = static_cast<std::remove_reference<decltype(dims.d[0])>::type>(value);
    }
    return dims;
}

void writeDims(std::ostream& out, Dims const& dims)
{
    out << dims.nbDims;
    for (int32_t i = 0; i < dims.nbDims; ++i)
        out << ' ' << static_cast<long long>(dims.d[i]);
}

void logError(ILogger* logger, std::string const& message)
{
    if (logger)
        logger->log(ILogger::Severity::kERROR, message.c_str());
}

// --- host memory, tensors, network ---------------------------------------------------------------------------

class HostMemoryImpl : public apiv::Stub_VHostMemory
{
public:
    explicit HostMemoryImpl(std::string bytes) : mBytes(std::move(bytes)) {}
    void* data() const noexcept override { return const_cast<char*>(mBytes.data()); }
    std::size_t size() const noexcept override { return mBytes.size(); }
    DataType type() const noexcept override { return DataType::kUINT8; }
    std::string mBytes;
};

class HostMemory : public IHostMemory
{
public:
    explicit HostMemory(std::string bytes) : mImplObject(std::move(bytes)) { mImpl = &mImplObject; }
    HostMemoryImpl mImplObject;
};

struct TensorInfo
{
    std::string name;
    DataType type{DataType::kFLOAT};
    Dims dims{};
    bool input{true};
};

class TensorImpl : public apiv::Stub_VTensor
{
public:
    explicit TensorImpl(TensorInfo info) : mInfo(std::move(info)) {}
    char const* getName() const noexcept override { return mInfo.name.c_str(); }
    Dims getDimensions() const noexcept override { return mInfo.dims; }
    DataType getType() const noexcept override { return mInfo.type; }
    bool isNetworkInput() const noexcept override { return mInfo.input; }
    bool isNetworkOutput() const noexcept override { return !mInfo.input; }
    TensorInfo mInfo;
};

class Tensor : public ITensor
{
public:
    explicit Tensor(TensorInfo info) : mImplObject(std::move(info)) { mImpl = &mImplObject; }
    TensorImpl mImplObject;
};

class NetworkImpl : public apiv::Stub_VNetworkDefinition
{
public:
    explicit NetworkImpl(uint32_t flags) : mFlags(flags) {}
    int32_t getNbInputs() const noexcept override { return count(true); }
    ITensor* getInput(int32_t index) const noexcept override { return nth(true, index); }
    int32_t getNbOutputs() const noexcept override { return count(false); }
    ITensor* getOutput(int32_t index) const noexcept override { return nth(false, index); }
#if NV_TENSORRT_MAJOR >= 10
    NetworkDefinitionCreationFlags getFlags() const noexcept override { return mFlags; }
#endif
    void add(TensorInfo info) { mTensors.emplace_back(new Tensor(std::move(info))); }
    int32_t count(bool input) const
    {
        int32_t n = 0;
        for (auto const& t : mTensors)
            n += t->mImplObject.mInfo.input == input;
        return n;
    }
    ITensor* nth(bool input, int32_t index) const
    {
        for (auto const& t : mTensors)
            if (t->mImplObject.mInfo.input == input && index-- == 0)
                return t.get();
        return nullptr;
    }
    uint32_t mFlags;
    std::vector<std::unique_ptr<Tensor>> mTensors;
};

class Network : public INetworkDefinition
{
public:
    explicit Network(uint32_t flags) : mImplObject(flags) { mImpl = &mImplObject; }
    NetworkImpl mImplObject;
};

// --- optimization profile, timing cache, builder config ------------------------------------------------------

class ProfileImpl : public apiv::Stub_VOptimizationProfile
{
public:
    bool setDimensions(char const* name, OptProfileSelector select, FAKECORE_DIMS_IN dims) noexcept override
    {
        record("IOptimizationProfile::setDimensions %s %d %s", name, static_cast<int>(select), dimsText(dims).c_str());
        mShapes[name][static_cast<int>(select)] = dims;
        return true;
    }
    Dims getDimensions(char const* name, OptProfileSelector select) const noexcept override
    {
        auto found = mShapes.find(name);
        return found == mShapes.end() ? Dims{-1, {}} : found->second[static_cast<int>(select)];
    }
    bool isValid() const noexcept override { return !mShapes.empty(); }
    std::map<std::string, std::array<Dims, 3>> mShapes;
};

class Profile : public IOptimizationProfile
{
public:
    Profile() { mImpl = &mImplObject; }
    ProfileImpl mImplObject;
};

std::string releaseTag()
{
    return "TIMING(" + std::to_string(NV_TENSORRT_VERSION) + ")";
}

class TimingCacheImpl : public apiv::Stub_VTimingCache
{
public:
    explicit TimingCacheImpl(std::string data) : mData(std::move(data)) {}
    IHostMemory* serialize() const noexcept override
    {
        record("ITimingCache::serialize");
        // A timing cache holds tactic timings of one release on one GPU: the fake keeps the release in its header.
        std::string body = mData.rfind(releaseTag(), 0) == 0 ? mData : releaseTag() + "[" + mData + "]";
        return new HostMemory(body);
    }
    std::string mData;
};

class TimingCache : public ITimingCache
{
public:
    explicit TimingCache(std::string data) : mImplObject(std::move(data)) { mImpl = &mImplObject; }
    TimingCacheImpl mImplObject;
};

class BuilderConfigImpl : public apiv::Stub_VBuilderConfig
{
public:
    void setFlags(BuilderFlags flags) noexcept override { mFlags = flags; }
    BuilderFlags getFlags() const noexcept override { return mFlags; }
    void setFlag(BuilderFlag flag) noexcept override
    {
        record("IBuilderConfig::setFlag %d", static_cast<int>(flag));
        mFlags |= 1U << static_cast<int>(flag);
    }
    bool getFlag(BuilderFlag flag) const noexcept override { return mFlags & (1U << static_cast<int>(flag)); }
    void setDLACore(int32_t core) noexcept override
    {
        record("IBuilderConfig::setDLACore %d", core);
        mDLACore = core;
    }
    int32_t getDLACore() const noexcept override { return mDLACore; }
    void setDefaultDeviceType(DeviceType type) noexcept override
    {
        record("IBuilderConfig::setDefaultDeviceType %d", static_cast<int>(type));
        mDeviceType = type;
    }
    DeviceType getDefaultDeviceType() const noexcept override { return mDeviceType; }
    int32_t addOptimizationProfile(IOptimizationProfile const* profile) noexcept override
    {
        record("IBuilderConfig::addOptimizationProfile");
        mProfiles.push_back(profile);
        return static_cast<int32_t>(mProfiles.size()) - 1;
    }
    int32_t getNbOptimizationProfiles() const noexcept override { return static_cast<int32_t>(mProfiles.size()); }
    ITimingCache* createTimingCache(void const* blob, std::size_t size) const noexcept override
    {
        record("IBuilderConfig::createTimingCache %zu", size);
        return new TimingCache(std::string(static_cast<char const*>(blob ? blob : ""), blob ? size : 0));
    }
    bool setTimingCache(ITimingCache const& cache, bool ignoreMismatch) noexcept override
    {
        auto const& data = static_cast<TimingCache const&>(cache).mImplObject.mData;
        bool foreign = !data.empty() && data.rfind(releaseTag(), 0) != 0;
        record("IBuilderConfig::setTimingCache %zu %d", data.size(), ignoreMismatch ? 1 : 0);
        if (foreign && !ignoreMismatch)
            return false;  // the real call refuses another release's (or GPU's) cache
        mTimingCache = &cache;
        return true;
    }
    ITimingCache const* getTimingCache() const noexcept override { return mTimingCache; }
    void setMemoryPoolLimit(MemoryPoolType pool, std::size_t size) noexcept override
    {
        record("IBuilderConfig::setMemoryPoolLimit %d %zu", static_cast<int>(pool), size);
        mPools[static_cast<int>(pool)] = size;
    }
    std::size_t getMemoryPoolLimit(MemoryPoolType pool) const noexcept override
    {
        auto found = mPools.find(static_cast<int>(pool));
        return found == mPools.end() ? 0 : found->second;
    }
    void setBuilderOptimizationLevel(int32_t level) noexcept override
    {
        record("IBuilderConfig::setBuilderOptimizationLevel %d", level);
        mOptLevel = level;
    }
    int32_t getBuilderOptimizationLevel() const noexcept override { return mOptLevel; }
    void setHardwareCompatibilityLevel(HardwareCompatibilityLevel level) noexcept override
    {
        record("IBuilderConfig::setHardwareCompatibilityLevel %d", static_cast<int>(level));
        mHardwareLevel = level;
    }
    HardwareCompatibilityLevel getHardwareCompatibilityLevel() const noexcept override { return mHardwareLevel; }
#if NV_TENSORRT_MAJOR < 11
    void setInt8Calibrator(IInt8Calibrator* calibrator) noexcept override
    {
        record("IBuilderConfig::setInt8Calibrator");
        mCalibrator = calibrator;
    }
    IInt8Calibrator* getInt8Calibrator() const noexcept override { return mCalibrator; }
    bool setCalibrationProfile(IOptimizationProfile const* profile) noexcept override
    {
        record("IBuilderConfig::setCalibrationProfile");
        mCalibrationProfile = profile;
        return true;
    }
    IInt8Calibrator* mCalibrator{nullptr};
    IOptimizationProfile const* mCalibrationProfile{nullptr};
#endif
    BuilderFlags mFlags{0};
    int32_t mDLACore{-1};
    DeviceType mDeviceType{DeviceType::kGPU};
    int32_t mOptLevel{3};
    HardwareCompatibilityLevel mHardwareLevel{HardwareCompatibilityLevel::kNONE};
    std::vector<IOptimizationProfile const*> mProfiles;
    std::map<int, std::size_t> mPools;
    ITimingCache const* mTimingCache{nullptr};
};

class BuilderConfig : public IBuilderConfig
{
public:
    BuilderConfig() { mImpl = &mImplObject; }
    BuilderConfigImpl mImplObject;
};

// --- the engine blob ----------------------------------------------------------------------------------------

struct EngineTensor
{
    TensorInfo info;
    Dims shapes[3]{};  // profile min, opt, max (inputs)
};

struct EngineDescription
{
    int64_t version{NV_TENSORRT_VERSION};
    uint32_t flags{0};
    int32_t dlaCore{-1};
    std::vector<EngineTensor> tensors;

    std::string serialize() const
    {
        std::ostringstream out;
        out << "FAKECORE-ENGINE " << version << "\nflags " << flags << "\ndla " << dlaCore << "\n";
        for (auto const& t : tensors)
        {
            out << (t.info.input ? "input " : "output ") << t.info.name << ' ' << static_cast<int>(t.info.type) << ' ';
            writeDims(out, t.info.dims);
            for (auto const& shape : t.shapes)
            {
                out << " | ";
                writeDims(out, shape);
            }
            out << "\n";
        }
        return out.str();
    }

    // false when the blob is not a fake engine at all
    bool parse(std::string const& blob)
    {
        std::istringstream in(blob);
        std::string word;
        if (!(in >> word) || word != "FAKECORE-ENGINE" || !(in >> version))
            return false;
        in >> word >> flags >> word >> dlaCore;
        while (in >> word)
        {
            EngineTensor t;
            int type;
            t.info.input = word == "input";
            in >> t.info.name >> type;
            t.info.type = static_cast<DataType>(type);
            t.info.dims = readDims(in);
            for (auto& shape : t.shapes)
            {
                in >> word;  // "|"
                shape = readDims(in);
            }
            tensors.push_back(t);
        }
        return !in.bad();
    }
};

// --- builder -------------------------------------------------------------------------------------------------

int32_t dlaCores()
{
    char const* value = std::getenv("FAKECORE_DLA_CORES");  // an AGX Orin has 2
    return value ? std::atoi(value) : 0;
}

#if NV_TENSORRT_MAJOR < 11
std::string calibrationHeader()
{
    // IInt8EntropyCalibrator2's cache header names the running release (NV_TENSORRT_VERSION: 8.6.1 -> 8601).
    return "TRT-" + std::to_string(NV_TENSORRT_VERSION) + "-EntropyCalibration2";
}
#endif

class BuilderImpl : public apiv::Stub_VBuilder
{
public:
    explicit BuilderImpl(ILogger* logger) : mLogger(logger) {}
    int32_t getNbDLACores() const noexcept override { return dlaCores(); }
    int32_t getMaxDLABatchSize() const noexcept override { return 32; }
    ILogger* getLogger() const noexcept override { return mLogger; }
    IBuilderConfig* createBuilderConfig() noexcept override
    {
        record("IBuilder::createBuilderConfig");
        return new BuilderConfig();
    }
    INetworkDefinition* createNetworkV2(NetworkDefinitionCreationFlags flags) noexcept override
    {
        record("IBuilder::createNetworkV2 %u", static_cast<unsigned>(flags));
        return new Network(flags);
    }
    IOptimizationProfile* createOptimizationProfile() noexcept override
    {
        record("IBuilder::createOptimizationProfile");
        mProfiles.emplace_back(new Profile());  // owned by the builder, as in TensorRT
        return mProfiles.back().get();
    }
    IHostMemory* buildSerializedNetwork(INetworkDefinition& network, IBuilderConfig& config) noexcept override
    {
        record("IBuilder::buildSerializedNetwork");
        auto& net = static_cast<Network&>(network).mImplObject;
        auto& cfg = static_cast<BuilderConfig&>(config).mImplObject;
        if (net.count(true) == 0 || net.count(false) == 0)
            return fail("Network must have at least one input and one output");
#if NV_TENSORRT_MAJOR == 10
        bool stronglyTyped = net.mFlags & (1U << static_cast<int>(NetworkDefinitionCreationFlag::kSTRONGLY_TYPED));
        uint32_t precision = (1U << static_cast<int>(BuilderFlag::kFP16)) | (1U << static_cast<int>(BuilderFlag::kINT8));
        if (stronglyTyped && (cfg.mFlags & precision))
            return fail("BuilderFlag::kFP16 and kINT8 are not allowed with a strongly typed network");
#endif
        EngineDescription engine;
        engine.flags = cfg.mFlags;
        engine.dlaCore = cfg.mDeviceType == DeviceType::kDLA ? cfg.mDLACore : -1;
        for (auto const& tensor : net.mTensors)
        {
            EngineTensor t;
            t.info = tensor->mImplObject.mInfo;
            if (t.info.input)
            {
                bool dynamic = false;
                for (int32_t i = 0; i < t.info.dims.nbDims; ++i)
                    dynamic |= t.info.dims.d[i] < 0;
                if (cfg.mProfiles.empty())
                {
                    if (dynamic)
                        return fail("Network has dynamic or shape inputs, but no optimization profile has been "
                                    "defined.");
                    t.shapes[0] = t.shapes[1] = t.shapes[2] = t.info.dims;
                }
                else
                {
                    auto const& profile = static_cast<Profile const*>(cfg.mProfiles[0])->mImplObject;
                    auto found = profile.mShapes.find(t.info.name);
                    if (found == profile.mShapes.end())
                        return fail("optimization profile is missing values for input " + t.info.name);
                    for (int s = 0; s < 3; ++s)
                        t.shapes[s] = found->second[s];
                }
            }
            engine.tensors.push_back(t);
        }
#if NV_TENSORRT_MAJOR < 11
        if (cfg.mCalibrator && (cfg.mFlags & (1U << static_cast<int>(BuilderFlag::kINT8))))
            calibrate(*cfg.mCalibrator, engine);
#endif
        record("IBuilder::buildSerializedNetwork -> %zu tensors", engine.tensors.size());
        return new HostMemory(engine.serialize());
    }

private:
    IHostMemory* fail(std::string const& message)
    {
        logError(mLogger, message);
        return nullptr;
    }

#if NV_TENSORRT_MAJOR < 11
    // Implicit INT8: TensorRT reads the calibrator's cache and uses it only when the header names this release;
    // otherwise it asks for batches (IInt8EntropyCalibrator2 through the bindings' Python trampoline).
    void calibrate(IInt8Calibrator& calibrator, EngineDescription const& engine)
    {
        std::size_t length = 0;
        void const* cache = calibrator.readCalibrationCache(length);
        std::string text(static_cast<char const*>(cache ? cache : ""), cache ? length : 0);
        record("IInt8Calibrator::readCalibrationCache %zu", length);
        // FAKECORE_REJECT_CALIBRATION_CACHE: behave as a TensorRT that finds the cache stale
        if (text.rfind(calibrationHeader() + "\n", 0) == 0 && !std::getenv("FAKECORE_REJECT_CALIBRATION_CACHE"))
            return;
        std::vector<char const*> names;
        for (auto const& t : engine.tensors)
            if (t.info.input)
                names.push_back(t.info.name.c_str());
        void* bindings[8] = {};
        record("IInt8Calibrator::getBatchSize %d", calibrator.getBatchSize());
        bool more = calibrator.getBatch(bindings, names.data(), static_cast<int32_t>(names.size()));
        record("IInt8Calibrator::getBatch -> %d", more ? 1 : 0);
    }
#endif

    ILogger* mLogger;
    std::vector<std::unique_ptr<Profile>> mProfiles;
};

class Builder : public IBuilder
{
public:
    explicit Builder(ILogger* logger) : mImplObject(logger) { mImpl = &mImplObject; }
    BuilderImpl mImplObject;
};

// --- runtime, engine, execution context ----------------------------------------------------------------------

class CudaEngine;

class ExecutionContextImpl : public apiv::Stub_VExecutionContext
{
public:
    explicit ExecutionContextImpl(CudaEngine const& engine);
    bool setInputShape(char const* name, Dims const& dims) noexcept override;
    Dims getTensorShape(char const* name) const noexcept override;
    bool setTensorAddress(char const* name, void* data) noexcept override
    {
        record("IExecutionContext::setTensorAddress %s", name);
        mAddresses[name] = data;
        return true;
    }
    void const* getTensorAddress(char const* name) const noexcept override
    {
        auto found = mAddresses.find(name);
        return found == mAddresses.end() ? nullptr : found->second;
    }
    bool enqueueV3(cudaStream_t stream) noexcept override;
    ICudaEngine const& getEngine() const noexcept override;

    CudaEngine const& mEngine;
    std::map<std::string, Dims> mInputShapes;
    std::map<std::string, void*> mAddresses;
};

class ExecutionContext : public IExecutionContext
{
public:
    explicit ExecutionContext(CudaEngine const& engine) : mImplObject(engine) { mImpl = &mImplObject; }
    ExecutionContextImpl mImplObject;
};

class CudaEngineImpl : public apiv::Stub_VCudaEngine
{
public:
    CudaEngineImpl(EngineDescription description, ILogger* logger) : mDescription(std::move(description)), mLogger(logger) {}
    EngineTensor const* find(char const* name) const
    {
        for (auto const& t : mDescription.tensors)
            if (t.info.name == name)
                return &t;
        return nullptr;
    }
    int32_t getNbIOTensors() const noexcept override { return static_cast<int32_t>(mDescription.tensors.size()); }
    char const* getIOTensorName(int32_t index) const noexcept override
    {
        return index >= 0 && index < getNbIOTensors() ? mDescription.tensors[index].info.name.c_str() : nullptr;
    }
    TensorIOMode getTensorIOMode(char const* name) const noexcept override
    {
        auto t = find(name);
        return !t ? TensorIOMode::kNONE : t->info.input ? TensorIOMode::kINPUT : TensorIOMode::kOUTPUT;
    }
    Dims getTensorShape(char const* name) const noexcept override
    {
        auto t = find(name);
        return t ? t->info.dims : Dims{-1, {}};
    }
    DataType getTensorDataType(char const* name) const noexcept override
    {
        auto t = find(name);
        return t ? t->info.type : DataType::kFLOAT;
    }
    Dims getProfileShape(char const* name, int32_t profile, OptProfileSelector select) const noexcept override
    {
        auto t = find(name);
        if (!t || profile != 0 || !t->info.input)
            return Dims{-1, {}};
        return t->shapes[static_cast<int>(select)];
    }
    int32_t getNbOptimizationProfiles() const noexcept override { return 1; }
#if NV_TENSORRT_MAJOR >= 10
    IExecutionContext* createExecutionContext(ExecutionContextAllocationStrategy strategy) noexcept override
    {
        record("ICudaEngine::createExecutionContext %d", static_cast<int>(strategy));
        return newContext();
    }
    int64_t getDeviceMemorySizeV2() const noexcept override { return kActivationBytes; }
#else
    IExecutionContext* createExecutionContext() noexcept override
    {
        record("ICudaEngine::createExecutionContext");
        return newContext();
    }
#endif
#if NV_TENSORRT_MAJOR < 11
    size_t getDeviceMemorySize() const noexcept override { return kActivationBytes; }
#endif
    IExecutionContext* newContext() noexcept;

    EngineDescription mDescription;
    ILogger* mLogger;
    CudaEngine const* mOwner{nullptr};
};

class CudaEngine : public ICudaEngine
{
public:
    CudaEngine(EngineDescription description, ILogger* logger) : mImplObject(std::move(description), logger)
    {
        mImpl = &mImplObject;
        mImplObject.mOwner = this;
    }
    CudaEngineImpl mImplObject;
};

IExecutionContext* CudaEngineImpl::newContext() noexcept
{
    return new ExecutionContext(*mOwner);
}

ExecutionContextImpl::ExecutionContextImpl(CudaEngine const& engine) : mEngine(engine) {}

ICudaEngine const& ExecutionContextImpl::getEngine() const noexcept
{
    return mEngine;
}

bool ExecutionContextImpl::setInputShape(char const* name, Dims const& dims) noexcept
{
    record("IExecutionContext::setInputShape %s %s", name, dimsText(dims).c_str());
    auto const& impl = mEngine.mImplObject;
    auto t = impl.find(name);
    if (!t || !t->info.input)
    {
        logError(impl.mLogger, std::string("setInputShape: no input tensor named ") + name);
        return false;
    }
    bool inside = dims.nbDims == t->shapes[0].nbDims;
    for (int32_t i = 0; inside && i < dims.nbDims; ++i)
        inside = t->shapes[0].d[i] <= dims.d[i] && dims.d[i] <= t->shapes[2].d[i];
    if (!inside)
    {
        logError(impl.mLogger, "IExecutionContext::setInputShape: " + dimsText(dims) +
                                   " is outside the optimization profile");
        return false;
    }
    mInputShapes[name] = dims;
    return true;
}

Dims ExecutionContextImpl::getTensorShape(char const* name) const noexcept
{
    auto const& impl = mEngine.mImplObject;
    auto t = impl.find(name);
    if (!t)
        return Dims{-1, {}};
    if (t->info.input)
    {
        auto found = mInputShapes.find(name);
        return found == mInputShapes.end() ? t->info.dims : found->second;
    }
    Dims shape = t->info.dims;
    for (auto const& [input, dims] : mInputShapes)
        if (shape.nbDims > 0 && shape.d[0] < 0)
            shape.d[0] = dims.d[0];  // outputs follow the batch of the input
    return shape;
}

bool ExecutionContextImpl::enqueueV3(cudaStream_t stream) noexcept
{
    record("IExecutionContext::enqueueV3 %p", static_cast<void*>(stream));
    auto const& impl = mEngine.mImplObject;
    EngineTensor const* input = nullptr;
    for (auto const& t : impl.mDescription.tensors)
        if (t.info.input)
            input = &t;
    if (!input || mInputShapes.find(input->info.name) == mInputShapes.end())
    {
        logError(impl.mLogger, "enqueueV3: input shapes are not all specified");
        return false;
    }
    Dims in = mInputShapes.at(input->info.name);
    int64_t batch = in.d[0], perSample = 1;
    for (int32_t i = 1; i < in.nbDims; ++i)
        perSample *= in.d[i];
    auto source = static_cast<float const*>(getTensorAddress(input->info.name.c_str()));
    for (auto const& t : impl.mDescription.tensors)
    {
        if (t.info.input)
            continue;
        auto target = static_cast<float*>(const_cast<void*>(getTensorAddress(t.info.name.c_str())));
        if (!source || !target || t.info.type != DataType::kFLOAT || input->info.type != DataType::kFLOAT)
        {
            logError(impl.mLogger, "enqueueV3: tensor " + t.info.name + " has no address or is not float");
            return false;
        }
        Dims out = getTensorShape(t.info.name.c_str());
        int64_t width = 1;
        for (int32_t i = 1; i < out.nbDims; ++i)
            width *= out.d[i];
        for (int64_t n = 0; n < batch; ++n)
        {
            double sum = 0;
            for (int64_t j = 0; j < perSample; ++j)
                sum += source[n * perSample + j];
            for (int64_t k = 0; k < width; ++k)
                target[n * width + k] = static_cast<float>(sum * (k + 1));
        }
    }
    return true;
}

class RuntimeImpl : public apiv::Stub_VRuntime
{
public:
    explicit RuntimeImpl(ILogger* logger) : mLogger(logger) {}
    void setDLACore(int32_t core) noexcept override
    {
        record("IRuntime::setDLACore %d", core);
        mDLACore = core;
    }
    int32_t getDLACore() const noexcept override { return mDLACore; }
    int32_t getNbDLACores() const noexcept override { return dlaCores(); }
    ILogger* getLogger() const noexcept override { return mLogger; }
    void setEngineHostCodeAllowed(bool allowed) noexcept override
    {
        record("IRuntime::setEngineHostCodeAllowed %d", allowed ? 1 : 0);
        mHostCode = allowed;
    }
    bool getEngineHostCodeAllowed() const noexcept override { return mHostCode; }
#if NV_TENSORRT_MAJOR >= 10
    ICudaEngine* deserializeCudaEngine(void const* blob, std::size_t size) noexcept override
#else
    ICudaEngine* deserializeCudaEngine(void const* blob, std::size_t size, IPluginFactory*) noexcept override
#endif
    {
        record("IRuntime::deserializeCudaEngine %zu", size);
        EngineDescription engine;
        if (!blob || !engine.parse(std::string(static_cast<char const*>(blob), size)))
            return fail("IRuntime::deserializeCudaEngine: the engine plan file is corrupted");
        if (engine.version != NV_TENSORRT_VERSION)
            return fail("The engine plan file is not compatible with this version of TensorRT, expecting library "
                        "version " + std::to_string(NV_TENSORRT_VERSION) + " got " + std::to_string(engine.version));
        uint32_t versionCompatible = 1U << static_cast<int>(BuilderFlag::kVERSION_COMPATIBLE);
        if ((engine.flags & versionCompatible) && !mHostCode)
            return fail("Cannot deserialize a version-compatible engine: engine host code is not allowed "
                        "(IRuntime::setEngineHostCodeAllowed)");
        if (engine.dlaCore >= 0 && mDLACore < 0)
            return fail("a DLA engine needs IRuntime::setDLACore before deserialization");
        return new CudaEngine(std::move(engine), mLogger);
    }

private:
    ICudaEngine* fail(std::string const& message)
    {
        logError(mLogger, message);
        return nullptr;
    }
    ILogger* mLogger;
    int32_t mDLACore{-1};
    bool mHostCode{false};
};

class Runtime : public IRuntime
{
public:
    explicit Runtime(ILogger* logger) : mImplObject(logger) { mImpl = &mImplObject; }
    RuntimeImpl mImplObject;
};

// --- the ONNX parser ---------------------------------------------------------------------------------------------

class ParserError : public nvonnxparser::Stub_IParserError
{
public:
    ParserError(int node, std::string desc) : mNode(node), mDesc(std::move(desc)) {}
    nvonnxparser::ErrorCode code() const noexcept override { return nvonnxparser::ErrorCode::kMODEL_DESERIALIZE_FAILED; }
    char const* desc() const noexcept override { return mDesc.c_str(); }
    char const* file() const noexcept override { return "fakecore.cpp"; }
    int line() const noexcept override { return 0; }
    char const* func() const noexcept override { return "parseFromFile"; }
    int node() const noexcept override { return mNode; }
    int mNode;
    std::string mDesc;
};

class Parser : public nvonnxparser::Stub_IParser
{
public:
    Parser(Network& network, ILogger* logger) : mNetwork(network), mLogger(logger) {}
    bool parseFromFile(char const* path, int verbosity) noexcept override
    {
        record("IParser::parseFromFile %s %d", path, verbosity);
        std::ifstream model(path, std::ios::binary);
        if (!model)
            return error(-1, std::string("Failed to open file: ") + path);
        std::ifstream side(std::string(path) + ".fakecore");
        if (!side)
            return error(-1, std::string("fake core: no side description ") + path + ".fakecore");
        std::string kind;
        while (side >> kind)
        {
            TensorInfo info;
            int type;
            info.input = kind == "input";
            side >> info.name >> type;
            info.type = static_cast<DataType>(type);
            info.dims = readDims(side);
            if (kind == "error")  // "error NODE 0 0": the test asks for a parser failure at NODE
                return error(std::atoi(info.name.c_str()), "fake core: unsupported operator at node " + info.name);
            mNetwork.mImplObject.add(info);
        }
        return true;
    }
    int getNbErrors() const noexcept override { return static_cast<int>(mErrors.size()); }
    nvonnxparser::IParserError const* getError(int index) const noexcept override
    {
        return index >= 0 && index < getNbErrors() ? &mErrors[index] : nullptr;
    }
    void clearErrors() noexcept override { mErrors.clear(); }

private:
    bool error(int node, std::string const& message)
    {
        mErrors.emplace_back(node, message);
        logError(mLogger, message);
        return false;
    }
    Network& mNetwork;
    ILogger* mLogger;
    std::vector<ParserError> mErrors;
};

bool versionMatches(int32_t asked, char const* what, void* logger)
{
    // The bindings pass the NV_TENSORRT_VERSION they were compiled with; this core was compiled against one
    // release's headers, so a different major.minor means the wrong headers (and possibly a different ABI).
    int32_t major = asked / 10000, minor = (asked / 100) % 100;
    if (NV_TENSORRT_MAJOR < 10)
        major = asked / 1000, minor = (asked / 100) % 10;
    if (major == NV_TENSORRT_MAJOR && minor == NV_TENSORRT_MINOR)
        return true;
    std::fprintf(stderr, "fake TensorRT core: %s asked for version %d; this core was built from the %d.%d headers\n",
                 what, asked, NV_TENSORRT_MAJOR, NV_TENSORRT_MINOR);
    logError(static_cast<ILogger*>(logger), "fake core: version mismatch");
    return false;
}
}  // namespace

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
