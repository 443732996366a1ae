/* Chooses a kernel table from what the CPU reports. */
#include <string.h>

#include "kernels/kernels.h"

static int cpu_has_avx2_fma(void) {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
#else
    return 0;
#endif
}

nt_status nt_kernels_select(const nt_kernels **out, nt_error *err, const char *name) {
    if (name == NULL || strcmp(name, "auto") == 0) {
        *out = cpu_has_avx2_fma() ? &nt_kernels_avx2 : &nt_kernels_portable;
        return NT_OK;
    }
    if (strcmp(name, "portable") == 0) {
        *out = &nt_kernels_portable;
        return NT_OK;
    }
    if (strcmp(name, "avx2") == 0) {
        if (!cpu_has_avx2_fma())
            return nt_error_set(err, NT_ERROR_UNSUPPORTED, "this CPU lacks AVX2, FMA or F16C");
        *out = &nt_kernels_avx2;
        return NT_OK;
    }
    return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT,
                        "unknown kernel set '%s' (expected 'auto', 'portable' or 'avx2')", name);
}
