/*
 * TEST-ONLY stand-in for DeepStream's headers, so tests/unit/test_deepstream_parser.py can compile and run
 * edgepipe/device/deepstream/nvdsinfer_edgepipe.cpp where DeepStream is not installed.
 *
 * It reproduces, field for field and in order, only what the parser and its driver use, as DeepStream 6.0/6.1
 * declare them in sources/includes/nvdsinfer.h (NVDSINFER_MAX_DIMS, NvDsInferDims, NvDsInferDataType
 * FLOAT=0 HALF=1 INT8=2 INT32=3, NvDsInferLayerInfo with the inferDims/dims union and isInput,
 * NvDsInferNetworkInfo with channels, NvDsInferObjectDetectionInfo, NvDsInferAttribute with the heap-allocated
 * char* attributeLabel nvinfer free()s) and sources/includes/nvdsinfer_custom_impl.h (NvDsInferParseDetectionParams
 * with its deprecated perClassThreshold reference, NvDsInferParseCustomFunc, CHECK_CUSTOM_PARSE_FUNC_PROTOTYPE,
 * NvDsInferClassiferParseCustomFunc and CHECK_CUSTOM_CLASSIFIER_PARSE_FUNC_PROTOTYPE, "Classifer" as NVIDIA spells it). On a device the parser builds against the real headers instead
 * (Makefile: DS_INCLUDE=$(DS_ROOT)/sources/includes). Not shipped in bundles.
 */
#ifndef EDGEPIPE_TEST_NVDSINFER_CUSTOM_IMPL_H
#define EDGEPIPE_TEST_NVDSINFER_CUSTOM_IMPL_H

#include <string>
#include <vector>

extern "C" {

#define NVDSINFER_MAX_DIMS 8

typedef struct {
  unsigned int numDims;
  unsigned int d[NVDSINFER_MAX_DIMS];
  unsigned int numElements;
} NvDsInferDims;

typedef enum {
  FLOAT = 0,
  HALF = 1,
  INT8 = 2,
  INT32 = 3
} NvDsInferDataType;

typedef struct {
  NvDsInferDataType dataType;
  union {
    NvDsInferDims inferDims;
    NvDsInferDims dims;
  };
  int bindingIndex;
  const char* layerName;
  void* buffer;
  int isInput;
} NvDsInferLayerInfo;

typedef struct {
  unsigned int width;
  unsigned int height;
  unsigned int channels;
} NvDsInferNetworkInfo;

typedef struct {
  unsigned int classId;
  float left;
  float top;
  float width;
  float height;
  float detectionConfidence;
} NvDsInferObjectDetectionInfo;

typedef NvDsInferObjectDetectionInfo NvDsInferParseObjectInfo;

typedef struct {
  unsigned int attributeIndex;
  unsigned int attributeValue;
  float attributeConfidence;
  char *attributeLabel;
} NvDsInferAttribute;

typedef struct {
  unsigned int numClassesConfigured;
  std::vector<float> perClassPreclusterThreshold;
  std::vector<float> perClassPostclusterThreshold;
  std::vector<float>& perClassThreshold = perClassPreclusterThreshold;
} NvDsInferParseDetectionParams;

typedef bool (*NvDsInferParseCustomFunc)(
    std::vector<NvDsInferLayerInfo> const& outputLayersInfo,
    NvDsInferNetworkInfo const& networkInfo,
    NvDsInferParseDetectionParams const& detectionParams,
    std::vector<NvDsInferObjectDetectionInfo>& objectList);

#define CHECK_CUSTOM_PARSE_FUNC_PROTOTYPE(customParseFunc) \
    static void checkFunc_ ## customParseFunc (NvDsInferParseCustomFunc func = customParseFunc) \
        { checkFunc_ ## customParseFunc (); }; \
    extern "C" bool customParseFunc (std::vector<NvDsInferLayerInfo> const &outputLayersInfo, \
           NvDsInferNetworkInfo  const &networkInfo, \
           NvDsInferParseDetectionParams const &detectionParams, \
           std::vector<NvDsInferObjectDetectionInfo> &objectList);

typedef bool (*NvDsInferClassiferParseCustomFunc)(
    std::vector<NvDsInferLayerInfo> const& outputLayersInfo,
    NvDsInferNetworkInfo const& networkInfo,
    float classifierThreshold,
    std::vector<NvDsInferAttribute>& attrList,
    std::string& descString);

#define CHECK_CUSTOM_CLASSIFIER_PARSE_FUNC_PROTOTYPE(customParseFunc) \
    static void checkFunc_ ## customParseFunc (NvDsInferClassiferParseCustomFunc func = customParseFunc) \
        { checkFunc_ ## customParseFunc (); }; \
    extern "C" bool customParseFunc (std::vector<NvDsInferLayerInfo> const &outputLayersInfo, \
           NvDsInferNetworkInfo  const &networkInfo, \
           float classifierThreshold, \
           std::vector<NvDsInferAttribute> &attrList, \
           std::string &descString);

}

#endif
