/* The few CUDA runtime types TensorRT's public headers name (cuda_runtime_api.h / driver_types.h), so the fake
 * core compiles without the CUDA toolkit; they are opaque handles and never dereferenced. */
#ifndef FAKECORE_CUDA_RUNTIME_API_H
#define FAKECORE_CUDA_RUNTIME_API_H
typedef struct CUstream_st* cudaStream_t;
typedef struct CUevent_st* cudaEvent_t;
#endif
