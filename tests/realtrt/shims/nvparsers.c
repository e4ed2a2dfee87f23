/* Link-only stand-in for libnvparsers.so.8 (TensorRT 8.x only: the Caffe and UFF parsers, removed in 10.0).
 * The 8.6 bindings link four C++ functions; their mangled names are exported here as C symbols:
 *   nvuffparser::createUffParser(), nvuffparser::FieldMap::FieldMap(char const*, void const*, FieldType, int),
 *   nvcaffeparser1::createCaffeParser(), nvcaffeparser1::shutdownProtobufLibrary(). */
void *_ZN11nvuffparser15createUffParserEv(void) { return 0; }
void _ZN11nvuffparser8FieldMapC1EPKcPKvNS_9FieldTypeEi(void *self, const char *name, const void *data, int type,
                                                        int length)
{ (void)self; (void)name; (void)data; (void)type; (void)length; }
void *_ZN14nvcaffeparser117createCaffeParserEv(void) { return 0; }
void _ZN14nvcaffeparser123shutdownProtobufLibraryEv(void) {}
