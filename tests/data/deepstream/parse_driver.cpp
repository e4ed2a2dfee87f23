/*
 * TEST-ONLY: calls a parser the way Gst-nvinfer does (dlopen the custom-lib-path, dlsym the parse-bbox-func-name or
 * parse-classifier-func-name, then once per frame with that frame's slice of every output layer) and prints what it
 * returns.
 *
 *   parse_driver bbox LIB FUNC WIDTH HEIGHT NUM_CLASSES THRESHOLDS FRAMES NAME:DTYPE:DIMS:FILE...
 *   parse_driver classifier LIB FUNC WIDTH HEIGHT THRESHOLD FRAMES NAME:DTYPE:DIMS:FILE...
 *
 * THRESHOLDS: one pre-cluster threshold per class, comma-separated; THRESHOLD: classifier-threshold. DTYPE:
 * NvDsInferDataType number. DIMS: one frame's dims, 'x'-separated ("-" for a scalar). FILE: the raw batch (FRAMES
 * slices). Prints, with 9 significant digits (float round trip), per object "frame classId left top width height
 * confidence"; per attribute "frame attributeIndex attributeValue attributeConfidence [attributeLabel] [descString]".
 * Attribute labels are free()d after printing, as nvinfer's releaseFrameOutput does.
 */
#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include "nvdsinfer_custom_impl.h"

static std::vector<std::string> split(const std::string& text, char separator) {
    std::vector<std::string> parts;
    std::stringstream stream(text);
    std::string part;
    while (std::getline(stream, part, separator)) parts.push_back(part);
    return parts;
}

static unsigned int elementSize(int dtype) { return dtype == HALF ? 2 : dtype == INT8 ? 1 : 4; }

struct Layers {  // the output layers, their names and the bytes of every frame
    std::vector<std::vector<char>> storage;
    std::vector<std::string> names;
    std::vector<NvDsInferLayerInfo> infos;

    bool read(int first, int argc, char** argv, int frames) {
        for (int i = first; i < argc; ++i) {
            std::vector<std::string> spec = split(argv[i], ':');
            NvDsInferLayerInfo layer = {};
            layer.dataType = (NvDsInferDataType) std::atoi(spec[1].c_str());
            layer.inferDims.numElements = 1;
            if (spec[2] != "-") {
                for (const std::string& d : split(spec[2], 'x')) {
                    layer.inferDims.d[layer.inferDims.numDims++] = (unsigned int) std::atoi(d.c_str());
                    layer.inferDims.numElements *= (unsigned int) std::atoi(d.c_str());
                }
            }
            layer.bindingIndex = i - first + 1;
            std::ifstream file(spec[3], std::ios::binary);
            storage.emplace_back((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
            if (storage.back().size() != (size_t) frames * layer.inferDims.numElements * elementSize(layer.dataType)) {
                std::fprintf(stderr, "%s: %zu bytes, not %d frames of its dims\n", spec[3].c_str(),
                             storage.back().size(), frames);
                return false;
            }
            names.push_back(spec[0]);
            infos.push_back(layer);
        }
        for (size_t i = 0; i < infos.size(); ++i) infos[i].layerName = names[i].c_str();
        return true;
    }

    void select(int frame) {  // nvinfer hands each frame its own slice of the host buffer
        for (size_t i = 0; i < infos.size(); ++i) {
            const size_t bytes = infos[i].inferDims.numElements * elementSize(infos[i].dataType);
            infos[i].buffer = storage[i].data() + frame * bytes;
        }
    }
};

static void* symbol(const char* library, const char* name) {
    void* handle = dlopen(library, RTLD_LAZY);
    if (!handle) { std::fprintf(stderr, "dlopen: %s\n", dlerror()); return nullptr; }
    void* found = dlsym(handle, name);
    if (!found) std::fprintf(stderr, "dlsym: %s\n", dlerror());
    return found;
}

static int runBbox(int argc, char** argv) {
    NvDsInferParseCustomFunc parse = reinterpret_cast<NvDsInferParseCustomFunc>(symbol(argv[2], argv[3]));
    if (!parse) return 2;
    NvDsInferNetworkInfo network = {(unsigned int) std::atoi(argv[4]), (unsigned int) std::atoi(argv[5]), 3};
    NvDsInferParseDetectionParams params;
    params.numClassesConfigured = (unsigned int) std::atoi(argv[6]);
    for (const std::string& value : split(argv[7], ',')) params.perClassPreclusterThreshold.push_back(std::stof(value));
    params.perClassPostclusterThreshold.assign(params.perClassPreclusterThreshold.size(), 0.0f);
    const int frames = std::atoi(argv[8]);
    Layers layers;
    if (!layers.read(9, argc, argv, frames)) return 2;
    for (int frame = 0; frame < frames; ++frame) {
        layers.select(frame);
        std::vector<NvDsInferObjectDetectionInfo> objects;
        if (!parse(layers.infos, network, params, objects)) { std::printf("frame %d failed\n", frame); return 1; }
        for (const NvDsInferObjectDetectionInfo& o : objects)
            std::printf("%d %u %.9g %.9g %.9g %.9g %.9g\n", frame, o.classId, o.left, o.top, o.width, o.height,
                        o.detectionConfidence);
    }
    return 0;
}

static int runClassifier(int argc, char** argv) {
    NvDsInferClassiferParseCustomFunc parse =
        reinterpret_cast<NvDsInferClassiferParseCustomFunc>(symbol(argv[2], argv[3]));
    if (!parse) return 2;
    NvDsInferNetworkInfo network = {(unsigned int) std::atoi(argv[4]), (unsigned int) std::atoi(argv[5]), 3};
    const float threshold = std::stof(argv[6]);
    const int frames = std::atoi(argv[7]);
    Layers layers;
    if (!layers.read(8, argc, argv, frames)) return 2;
    for (int frame = 0; frame < frames; ++frame) {
        layers.select(frame);
        std::vector<NvDsInferAttribute> attributes;
        std::string description;
        if (!parse(layers.infos, network, threshold, attributes, description)) {
            std::printf("frame %d failed\n", frame);
            return 1;
        }
        for (NvDsInferAttribute& a : attributes) {
            std::printf("%d %u %u %.9g [%s] [%s]\n", frame, a.attributeIndex, a.attributeValue,
                        a.attributeConfidence, a.attributeLabel ? a.attributeLabel : "(null)", description.c_str());
            std::free(a.attributeLabel);
        }
    }
    return 0;
}

int main(int argc, char** argv) {
    const std::string kind = argc > 1 ? argv[1] : "";
    if (kind == "bbox" && argc >= 10) return runBbox(argc, argv);
    if (kind == "classifier" && argc >= 9) return runClassifier(argc, argv);
    std::fprintf(stderr, "usage: parse_driver bbox LIB FUNC WIDTH HEIGHT NUM_CLASSES THRESHOLDS FRAMES LAYER...\n"
                         "       parse_driver classifier LIB FUNC WIDTH HEIGHT THRESHOLD FRAMES LAYER...\n");
    return 2;
}
