// SSTKD_HD marks small functions shared by the C++ and CUDA kernels (host and device inline).
#pragma once

#ifdef __CUDACC__
#define SSTKD_HD __host__ __device__ inline
#else
#define SSTKD_HD inline
#endif
