/* Link-only stand-in for libnvinfer_plugin.so.N (NvInferPlugin.h: bool initLibNvInferPlugins(void*, char const*)). */
#include <stdbool.h>
bool initLibNvInferPlugins(void *logger, const char *plugin_namespace) { (void)logger; (void)plugin_namespace; return false; }
