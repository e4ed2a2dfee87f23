"""What a bundle holds and where: the names edgepipe/run.py imports for a run directory, so both sides agree."""

MANIFEST = "manifest.json"
EXPORT, QUANTIZE, BUILD = "export", "quantize", "build"
FP32_ONNX, FP16_ONNX, INT8_TRT_ONNX, CALIB_CACHE = "model.onnx", "model.fp16.onnx", "model.int8.trt.onnx", \
    "trt.calib.cache"
REFERENCE_NPZ = "reference.npz"
LABELS_TXT = "labels.txt"
PRECISIONS = ("int8", "fp16", "fp32")  # best first: the one precision order (targets, build, bundle, serving)


def engine_file(precision):
    return "model.{}.engine".format(precision)


# A detection or classification bundle's DeepStream parsers: their sources (edgepipe/device/nvinfer_parser/) ship in
# DEEPSTREAM/, where `make -C BUNDLE/deepstream` builds the library the nvinfer config names; its classifier parser
# reads the bundle's LABELS_TXT. "Classifer": NVIDIA's spelling (nvdsinfer_custom_impl.h).
DEEPSTREAM, PARSER_SOURCES = "deepstream", "nvinfer_parser"
PARSER_LIBRARY, PARSER_FUNCTION = "libnvdsinfer_edgepipe.so", "NvDsInferParseEdgepipe"
CLASSIFIER_PARSER_FUNCTION = "NvDsInferClassiferParseEdgepipe"
DEEPSTREAM_TASKS = ("classification", "detection")  # the tasks nvinfer's config and the parsers serve
