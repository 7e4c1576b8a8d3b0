// What the cuBLAS (matmul.cu) and cuBLASLt (linear.cu) callers share.
//
// FG_CUBLAS_CHECK: every cuBLAS and cuBLASLt call goes through it. On failure it throws
// fg::Error with the status name, the call and file:line.
#pragma once
#include <cublas_v2.h>

#include "core/error.h"

namespace fg {
[[noreturn]] inline void throw_cublas_error(cublasStatus_t s, const char* what, const char* file,
                                            int line) {
  throw Error(str("cuBLAS error: ", cublasGetStatusName(s), " (", cublasGetStatusString(s),
                  ") in ", what, " at ", file, ":", line));
}
}  // namespace fg

#define FG_CUBLAS_CHECK(CALL)                                                           \
  do {                                                                                  \
    cublasStatus_t fg_st_ = (CALL);                                                     \
    if (fg_st_ != CUBLAS_STATUS_SUCCESS)                                                \
      ::fg::throw_cublas_error(fg_st_, #CALL, __FILE__, __LINE__);                      \
  } while (0)

