"""llama.cpp (llama-cpp-python) and ONNX Runtime GenAI on the benchmark's checkpoint, run by benchmarks/run.py in
a subprocess of --peers-python, an interpreter that may have them where nemotron_c's does not:

    PYTHON benchmarks/peers.py REQUEST.json RESPONSE.json

REQUEST: peer ([engine, dtype] of measure.PEERS), checkpoint, out_dir, threads, repeats, plan (run.py's
make_plan), gguf_converter (or null), extra_buffers (llama.cpp's use_extra_bufts: repacked weights).
RESPONSE: rows (results.Row's fields), tokens ([engine, dtype, {batch: tokens}]), versions.
A peer that is not installed, cannot be converted or fails gives rows that say so: this script never fails
for a peer. Conversions are made once into out_dir (gguf/, onnx/, logs/):
  - GGUF f32, bf16 and q8_0 by llama.cpp's convert_hf_to_gguf.py, which the llama-cpp-python wheel does not
    ship: it is in the sdist (vendor/llama.cpp/), found under out_dir/src/ or given by --gguf-converter;
  - ONNX fp32, int8 and int4 by onnxruntime_genai's model builder (python -m onnxruntime_genai.models.builder).
Needs numpy and the standard library besides the peers; imports nothing of nemotron_c.
"""
import glob
import importlib.metadata
import importlib.util
import json
import logging
import os
import subprocess
import sys

import numpy as np

from measure import PEERS, measure_engine  # this file's folder is sys.path[0]

GGUF_TYPES, ONNX_PRECISIONS = dict(PEERS)["llama.cpp"], dict(PEERS)["ORT GenAI"]
EOS_ID = 3  # checkpoint.EOS_ID: masked so that every engine generates the tokens asked for


def log(*parts):
    print(*parts, file=sys.stderr, flush=True)


def installed(module):
    return importlib.util.find_spec(module) is not None


def version(distribution):
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def note_row(engine, dtype, note):
    return dict(measurement="-", engine=engine, dtype=dtype, tokens_per_s=None, flops_per_token=None,
                bytes_per_token=None, note=note)


# ---------------------------------------------------------------------------------------------- conversions

def find_converter(request):
    """llama.cpp's convert_hf_to_gguf.py: the one given, else one inside the installed llama_cpp package, else
    one in an sdist unpacked under out_dir/src/."""
    if request.get("gguf_converter"):
        return request["gguf_converter"]
    package = os.path.dirname(importlib.util.find_spec("llama_cpp").origin)
    found = sorted(glob.glob(os.path.join(package, "**", "convert_hf_to_gguf.py"), recursive=True))
    found += sorted(glob.glob(os.path.join(request["out_dir"], "src", "*", "vendor", "llama.cpp",
                                           "convert_hf_to_gguf.py")))
    return found[-1] if found else None


def run_logged(command, log_path):
    log("$", " ".join(command), f"(log: {log_path})")
    with open(log_path, "w", encoding="utf-8") as out:
        subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, check=True)


def convert_gguf(request, converter, gguf_type):
    """Path of the checkpoint as GGUF of `gguf_type`, converted once."""
    name = os.path.basename(request["checkpoint"])
    path = os.path.join(request["out_dir"], "gguf", f"{name}-{gguf_type}.gguf")
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        run_logged([sys.executable, converter, request["checkpoint"], "--outtype", gguf_type, "--outfile",
                    path + ".partial"], os.path.join(request["out_dir"], "logs", f"gguf-{name}-{gguf_type}.log"))
        os.replace(path + ".partial", path)
    return path


def convert_onnx(request, precision):
    """Folder of the checkpoint as an ONNX Runtime GenAI model of `precision`, built once."""
    name = os.path.basename(request["checkpoint"])
    path = os.path.join(request["out_dir"], "onnx", f"{name}-{precision}")
    if not os.path.exists(os.path.join(path, "genai_config.json")):
        partial = path + ".partial"
        run_logged([sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", request["checkpoint"],
                    "-o", partial, "-p", precision, "-e", "cpu", "-c", os.path.join(request["out_dir"], "onnx",
                                                                                   "cache")],
                   os.path.join(request["out_dir"], "logs", f"onnx-{name}-{precision}.log"))
        os.replace(partial, path)
    return path


# ---------------------------------------------------------------------------------------------- engines

