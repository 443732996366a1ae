/* Preloaded ahead of gcc's libasan by tools/fuzz_atheris.sh. libasan defines do-nothing coverage callbacks
 * (__sanitizer_cov_*) and comparison hooks; preloaded, they would win over those of the libFuzzer inside atheris
 * (which Python loads later) and leave it blind. These forward each call to atheris's libFuzzer once it is loaded
 * (ATHERIS_LIBFUZZER names its file), and drop calls made before. Every forwarded function takes at most six integer
 * or pointer arguments and returns nothing, so one x86-64 forwarder shape fits them all. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdint.h>
#include <stdlib.h>

typedef void (*callback)(uintptr_t, uintptr_t, uintptr_t, uintptr_t, uintptr_t, uintptr_t);

static callback lookup(const char *name) {
    static void *libfuzzer;
    if (!libfuzzer) {
        const char *path = getenv("ATHERIS_LIBFUZZER");
        if (!path || !(libfuzzer = dlopen(path, RTLD_NOW | RTLD_NOLOAD)))
            return NULL;
    }
    return (callback)dlsym(libfuzzer, name);
}

#define FORWARD(name)                                                                                              \
    void name(uintptr_t a, uintptr_t b, uintptr_t c, uintptr_t d, uintptr_t e, uintptr_t f) {                     \
        static callback target;                                                                                    \
        if (!target && !(target = lookup(#name)))                                                                  \
            return;                                                                                                \
        target(a, b, c, d, e, f);                                                                                  \
    }

FORWARD(__sanitizer_cov_8bit_counters_init)
FORWARD(__sanitizer_cov_pcs_init)
FORWARD(__sanitizer_cov_trace_cmp1)
FORWARD(__sanitizer_cov_trace_cmp2)
FORWARD(__sanitizer_cov_trace_cmp4)
FORWARD(__sanitizer_cov_trace_cmp8)
FORWARD(__sanitizer_cov_trace_const_cmp1)
FORWARD(__sanitizer_cov_trace_const_cmp2)
FORWARD(__sanitizer_cov_trace_const_cmp4)
FORWARD(__sanitizer_cov_trace_const_cmp8)
FORWARD(__sanitizer_cov_trace_div4)
FORWARD(__sanitizer_cov_trace_div8)
FORWARD(__sanitizer_cov_trace_gep)
FORWARD(__sanitizer_cov_trace_pc_indir)
FORWARD(__sanitizer_cov_trace_switch)
FORWARD(__sanitizer_weak_hook_memcmp)
FORWARD(__sanitizer_weak_hook_memmem)
FORWARD(__sanitizer_weak_hook_strcasecmp)
FORWARD(__sanitizer_weak_hook_strcasestr)
FORWARD(__sanitizer_weak_hook_strcmp)
FORWARD(__sanitizer_weak_hook_strncasecmp)
FORWARD(__sanitizer_weak_hook_strncmp)
FORWARD(__sanitizer_weak_hook_strstr)
