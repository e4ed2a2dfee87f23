/*
 * edgepipe's Gst-nvinfer output parsers: DeepStream reads a bundle's engine with them. One library, two functions:
 * NvDsInferParseEdgepipe (parse-bbox-func-name, detectors) and NvDsInferClassiferParseEdgepipe
 * (parse-classifier-func-name, classifiers; "Classifer" as NVIDIA spells NvDsInferClassiferParseCustomFunc).
 *
 * Detectors:
 *
 * The engine ends in edgepipe's fixed-shape detection outputs (edgepipe/models/detector.py, models/yolo.py), NMS
 * already inside the graph, per frame:
 *   boxes [K, 4] x1, y1, x2, y2 in network-input pixels · scores [K] · classes [K] · num_detections [] or [1]
 * Entries past num_detections have score 0 and class -1. So this parser only reads the first num_detections rows,
 * applies nvinfer's per-class pre-cluster threshold, clips each box to the network input and hands it on as
 * left/top/width/height; the config sets cluster-mode=4 (no clustering) so nvinfer adds no second NMS.
 *
 * Written against DeepStream's nvdsinfer.h / nvdsinfer_custom_impl.h (6.x: NvDsInferLayerInfo.inferDims,
 * NvDsInferDataType FLOAT/HALF/INT8/INT32, NvDsInferParseDetectionParams.perClassPreclusterThreshold), in the
 * manner of NVIDIA's own parsers (NVIDIA-AI-IOT/deepstream_tao_apps post_processor/nvdsinfer_custombboxparser_tao.cpp:
 * layers found by name, boxes clipped to networkInfo) and marcoslucianops/DeepStream-Yolo
 * nvdsinfer_custom_impl_Yolo/nvdsparsebbox_Yolo.cpp. nvinfer calls it once per frame with that frame's slice of
 * every output layer (host copies), and maps the boxes back from network to frame coordinates itself.
 *
 * Build on the device: make -C deepstream DS_ROOT=/opt/nvidia/deepstream/deepstream CUDA_VER=<e.g. 11.4>
 */

#include <dlfcn.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "nvdsinfer_custom_impl.h"

namespace {

const char* const kBoxes = "boxes";
const char* const kScores = "scores";
const char* const kClasses = "classes";
const char* const kCount = "num_detections";

const NvDsInferLayerInfo* findLayer(std::vector<NvDsInferLayerInfo> const& layers, const char* name) {
    for (auto const& layer : layers) {
        if (layer.layerName && std::strcmp(layer.layerName, name) == 0) {
            return &layer;
        }
    }
    return nullptr;
}

// IEEE 754 binary16 -> float, without CUDA's cuda_fp16.h (an FP16 engine may keep FP16 outputs).
float halfToFloat(uint16_t h) {
    const uint32_t sign = (h >> 15) & 1u, exponent = (h >> 10) & 0x1fu, mantissa = h & 0x3ffu;
    float magnitude;
    if (exponent == 0) {
        magnitude = std::ldexp(static_cast<float>(mantissa), -24);  // zero or subnormal
    } else if (exponent == 31) {
        magnitude = mantissa ? NAN : INFINITY;
    } else {
        magnitude = std::ldexp(static_cast<float>(mantissa | 0x400u), static_cast<int>(exponent) - 25);
    }
    return sign ? -magnitude : magnitude;
}

bool readable(NvDsInferLayerInfo const& layer) {
    if (layer.dataType == FLOAT || layer.dataType == HALF || layer.dataType == INT32) {
        return true;
    }
    std::cerr << "NvDsInferParseEdgepipe: output '" << layer.layerName << "' has data type " << layer.dataType
              << "; expected FLOAT, HALF or INT32" << std::endl;
    return false;
}

float valueAt(NvDsInferLayerInfo const& layer, unsigned int index) {
    switch (layer.dataType) {
        case FLOAT: return static_cast<const float*>(layer.buffer)[index];
        case HALF: return halfToFloat(static_cast<const uint16_t*>(layer.buffer)[index]);
        case INT32: return static_cast<float>(static_cast<const int32_t*>(layer.buffer)[index]);
        default: return NAN;  // refused by readable()
    }
}

float clip(float value, float high) {
    return value < 0.0f ? 0.0f : (value > high ? high : value);
}

}  // namespace

