# The one list of C sources of the core. setup.py and csrc/Makefile both read it.
# Paths are relative to csrc/.

CORE_SOURCES = \
	runtime/status.c \
	runtime/threadpool.c \
	kernels/tensor.c \
	kernels/dispatch.c \
	kernels/matmul.c \
	kernels/quantize.c \
	kernels/ops.c \
	kernels/attention.c \
	model/model.c \
	model/cache.c \
	model/forward.c \
	model/score.c \
	model/sampling.c \
	model/topk.c \
	model/beam.c \
	model/generate.c \
	model/settings.c \
	tokenizer/utf8.c \
	tokenizer/unicode_tables.c \
	tokenizer/vocab.c \
	tokenizer/bpe.c \
	tokenizer/tokenizer.c \
	tokenizer/encode.c \
	tokenizer/decode.c

CORE_CFLAGS = -std=c11 -O3 -fno-trapping-math -D_GNU_SOURCE -Wall -Wextra -Wno-unused-parameter

# Instruction sets with kernels of their own: each name's sources are compiled as separate objects with
# its flags, and its kernel set (kernels/dispatch.c) is chosen at run time only when the CPU has them.
ISAS = amx avx512 avx2
amx_SOURCES = kernels/matmul_amx.c
amx_CFLAGS = -mavx512f -mavx512bw -mavx512vl -mavx512dq -mfma -mf16c -mamx-tile -mamx-bf16 -mamx-int8
avx512_SOURCES = kernels/matmul_avx512.c
avx512_CFLAGS = -mavx512f -mavx512bw -mavx512vl -mavx512dq -mfma -mf16c
avx2_SOURCES = kernels/matmul_avx2.c
avx2_CFLAGS = -mavx2 -mfma -mf16c
