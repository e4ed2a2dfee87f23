// Runtime, engine and execution context (enqueueV3 computes at the tensor addresses).
// Part of the fake TensorRT core: included once, in order, by fakecore.cpp (one translation unit).
#pragma once

namespace
{
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

}  // namespace
