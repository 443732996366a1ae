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
