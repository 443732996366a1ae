"""The binding (nemotron_c/_binding): Ctrl-C stopping a long forward or score, the one process-wide thread pool,
and the settings tables through which generation settings and the model config cross into C."""
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import nemotron_c
from helpers.interrupt import interrupt_child
from nemotron_c import _core

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# ---------------------------------------------------------------- Ctrl-C

INTERRUPTED_CALL = textwrap.dedent("""
    import sys, time, numpy as np
    sys.path.insert(0, {root!r})
    import nemotron_c
    model = nemotron_c.AutoModelForCausalLM.from_pretrained({path!r}, num_threads=1)
    prompt = np.array([[9, 4, 61, 12, 8, 40, 71]])
    expected = model(prompt).logits
    expected_score = model.score(prompt).sum_logprob
    cache = model(prompt[:, :4], use_cache=True).past_key_values
    long_ids = np.random.default_rng(0).integers(0, 96, size=(1, 30000))
    print("ready", flush=True)
    start = time.time()
    try:
        if {kind!r} == "forward":
            model(long_ids, past_key_values=cache, logits_to_keep=1)
        else:
            model.score(long_ids, chunk_size=100000)
        print("finished", flush=True)
    except KeyboardInterrupt:
        print("interrupted %.3f" % (time.time() - start), flush=True)
    usable = (cache.get_seq_length() == 4 and np.array_equal(model(prompt).logits, expected)
              and np.array_equal(model(prompt[:, 4:], past_key_values=cache).logits, expected[:, 4:])
              and np.array_equal(model.score(prompt).sum_logprob, expected_score))
    print("usable" if usable else "broken", flush=True)
""")


@pytest.mark.parametrize("kind", ["forward", "score"])
def test_ctrl_c_interrupts_a_long_call_and_the_model_stays_usable(checkpoint, kind):
    """SIGINT during one forward or score call over 30000 tokens (over a second per layer here, the attention's
    quadratic cost making up most of it):
    KeyboardInterrupt comes within a layer; the model gives the same logits and scores as before, and a cache
    the call was extending keeps its length."""
    path = checkpoint(scale=0.25, num_hidden_layers=8)
    script = INTERRUPTED_CALL.format(root=ROOT, path=path, kind=kind)
    interrupt_child(script)


INTERRUPTED_LOAD = textwrap.dedent("""
    import sys, time, numpy as np
    sys.path.insert(0, {root!r})
    import nemotron_c
    from nemotron_c.checkpoint.saving import TensorToSave, save_weights
    config = nemotron_c.NemotronConfig(vocab_size=65536, hidden_size=4096, intermediate_size=32,
                                       num_hidden_layers=1, num_attention_heads=1, num_key_value_heads=1,
                                       head_dim=8, tie_word_embeddings=True)
    config.save_pretrained({path!r})
    shapes = dict(nemotron_c.model.weights.layer_shapes(config))
    shapes = {{"model.layers.0." + name: shape for name, shape in shapes.items()}}
    shapes.update({{"model.embed_tokens.weight": (65536, 4096), "model.norm.weight": (4096,),
                   "model.norm.bias": (4096,)}})
    ones = lambda shape: lambda: np.full(shape, 0x3F80, dtype=np.uint16)  # bfloat16 1.0
    save_weights({path!r}, [TensorToSave(name, "bfloat16", shape, ones(shape)) for name, shape in shapes.items()])
    small = nemotron_c.AutoModelForCausalLM.from_pretrained({path!r})  # bfloat16 as stored: no conversion
    expected = small(np.array([[1, 2, 3]])).logits
    print("ready", flush=True)
    start = time.time()
    try:
        nemotron_c.AutoModelForCausalLM.from_pretrained({path!r}, dtype="float32")
        print("finished", flush=True)
    except KeyboardInterrupt:
        print("interrupted %.3f" % (time.time() - start), flush=True)
    usable = np.array_equal(small(np.array([[1, 2, 3]])).logits, expected)
    print("usable" if usable else "broken", flush=True)
""")


def test_ctrl_c_interrupts_loading_a_large_checkpoint(tmp_path):
    """Loading converts bfloat16 to float32, here an embedding table of 268 M values (1.4 s in one NumPy call on
    an idle machine): KeyboardInterrupt comes between two blocks of rows (checkpoint/tensors.py), where it took
    over a second, at the end of the call."""
    interrupt_child(INTERRUPTED_LOAD.format(root=ROOT, path=str(tmp_path)), delay=0.3, max_latency=0.5)