extern "C" bool NvDsInferParseEdgepipe(std::vector<NvDsInferLayerInfo> const& outputLayersInfo,
                                       NvDsInferNetworkInfo const& networkInfo,
                                       NvDsInferParseDetectionParams const& detectionParams,
                                       std::vector<NvDsInferObjectDetectionInfo>& objectList) {
    const NvDsInferLayerInfo* boxes = findLayer(outputLayersInfo, kBoxes);
    const NvDsInferLayerInfo* scores = findLayer(outputLayersInfo, kScores);
    const NvDsInferLayerInfo* classes = findLayer(outputLayersInfo, kClasses);
    const NvDsInferLayerInfo* count = findLayer(outputLayersInfo, kCount);
    if (!boxes || !scores || !classes || !count) {
        std::cerr << "NvDsInferParseEdgepipe: the engine lacks one of its outputs boxes, scores, classes, "
                     "num_detections; set output-blob-names=boxes;scores;classes;num_detections" << std::endl;
        return false;
    }
    if (!readable(*boxes) || !readable(*scores) || !readable(*classes) || !readable(*count)) {
        return false;
    }
    const unsigned int rows = scores->inferDims.numElements;
    if (boxes->inferDims.numElements != 4 * rows || classes->inferDims.numElements != rows) {
        std::cerr << "NvDsInferParseEdgepipe: boxes has " << boxes->inferDims.numElements << " values, scores "
                  << rows << " and classes " << classes->inferDims.numElements << "; expected [K, 4], [K], [K]"
                  << std::endl;
        return false;
    }
    // num_detections is int32 [N] in edgepipe's graphs: one element per frame with no dims of its own, as TensorRT's
    // BatchedNMS plugin outputs its count (NVIDIA/TensorRT#1880) and the TAO parsers read it (p_keep_count[0]).
    // A float count (some exporters) is rounded.
    const float counted = valueAt(*count, 0);
    const unsigned int valid = counted > 0.0f ? static_cast<unsigned int>(std::lround(counted)) : 0u;
    const unsigned int used = valid < rows ? valid : rows;
    const float width = static_cast<float>(networkInfo.width), height = static_cast<float>(networkInfo.height);

    for (unsigned int i = 0; i < used; ++i) {
        const float classValue = valueAt(*classes, i);
        if (!(classValue >= 0.0f)) {
            continue;  // an emptied row (class -1)
        }
        const unsigned int classId = static_cast<unsigned int>(std::lround(classValue));
        if (classId >= detectionParams.numClassesConfigured ||
            classId >= detectionParams.perClassPreclusterThreshold.size()) {
            continue;  // nvinfer may only be given classes below num-detected-classes
        }
        const float score = valueAt(*scores, i);
        if (!(score >= detectionParams.perClassPreclusterThreshold[classId])) {
            continue;
        }
        const float x1 = clip(valueAt(*boxes, 4 * i), width), y1 = clip(valueAt(*boxes, 4 * i + 1), height);
        const float x2 = clip(valueAt(*boxes, 4 * i + 2), width), y2 = clip(valueAt(*boxes, 4 * i + 3), height);
        if (!(x2 > x1) || !(y2 > y1)) {
            continue;  // nothing left inside the network input
        }
        NvDsInferObjectDetectionInfo object;
        std::memset(&object, 0, sizeof(object));  // fields a newer DeepStream appends stay zero
        object.classId = classId;
        object.left = x1;
        object.top = y1;
        object.width = x2 - x1;
        object.height = y2 - y1;
        object.detectionConfidence = score;
        objectList.push_back(object);
    }
    return true;
}

CHECK_CUSTOM_PARSE_FUNC_PROTOTYPE(NvDsInferParseEdgepipe);

/*
 * Classifiers: an edgepipe classifier's engine outputs logits [C] per frame (or object), not probabilities. nvinfer's
 * own classifier parser reads FLOAT only and compares each raw value with classifier-threshold, which gst-nvinfer
 * refuses below 0 (gstnvinfer_property_parser.cpp: "Negative value specified for classifier-threshold"), so logits
 * need this parser: it takes the softmax, and reports the argmax class with its probability as one attribute when
 * the probability reaches classifier-threshold (0 reports every argmax), from FLOAT or HALF logits.
 *
 * nvinfer hands a custom classifier parser no labels (NvDsInferClassiferParseCustomFunc: layers, network info,
 * threshold; its labelfile-path feeds only the built-in parser), so this one reads the bundle's labels.txt (one class
 * per line) itself: beside the library, else in its parent directory (BUNDLE/deepstream/../labels.txt), found from
 * the library's own path (dladdr). nvinfer free()s attributeLabel (InferPostprocessor::releaseFrameOutput), hence
 * strdup, and attaches nothing when the description string is empty (attach_metadata_classifier), hence the label
 * there too. As NVIDIA's sample NvDsInferClassiferParseCustomSoftmax (sources/libs/nvdsinfer_customparser).
 */

