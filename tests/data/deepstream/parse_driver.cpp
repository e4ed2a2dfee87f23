/*
 * TEST-ONLY: calls a bbox parser the way Gst-nvinfer does (dlopen the custom-lib-path, dlsym the
 * parse-bbox-func-name, then once per frame with that frame's slice of every output layer) and prints the objects.
 *
 *   parse_driver LIB FUNC WIDTH HEIGHT NUM_CLASSES THRESHOLDS FRAMES NAME:DTYPE:DIMS:FILE...
 *
 * THRESHOLDS: one pre-cluster threshold per class, comma-separated. DTYPE: NvDsInferDataType number. DIMS: one
 * frame's dims, 'x'-separated ("-" for a scalar). FILE: the raw batch (FRAMES slices). Prints
 * "frame classId left top width height confidence" per object with 9 significant digits (float round trip).
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

int main(int argc, char** argv) {
    if (argc < 9) {
        std::fprintf(stderr, "usage: parse_driver LIB FUNC WIDTH HEIGHT NUM_CLASSES THRESHOLDS FRAMES LAYER...\n");
        return 2;
    }
    void* library = dlopen(argv[1], RTLD_LAZY);
    if (!library) { std::fprintf(stderr, "dlopen: %s\n", dlerror()); return 2; }
    NvDsInferParseCustomFunc parse = reinterpret_cast<NvDsInferParseCustomFunc>(dlsym(library, argv[2]));
    if (!parse) { std::fprintf(stderr, "dlsym: %s\n", dlerror()); return 2; }
    NvDsInferNetworkInfo network = {(unsigned int) std::atoi(argv[3]), (unsigned int) std::atoi(argv[4]), 3};
    NvDsInferParseDetectionParams params;
    params.numClassesConfigured = (unsigned int) std::atoi(argv[5]);
    for (const std::string& value : split(argv[6], ',')) params.perClassPreclusterThreshold.push_back(std::stof(value));
    params.perClassPostclusterThreshold.assign(params.perClassPreclusterThreshold.size(), 0.0f);
    const int frames = std::atoi(argv[7]);

    std::vector<std::vector<char>> storage;
    std::vector<std::string> names;
    std::vector<NvDsInferLayerInfo> layers;
    for (int i = 8; i < argc; ++i) {
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
        layer.bindingIndex = i - 7;
        std::ifstream file(spec[3], std::ios::binary);
        storage.emplace_back((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
        if (storage.back().size() != (size_t) frames * layer.inferDims.numElements * elementSize(layer.dataType)) {
            std::fprintf(stderr, "%s: %zu bytes, not %d frames of its dims\n", spec[3].c_str(), storage.back().size(),
                         frames);
            return 2;
        }
        names.push_back(spec[0]);
        layers.push_back(layer);
    }
    for (size_t i = 0; i < layers.size(); ++i) layers[i].layerName = names[i].c_str();
    for (int frame = 0; frame < frames; ++frame) {
        for (size_t i = 0; i < layers.size(); ++i) {  // nvinfer hands each frame its own slice of the host buffer
            const size_t bytes = layers[i].inferDims.numElements * elementSize(layers[i].dataType);
            layers[i].buffer = storage[i].data() + frame * bytes;
        }
        std::vector<NvDsInferObjectDetectionInfo> objects;
        if (!parse(layers, network, params, objects)) { std::printf("frame %d failed\n", frame); return 1; }
        for (const NvDsInferObjectDetectionInfo& o : objects)
            std::printf("%d %u %.9g %.9g %.9g %.9g %.9g\n", frame, o.classId, o.left, o.top, o.width, o.height,
                        o.detectionConfidence);
    }
    return 0;
}
