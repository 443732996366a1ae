/* Status and error messages shared by every part of the core. */
#include <stdarg.h>
#include <stdio.h>

#include "nemotron.h"

nt_status nt_error_set(nt_error *err, nt_status status, const char *fmt, ...) {
    if (err != NULL) {
        va_list args;
        va_start(args, fmt);
        vsnprintf(err->message, sizeof err->message, fmt, args);
        va_end(args);
        err->status = status;
    }
    return status;
}

size_t nt_dtype_size(nt_dtype dtype) {
    switch (dtype) {
    case NT_DTYPE_F32: return 4;
    case NT_DTYPE_BF16: return 2;
    case NT_DTYPE_F16: return 2;
    default: return 0;
    }
}

const char *nt_dtype_name(nt_dtype dtype) {
    switch (dtype) {
    case NT_DTYPE_F32: return "float32";
    case NT_DTYPE_BF16: return "bfloat16";
    case NT_DTYPE_F16: return "float16";
    default: return "unknown";
    }
}