namespace {

std::string directoryOf(std::string const& path) {
    const std::string::size_type slash = path.rfind('/');
    return slash == std::string::npos ? std::string(".") : path.substr(0, slash);
}

std::vector<std::string> readLines(std::string const& path) {
    std::vector<std::string> lines;
    std::ifstream file(path.c_str());
    std::string line;
    while (std::getline(file, line)) {
        if (!line.empty() && line[line.size() - 1] == '\r') {
            line.erase(line.size() - 1);
        }
        lines.push_back(line);
    }
    return lines;
}

std::vector<std::string> loadLabels(void const* symbol) {
    Dl_info info;
    if (dladdr(symbol, &info) && info.dli_fname) {
        const std::string here = directoryOf(info.dli_fname);
        const std::string candidates[] = {here + "/labels.txt", directoryOf(here) + "/labels.txt"};
        for (std::string const& candidate : candidates) {
            std::vector<std::string> labels = readLines(candidate);
            if (!labels.empty()) {
                return labels;
            }
        }
    }
    std::cerr << "NvDsInferClassiferParseEdgepipe: no labels.txt beside the library or in its parent directory; "
                 "classes are named by their number" << std::endl;
    return std::vector<std::string>();
}

}  // namespace

extern "C" bool NvDsInferClassiferParseEdgepipe(std::vector<NvDsInferLayerInfo> const& outputLayersInfo,
                                                NvDsInferNetworkInfo const& networkInfo, float classifierThreshold,
                                                std::vector<NvDsInferAttribute>& attrList, std::string& descString) {
    (void)networkInfo;
    // read once per process, on first use (a function-local static: thread-safe since C++11)
    static const std::vector<std::string> labels =
        loadLabels(reinterpret_cast<void const*>(&NvDsInferClassiferParseEdgepipe));
    if (outputLayersInfo.size() != 1) {
        std::cerr << "NvDsInferClassiferParseEdgepipe: " << outputLayersInfo.size() << " output layers; an edgepipe "
                  "classifier has one (its logits): set output-blob-names to it" << std::endl;
        return false;
    }
    NvDsInferLayerInfo const& logits = outputLayersInfo[0];
    if (logits.dataType != FLOAT && logits.dataType != HALF) {
        std::cerr << "NvDsInferClassiferParseEdgepipe: output '" << logits.layerName << "' has data type "
                  << logits.dataType << "; expected FLOAT or HALF logits" << std::endl;
        return false;
    }
    const unsigned int classes = logits.inferDims.numElements;
    if (classes == 0) {
        std::cerr << "NvDsInferClassiferParseEdgepipe: output '" << logits.layerName << "' is empty" << std::endl;
        return false;
    }
    unsigned int best = 0;  // the first largest logit (numpy's argmax on finite logits); a NaN never wins
    float bestLogit = valueAt(logits, 0);
    for (unsigned int c = 1; c < classes; ++c) {
        const float value = valueAt(logits, c);
        if (value > bestLogit || (std::isnan(bestLogit) && !std::isnan(value))) {
            best = c;
            bestLogit = value;
        }
    }
    // softmax at the argmax: 1 / sum_c exp(x_c - x_best); every exponent <= 0, so nothing overflows
    double sum = 0.0;
    for (unsigned int c = 0; c < classes; ++c) {
        sum += std::exp(static_cast<double>(valueAt(logits, c)) - static_cast<double>(bestLogit));
    }
    const float probability = static_cast<float>(1.0 / sum);
    if (!(probability >= classifierThreshold)) {
        return true;  // not confident enough: nothing attached, as nvinfer's own parser does
    }
    const std::string label = best < labels.size() ? labels[best] : std::to_string(best);
    NvDsInferAttribute attribute;
    std::memset(&attribute, 0, sizeof(attribute));
    attribute.attributeIndex = 0;  // the one output layer
    attribute.attributeValue = best;
    attribute.attributeConfidence = probability;
    attribute.attributeLabel = strdup(label.c_str());
    attrList.push_back(attribute);
    descString.append(label);
    return true;
}

CHECK_CUSTOM_CLASSIFIER_PARSE_FUNC_PROTOTYPE(NvDsInferClassiferParseEdgepipe);