# ---------------------------------------------------------------- one thread pool

THREAD_COUNTS = textwrap.dedent("""
    import os, sys, numpy as np
    sys.path.insert(0, {root!r})
    sys.path.insert(0, {tests!r})
    import nemotron_c
    from helpers.tokenizer_builders import CONTROL, USER_DEFINED, train
    from helpers.tokenizer_corpus import training_lines

    def threads():
        return len(os.listdir("/proc/self/task"))

    ids = np.random.default_rng(0).integers(0, 96, size=(4, 48))
    texts = training_lines(n=64)
    lines = [line for line in training_lines(n=2000) if line.isascii()]
    train(os.path.join({tmp!r}, "tokenizer"), 400, lines, USER_DEFINED, CONTROL,
          normalization_rule_name="identity")
    counts = [threads()]
    single = [nemotron_c.AutoModelForCausalLM.from_pretrained({path!r}, num_threads=1) for _ in range(3)]
    expected = single[0](ids).logits
    counts.append(threads())
    wide = [nemotron_c.AutoModelForCausalLM.from_pretrained({path!r}, num_threads=3) for _ in range(6)]
    same = all(np.allclose(model(ids).logits, expected, atol=1e-5) for model in wide)
    counts.append(threads())
    default = [nemotron_c.AutoModelForCausalLM.from_pretrained({path!r}) for _ in range(3)]
    same = same and all(np.allclose(model(ids).logits, expected, atol=1e-5) for model in default)
    tokenizers = [nemotron_c.AutoTokenizer.from_pretrained({tmp!r}) for _ in range(6)]
    encoded = [tokenizer(texts)["input_ids"] for tokenizer in tokenizers]
    counts.append(threads())
    print((counts, [m.num_threads for m in single + wide + default], same, encoded[0] == encoded[-1]), flush=True)
""")


def test_models_and_tokenizers_share_one_thread_pool(checkpoint, tmp_path):
    """Models with num_threads=1 start no worker; models with num_threads=3 start two workers between them,
    however many there are; models and tokenizers at the default (NEMOTRON_C_NUM_THREADS=3 here) start none
    more. Each model still reports, and computes with, its own num_threads."""
    script = THREAD_COUNTS.format(root=ROOT, tests=os.path.join(ROOT, "tests"), path=checkpoint(),
                                  tmp=str(tmp_path))
    env = dict(os.environ, NEMOTRON_C_NUM_THREADS="3")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    counts, num_threads, same, same_ids = eval(done.stdout.strip())
    base = counts[0]  # then the one thread that runs every core call while the caller watches for Ctrl-C
    assert counts == [base, base + 1, base + 3, base + 3], counts
    assert num_threads == [1] * 3 + [3] * 6 + [3] * 3
    assert same and same_ids


def test_num_threads_from_the_environment_is_checked(checkpoint, monkeypatch):
    monkeypatch.setenv("NEMOTRON_C_NUM_THREADS", "many")
    with pytest.raises(ValueError, match="NEMOTRON_C_NUM_THREADS=many is not a number of threads"):
        nemotron_c.AutoModelForCausalLM.from_pretrained(checkpoint())
    monkeypatch.setenv("NEMOTRON_C_NUM_THREADS", "1")
    assert nemotron_c.AutoModelForCausalLM.from_pretrained(checkpoint()).num_threads == 1
    assert nemotron_c.AutoModelForCausalLM.from_pretrained(checkpoint(), num_threads=2).num_threads == 2


# ---------------------------------------------------------------- settings tables


def struct_members(name):
    """The member names of `typedef struct {...} name;` in csrc/nemotron.h."""
    with open(os.path.join(ROOT, "csrc", "nemotron.h"), encoding="utf-8") as f:
        header = re.sub(r"/\*.*?\*/", "", f.read(), flags=re.S)
    body = re.search(r"typedef struct \{([^}]*)\}\s*" + name + ";", header).group(1)
    return [re.findall(r"(\w+)\s*(?:,|$)", declaration.strip())[-1] for declaration in body.split(";")
            if declaration.strip()]


@pytest.mark.parametrize("struct,table", [("nt_config", "CONFIG_FIELDS"),
                                          ("nt_generation_config", "GENERATION_SETTINGS")])
def test_settings_tables_hold_every_member(struct, table):
    """One table line per member (array counts are set from the arrays), in the struct's order."""
    members = [m for m in struct_members(struct) if not m.startswith("n_")]
    assert list(getattr(_core, table)) == members