class LlamaCpp:
    """llama.cpp through llama-cpp-python's C API (its Llama class runs one sequence; batch 8 needs sequence ids):
    one context with a sequence per batch row, whole prompts in one batch, logits of the last positions only,
    the default f16 KV cache."""
    engine = "llama.cpp"

    def __init__(self, path, gguf_type, threads, plan, extra_buffers=True):
        import llama_cpp

        logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)
        self.lib, self.dtype = llama_cpp, gguf_type
        llama_cpp.llama_backend_init()
        model_params = llama_cpp.llama_model_default_params()
        model_params.use_extra_bufts = extra_buffers
        self.model = llama_cpp.llama_model_load_from_file(path.encode(), model_params)
        if not self.model:
            raise RuntimeError(f"llama.cpp could not load {path}")
        self.sequences = max(plan["decode_batches"])
        prompt = len(plan["decode_prompts"][0])
        per_sequence = max(len(plan["prefill_ids"][0]) + 1, prompt + plan["new_tokens"])
        self.max_batch = max(len(plan["prefill_ids"][0]), self.sequences * prompt)
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = self.sequences * ((per_sequence + 255) // 256 * 256)  # each sequence gets n_ctx / n_seq_max
        params.n_batch = params.n_ubatch = self.max_batch
        params.n_seq_max = self.sequences
        params.n_threads = params.n_threads_batch = threads
        self.ctx = llama_cpp.llama_init_from_model(self.model, params)
        if not self.ctx:
            raise RuntimeError("llama.cpp could not make a context")
        self.batch = llama_cpp.llama_batch_init(self.max_batch, 0, self.sequences)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(self.model))
        self.decode_bytes = gguf_decode_bytes(path)

    def close(self):
        self.lib.llama_batch_free(self.batch)
        self.lib.llama_free(self.ctx)
        self.lib.llama_model_free(self.model)

    def _decode(self, entries):
        """entries: (token, position, sequence, wants logits); returns the batch indices of the logits."""
        b = self.batch
        b.n_tokens = len(entries)
        for i, (token, position, sequence, logits) in enumerate(entries):
            b.token[i], b.pos[i], b.n_seq_id[i], b.logits[i] = token, position, 1, logits
            b.seq_id[i][0] = sequence
        status = self.lib.llama_decode(self.ctx, b)
        if status != 0:
            raise RuntimeError(f"llama_decode returned {status}")
        return [i for i, entry in enumerate(entries) if entry[3]]

    def _next_token(self, index):
        logits = np.ctypeslib.as_array(self.lib.llama_get_logits_ith(self.ctx, index), shape=(self.n_vocab,)).copy()
        logits[EOS_ID] = -np.inf
        return int(logits.argmax())

    def _clear(self):
        self.lib.llama_memory_clear(self.lib.llama_get_memory(self.ctx), True)

    def prefill(self, ids):
        self._clear()
        prompt = ids[0]
        self._decode([(t, p, 0, p == len(prompt) - 1) for p, t in enumerate(prompt)])

    def generate(self, prompts, n):
        self._clear()
        length = len(prompts[0])
        indices = self._decode([(t, p, s, p == length - 1) for s, prompt in enumerate(prompts)
                                for p, t in enumerate(prompt)])
        out = [[] for _ in prompts]
        for step in range(n):
            for row, index in zip(out, indices):
                row.append(self._next_token(index))
            if step + 1 < n:
                indices = self._decode([(row[-1], length + step, s, True) for s, row in enumerate(out)])
        return out


def gguf_decode_bytes(path):
    """Bytes of every tensor but the embedding table (gguf's reader, else the file's size)."""
    try:
        from gguf import GGUFReader
    except ImportError:
        return os.path.getsize(path)
    return sum(int(t.n_bytes) for t in GGUFReader(path).tensors if t.name != "token_embd.weight")


class OrtGenAI:
    """ONNX Runtime GenAI's Generator on the CPU provider, intra-op threads = the run's threads."""
    engine = "ORT GenAI"

    def __init__(self, path, precision, threads):
        import onnxruntime_genai as og

        self.og, self.dtype = og, precision
        config = og.Config(path)
        config.clear_providers()
        config.overlay(json.dumps({"model": {"decoder": {"session_options": {
            "intra_op_num_threads": threads, "inter_op_num_threads": 1}}}}))
        self.model = og.Model(config)
        self.decode_bytes = onnx_decode_bytes(path)

    def close(self):
        del self.model

    def _generator(self, rows, max_length):
        params = self.og.GeneratorParams(self.model)
        params.set_search_options(do_sample=False, max_length=max_length, min_length=max_length, batch_size=rows)
        return self.og.Generator(self.model, params)

    def prefill(self, ids):
        generator = self._generator(1, len(ids[0]) + 1)
        generator.append_tokens(np.asarray(ids, dtype=np.int32))

    def generate(self, prompts, n):
        prompts = np.asarray(prompts, dtype=np.int32)
        generator = self._generator(len(prompts), prompts.shape[1] + n)
        generator.append_tokens(prompts)
        out = []
        while len(out) < n and not generator.is_done():
            generator.generate_next_token()
            out.append(np.array(generator.get_next_tokens()).reshape(len(prompts)))
        return np.stack(out, axis=1)


