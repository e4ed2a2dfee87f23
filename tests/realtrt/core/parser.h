// The ONNX parser (inputs and outputs from <model>.onnx.fakecore) and the version check.
// Part of the fake TensorRT core: included once, in order, by fakecore.cpp (one translation unit).
#pragma once

namespace
{
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