def test_generation_settings_defaults_turn_processors_off():
    settings = _core.GENERATION_SETTINGS
    assert settings["max_length"] is None and settings["eos_token_ids"] is None
    assert settings["temperature"] == 1.0 and settings["top_k"] == 0 and settings["min_p"] == -1.0
    assert settings["num_beams"] == 1 and settings["forced_bos_token_id"] == -1
    # each field's kind follows its member's C type
    assert type(settings["top_k"]) is int and type(settings["seed"]) is int and type(settings["do_sample"]) is int
    assert type(settings["top_p"]) is float and type(settings["deadline"]) is float


@pytest.fixture(scope="module")
def core_model(checkpoint):
    return nemotron_c.AutoModelForCausalLM.from_pretrained(checkpoint())._core


def make_generator(core_model, **settings):
    ids = np.array([[3, 4, 5]], dtype=np.int64)
    return _core.Generator(core_model, input_ids=ids, sequences=np.zeros((1, 6), dtype=np.int64),
                           **dict({"max_length": 6}, **settings))


def test_generator_reads_settings_by_the_table(core_model):
    generator = make_generator(core_model, eos_token_ids=np.array([], dtype=np.int64))
    assert generator.run() and generator.length == 6
    with pytest.raises(TypeError, match="generation config has no field 'top_kk'"):
        make_generator(core_model, top_kk=3)
    with pytest.raises(TypeError, match="generation config lacks 'max_length'"):
        make_generator(core_model, max_length=None)
    with pytest.raises(TypeError, match="temperature must be a float"):
        make_generator(core_model, temperature="hot")
    with pytest.raises(TypeError, match="seed must be an integer in range"):
        make_generator(core_model, seed=-1)
    with pytest.raises(ValueError, match="sequence_bias_values must be as long as"):
        make_generator(core_model, sequence_bias=np.array([1, 2], dtype=np.int64),
                       sequence_bias_ends=np.array([1, 2], dtype=np.int64),
                       sequence_bias_values=np.array([1.0], dtype=np.float32))
    with pytest.raises(ValueError, match="point past their tokens"):
        make_generator(core_model, bad_words=np.array([1], dtype=np.int64),
                       bad_word_ends=np.array([2], dtype=np.int64))
    with pytest.raises(ValueError, match="prompt_padding must hold one value per row"):
        make_generator(core_model, prompt_padding=np.zeros(2, dtype=np.int64))
    with pytest.raises(ValueError, match=r"sequences must have shape \(1, 6\), got \(1, 5\)"):
        _core.Generator(core_model, input_ids=np.array([[3, 4, 5]]), sequences=np.zeros((1, 5), dtype=np.int64),
                        max_length=6)
    with pytest.raises(ValueError, match=r"rows must have shape \(1\)"):
        make_generator(core_model).stop_rows(np.zeros(3, dtype=np.uint8))


def test_forward_takes_keyword_arrays(core_model, checkpoint):
    ids = np.array([[3, 4, 5]], dtype=np.int32)
    positions = np.arange(3, dtype=np.int64)[None]
    logits = np.full((1, 1, 96), np.nan, dtype=np.float32)
    core_model.forward(input_ids=ids, position_ids=positions, keep_positions=np.array([2]), logits=logits)
    # the logits it wrote are the last position's (the model the core belongs to, through its Python forward)
    expected = nemotron_c.AutoModelForCausalLM.from_pretrained(checkpoint())(ids.astype(np.int64)).logits[:, 2:]
    np.testing.assert_allclose(logits, expected, atol=1e-5, rtol=0)
    with pytest.raises(TypeError, match="takes no positional arguments|keyword"):
        core_model.forward(ids, positions)
    with pytest.raises(TypeError, match="input_ids or inputs_embeds is required"):
        core_model.forward(position_ids=positions, keep_positions=np.array([2]))
    with pytest.raises(ValueError, match=r"logits must have shape \(1, 1, 96\), got \(1, 2, 96\)"):
        core_model.forward(input_ids=ids, position_ids=positions, keep_positions=np.array([2]),
                           logits=np.empty((1, 2, 96), dtype=np.float32))
    with pytest.raises(TypeError, match="logits must be a C-contiguous writable array"):
        core_model.forward(input_ids=ids, position_ids=positions, keep_positions=np.array([2]),
                           logits=np.empty((1, 1, 192), dtype=np.float32)[:, :, ::2])