def onnx_decode_bytes(path):
    """Bytes of the model's initializers but the embedding table (onnx's reader, else the folder's size)."""
    try:
        import onnx
    except ImportError:
        return sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path))
    model = onnx.load(os.path.join(path, "model.onnx"), load_external_data=False)
    total = 0
    for init in model.graph.initializer:
        if "embed_tokens" in init.name:
            continue
        external = {entry.key: entry.value for entry in init.external_data}
        total += int(external["length"]) if "length" in external else len(init.raw_data)
    return total


# ---------------------------------------------------------------------------------------------- measuring

def measure_peer(engine_name, dtype, make, request):
    """Rows and tokens of one peer in one dtype; a failure becomes a row."""
    try:
        engine = make(dtype)
    except Exception as e:  # noqa: BLE001 - a row says why a peer could not run, whatever it raised
        return [note_row(engine_name, dtype, f"failed: {type(e).__name__}: {e}"[:160])], []
    try:
        found, generated = measure_engine(engine, request["plan"], request["repeats"], ("prefill", "decode"), log)
        return found, [[engine_name, dtype, generated]]
    except Exception as e:  # noqa: BLE001
        return [note_row(engine_name, dtype, f"failed: {type(e).__name__}: {e}"[:160])], []
    finally:
        engine.close()


def llama_cpp_rows(request, gguf_type):
    if not installed("llama_cpp"):
        return [note_row("llama.cpp", "/".join(GGUF_TYPES), f"not installed (no llama_cpp in {sys.executable})")], []
    converter = find_converter(request)
    if converter is None:
        return [note_row("llama.cpp", "/".join(GGUF_TYPES), "no convert_hf_to_gguf.py: see benchmarks/README.md "
                                                            "(--gguf-converter)")], []

    def make(gguf_type):
        return LlamaCpp(convert_gguf(request, converter, gguf_type), gguf_type, request["threads"], request["plan"],
                        request.get("extra_buffers", True))

    return measure_peer("llama.cpp", gguf_type, make, request)


def ort_genai_rows(request, precision):
    if not installed("onnxruntime_genai"):
        return [note_row("ORT GenAI", "/".join(ONNX_PRECISIONS),
                         f"not installed (no onnxruntime_genai in {sys.executable})")], []

    def make(precision):
        return OrtGenAI(convert_onnx(request, precision), precision, request["threads"])

    return measure_peer("ORT GenAI", precision, make, request)


def llama_cpp_features():
    """The x86 vector features the loaded llama.cpp library was built for, as it reports them ("AVX2+FMA+AVX512")."""
    import llama_cpp

    info = llama_cpp.llama_print_system_info().decode(errors="replace")
    wanted = ("AVX2", "FMA", "AVX_VNNI", "AVX512", "AVX512_VNNI", "AVX512_BF16", "AMX_INT8")
    return "+".join(name for name in wanted if f"{name} = 1" in info) or "no AVX2"


def main(request_path, response_path):
    """Measures the one peer and dtype the request names (request["peer"]: [engine, dtype]): each runs in a
    process of its own, so that a peer that crashes takes only its own row with it."""
    with open(request_path, encoding="utf-8") as f:
        request = json.load(f)
    os.makedirs(os.path.join(request["out_dir"], "logs"), exist_ok=True)
    engine, dtype = request["peer"]
    rows, tokens = {"llama.cpp": llama_cpp_rows, "ORT GenAI": ort_genai_rows}[engine](request, dtype)
    versions = [f"{name} {v}" for name, v in (("llama-cpp-python", version("llama_cpp_python")),
                                               ("onnxruntime-genai", version("onnxruntime-genai"))) if v]
    if engine == "llama.cpp" and installed("llama_cpp"):
        versions.append(f"llama.cpp built for {llama_cpp_features()}")
    with open(response_path, "w", encoding="utf-8") as f:
        json.dump(dict(rows=rows, tokens=tokens, versions=versions), f)


if __name__ == "__main__":
    main(*sys.argv[1:3])
