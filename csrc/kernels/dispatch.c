/* The kernel sets, and the choice among them by name or by what the CPU reports. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "kernels/kernels.h"

const nt_kernels *const nt_kernel_sets[] = {
    &nt_kernels_amx,
    &nt_kernels_avx512,
    &nt_kernels_avx2,
    &nt_kernels_portable,
};
const int nt_kernel_set_count = (int)(sizeof nt_kernel_sets / sizeof nt_kernel_sets[0]);

/* Each set with its NULL entries filled from the next set this CPU runs (already completed); a dtype's matmul_packed
 * and packing go with its matmul. */
static nt_kernels completed[sizeof nt_kernel_sets / sizeof nt_kernel_sets[0]];
static pthread_once_t completed_once = PTHREAD_ONCE_INIT;

static void complete_sets(void) {
    for (int i = nt_kernel_set_count - 1; i >= 0; i--) {
        nt_kernels c = *nt_kernel_sets[i];
        const nt_kernels *next = NULL;
        for (int j = i + 1; j < nt_kernel_set_count && next == NULL; j++)
            if (nt_kernel_sets[j]->supported()) next = &completed[j];
        if (next != NULL) {
            for (int d = 0; d < NT_DTYPE_COUNT; d++)
                if (c.matmul[d] == NULL) {
                    c.matmul[d] = next->matmul[d];
                    c.matmul_packed[d] = next->matmul_packed[d];
                    c.packing[d] = next->packing[d];
                }
            c.next = next;
            if (c.matmul_nn == NULL) c.matmul_nn = next->matmul_nn;
            if (c.exp_shifted == NULL) c.exp_shifted = next->exp_shifted;
        }
        completed[i] = c;
    }
}

nt_status nt_kernels_select(const nt_kernels **out, nt_error *err, const char *name) {
    int automatic = name == NULL || strcmp(name, "auto") == 0;
    char names[256] = "'auto'";
    for (int i = 0; i < nt_kernel_set_count; i++) {
        const nt_kernels *set = nt_kernel_sets[i];
        if (automatic ? set->supported() : strcmp(name, set->name) == 0) {
            if (!set->supported())
                return nt_error_set(err, NT_ERROR_UNSUPPORTED, "this CPU cannot run the '%s' kernels", set->name);
            pthread_once(&completed_once, complete_sets);
            *out = &completed[i];
            return NT_OK;
        }
        size_t used = strlen(names);
        snprintf(names + used, sizeof names - used, ", '%s'", set->name);
    }
    return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "unknown kernel set '%s' (expected one of %s)", name, names);
}
