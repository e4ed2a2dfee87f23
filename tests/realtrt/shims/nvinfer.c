/* Link-only stand-in for libnvinfer.so.N: exports the entry points NVIDIA's tensorrt bindings module links
 * against (`nm -D --undefined-only tensorrt_bindings/tensorrt.so`, 8.6.1 to 11.4) so the real module imports on
 * a machine without TensorRT. Every factory returns NULL: the bindings then raise their own errors
 * ("Failed to create ...") instead of running TensorRT. Signatures follow NvInfer.h / NvInferRuntime.h
 * (`extern "C" void* createInferBuilder_INTERNAL(void* logger, int32_t version) noexcept;` ...). */
#include <stdint.h>
#ifndef SHIM_LIB_VERSION
#error "build with -DSHIM_LIB_VERSION=<NV_TENSORRT_VERSION>, e.g. 110400"
#endif
void *createInferBuilder_INTERNAL(void *logger, int32_t version) { (void)logger; (void)version; return 0; }
void *createInferRuntime_INTERNAL(void *logger, int32_t version) { (void)logger; (void)version; return 0; }
void *createInferRefitter_INTERNAL(void *engine, void *logger, int32_t version)
{ (void)engine; (void)logger; (void)version; return 0; }
int32_t getInferLibVersion(void) { return SHIM_LIB_VERSION; }
void *getPluginRegistry(void) { return 0; }
void *getBuilderPluginRegistry(int32_t capability) { (void)capability; return 0; }
