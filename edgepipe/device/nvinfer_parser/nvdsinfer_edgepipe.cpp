/*
 * edgepipe's Gst-nvinfer bounding-box parser: DeepStream reads a detection bundle's engine with it.
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

#include <cmath>
#include <cstdint>
#include <cstring>
#include <iostream>
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
