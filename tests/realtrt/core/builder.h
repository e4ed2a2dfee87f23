// Optimization profile, timing cache, builder config and builder (serializes a fake engine).
// Part of the fake TensorRT core: included once, in order, by fakecore.cpp (one translation unit).
#pragma once

namespace
{
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

}  // namespace
