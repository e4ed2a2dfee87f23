// Call log, Dims helpers, host memory, tensors, the network, and the engine blob format.
// Part of the fake TensorRT core: included once, in order, by fakecore.cpp (one translation unit).
#pragma once

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

}  // namespace
