/* Link-only stand-in for libnvonnxparser.so.N (NvOnnxParser.h entry points); see nvinfer.c. */
#include <stdint.h>
void *createNvOnnxParser_INTERNAL(void *network, void *logger, int32_t version)
{ (void)network; (void)logger; (void)version; return 0; }
void *createNvOnnxParserRefitter_INTERNAL(void *refitter, void *logger, int32_t version)
{ (void)refitter; (void)logger; (void)version; return 0; }
int32_t getNvOnnxParserVersion(void) { return 0; }
