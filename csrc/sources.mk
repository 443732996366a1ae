# The one list of C sources of the core. setup.py and csrc/Makefile both read it.
# Paths are relative to csrc/.

CORE_SOURCES = \
	runtime/status.c \
	runtime/threadpool.c \
	kernels/dispatch.c \
	kernels/matmul.c \
	kernels/ops.c \
	model/model.c \
	model/cache.c \
	model/forward.c \
	model/score.c \
	model/sampling.c \
	model/generate.c \
	model/settings.c \
	tokenizer/utf8.c \
	tokenizer/unicode_tables.c \
	tokenizer/vocab.c \
	tokenizer/bpe.c \
	tokenizer/tokenizer.c \
	tokenizer/encode.c \
	tokenizer/decode.c

# Compiled as separate objects with AVX2/FMA/F16C enabled; chosen at run time
# only when the CPU reports those features.
AVX2_SOURCES = \
	kernels/matmul_avx2.c

CORE_CFLAGS = -std=c11 -O3 -D_GNU_SOURCE -Wall -Wextra -Wno-unused-parameter
AVX2_CFLAGS = -mavx2 -mfma -mf16c
