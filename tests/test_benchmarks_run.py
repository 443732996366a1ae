"""`python -m benchmarks.run --smoke`: every section printed, a well-formed results table written, this CPU kind's
old section replaced and other CPUs' sections kept. Tiny widths and one repeat; no timing is asserted."""
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from nemotron_c.model.weights import QUANTIZED_DTYPES

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks import goals, machine, run  # noqa: E402 - benchmarks/ lives beside tests/, not in the package
from benchmarks.results import COLUMNS, Ceilings, Row, cells, section, update_results  # noqa: E402

OTHER_CPU = "## AMD EPYC 7B13 64-Core Processor (family 25, model 1)\n\nkept as it was\n"


def run_smoke(tmp, earlier, *options):
    """benchmarks.run --smoke with `options` into a results file already holding the sections `earlier`; returns
    its output and the file's text."""
    results = tmp / "RESULTS.md"
    results.write_text(f"# Benchmark results\n\nintro\n\n{earlier}")
    env = {k: v for k, v in os.environ.items() if k not in ("NEMOTRON_C_KERNELS", "ATEN_CPU_CAPABILITY")}
    env["PYTHONPATH"] = ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--smoke", *options, "--cache-dir", str(tmp / "cache"),
         "--results", str(results), "--peers-python", sys.executable],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout, results.read_text()


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench")
    _, heading = machine.cpu_kind()
    # an earlier run on this CPU kind, and one on another
    stdout, text = run_smoke(tmp, f"## {heading}\n\nstale figures\n\n{OTHER_CPU}", "--threads", "2")
    return stdout, text, heading, tmp / "cache"


@pytest.fixture(scope="module")
def avx2_smoke_run(tmp_path_factory):
    """--isa avx2 into a results file that already holds this CPU kind's section from a run without it."""
    _, heading = machine.cpu_kind()
    stdout, text = run_smoke(tmp_path_factory.mktemp("bench-avx2"), f"## {heading}\n\nthe best kernels' figures\n",
                             "--isa", "avx2", "--threads", "1", "--decode-batches", "1")
    return stdout, text, heading


def test_isa_avx2_holds_the_engines_and_keeps_its_own_section(request):
    if not {"avx2", "fma", "f16c"} <= set(machine.isa_flags()):  # nothing to hold the engines to: refused at once
        with pytest.raises(SystemExit):
            run.parse_args(["--isa", "avx2"])
        return
    stdout, text, heading = request.getfixturevalue("avx2_smoke_run")
    assert "kernels  avx2 " in stdout
    assert "the best kernels' figures" in text  # the section of the run without --isa stays
    mine = text.split(f"## {heading}, held to AVX2\n", 1)[1].split("\n## ", 1)[0]
    assert "kernels avx2" in mine and "(ATen AVX2)" in mine and "Held to AVX2: " in mine
    probes = next(line for line in mine.splitlines() if line.startswith("Probes: "))
    assert "float32 FMA peak (avx2)" in probes, probes


@pytest.mark.parametrize("options, message", [(["--long-prefill", "4097"], "--long-prefill must be 0 to 4096"),
                                              (["--long-prefill", "512"], "--long-prefill must differ from --prefill")])
def test_long_prefill_out_of_the_checkpoint_or_equal_to_prefill_is_refused(capsys, options, message):
    with pytest.raises(SystemExit):
        run.parse_args(options)
    assert message in capsys.readouterr().err
    args = run.parse_args(["--long-prefill", "0", "--smoke"])  # 0: no long prompt row, and no goal on it
    plan = run.make_plan(args, dict(hidden_size=8, vocab_size=64, num_hidden_layers=1, num_attention_heads=2,
                                    num_key_value_heads=1, head_dim=4, intermediate_size=16))
    assert plan["long_name"] is None and plan["long_ids"] is None


def test_isa_avx2_is_refused_on_a_cpu_without_avx2(monkeypatch, capsys):
    monkeypatch.setattr(machine, "isa_flags", lambda: ["avx", "f16c"])
    with pytest.raises(SystemExit) as stopped:
        run.parse_args(["--isa", "avx2"])
    assert stopped.value.code == 2 and "which this CPU does not have" in capsys.readouterr().err
    assert run.parse_args([]).isa == "best"  # the run without it goes on


def test_prints_every_section(smoke_run):
    stdout, _, _, _ = smoke_run
    for line in ("== machine", "CPU ", "ISA ", "kernels ", "threads  2", "== probes", "float32 FMA peak",
                 "read bandwidth", "== checkpoint", "== nemotron_c and Transformers", "== peers", "== results",
                 "greedy tokens of nemotron_c float32 and bfloat16 equal Transformers float32's", "== goals",
                 "goals met: "):
        assert line in stdout, line
    # the smoke checkpoint is deterministic and in float32 arithmetic both libraries pick the same tokens
    assert "Transformers float32's at batch 1 and 8: yes" in stdout


def test_results_table_is_well_formed(smoke_run):
    _, text, heading, _ = smoke_run
    assert text.startswith("# Benchmark results\n\nintro\n")
    assert text.count(f"## {heading}\n") == 1 and "stale figures" not in text
    assert OTHER_CPU in text
    mine = text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    for field in ("commit ", "2 threads", "kernels ", "ISA: ", "Probes: ", "Checkpoint: ", "Sanity: "):
        assert field in mine, field
    table = [line for line in mine.split("\n### ", 1)[0].splitlines() if line.startswith("|")]
    assert table[0] == "| " + " | ".join(COLUMNS) + " |"
    assert all(line.count("|") == len(COLUMNS) + 1 for line in table), table
    rows = {tuple(cell.strip() for cell in line.strip("|").split("|")[:3]) for line in table[2:]}
    expected = {("prefill 16", "nemotron_c", "float32"), ("score 2×8", "nemotron_c", "bfloat16"),
                ("prefill 16", "nemotron_c", "float32, any"), ("score 2×8", "nemotron_c", "float32, any"),
                ("prefill 16", "Transformers", "float32"), ("score 2×8", "Transformers", "float32"),
                ("decode batch 8", "Transformers", "bfloat16")}
    # the long prompt's prefill and the one-thread prefill (the run has two threads), each related to prefill 16
    expected |= {(measurement, engine, dtype) for measurement in ("prefill 64", "prefill 16, 1 thread")
                 for engine, dtype in (("nemotron_c", "float32"), ("nemotron_c", "bfloat16"),
                                       ("Transformers", "float32"))}
    expected |= {(f"decode batch {b}", "nemotron_c", dtype) for b in (1, 8)
                 for dtype in ("float32", "bfloat16", *QUANTIZED_DTYPES)}
    assert expected <= rows, expected - rows
    notes = {tuple(cell.strip() for cell in line.strip("|").split("|")[:3]): line.strip("|").split("|")[-1].strip()
             for line in table[2:]}
    assert notes[("prefill 64", "nemotron_c", "float32")].startswith("time per token "), notes
    assert notes[("prefill 16, 1 thread", "Transformers", "float32")].startswith("2 threads: "), notes
    goals_table = mine.split("### Goals of issues 12 and 13 on this CPU\n", 1)[1]
    assert goals_table.startswith("\n| issue | goal | measured | met |\n")
    assert "| 13 | decode int4: batch 8 ≥ 5× batch 1 |" in goals_table
    engines = {engine for _, engine, _ in rows}
    assert {"llama.cpp", "ORT GenAI"} <= engines  # measured, or a row saying why not


def test_float32_variant_holds_no_bfloat16_values(smoke_run):
    """The `float32, any` rows run on a float32 copy of the checkpoint whose every nonzero weight is off bfloat16's
    grid, as a float32 fine-tune's are, each within 2^-11 of the original, with the same tokenizer."""
    *_, cache = smoke_run
    [variant] = [p for p in cache.iterdir() if p.name.endswith("-float32")]
    source = cache / variant.name[: -len("-float32")]
    original, nudged = load_file(source / "model.safetensors"), load_file(variant / "model.safetensors")
    assert original.keys() == nudged.keys()
    for name, weight in nudged.items():
        assert weight.dtype == torch.float32, name
        bits = weight.view(torch.int32) & 0xFFFF
        assert bool(((bits != 0) | (weight == 0)).all()), f"{name} holds bfloat16 values"
        reference = original[name].float()
        assert torch.allclose(weight, reference, rtol=2.0**-11, atol=0), name
    for entry in ("tokenizer.model", "tokenizer.json"):
        assert (variant / entry).read_bytes() == (source / entry).read_bytes()


def test_update_results_replaces_only_its_own_section(tmp_path):
    path = str(tmp_path / "RESULTS.md")
    update_results(path, "CPU A", "## CPU A\n\nfirst\n")
    update_results(path, "CPU B", "## CPU B\n\nsecond\n")
    update_results(path, "CPU A", "## CPU A\n\nthird\n")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    assert text.startswith("# Benchmark results\n")
    assert text.index("## CPU A\n\nthird\n") < text.index("## CPU B\n\nsecond\n")
    assert "first" not in text and text.count("## ") == 2


def test_long_prompt_and_one_thread_rows_are_related_to_the_prefill_row():
    plan = dict(prefill_name="prefill 512", long_name="prefill 4096")
    rows = [Row("prefill 512", "nemotron_c", "float32", 1000.0),
            Row("prefill 4096", "nemotron_c", "float32", 800.0),
            Row("prefill 512, 1 thread", "nemotron_c", "float32", 520.0, threads=1),
            Row("prefill 4096", "Transformers", "float32", 400.0)]  # no prefill row of its own: no note
    run.relate_prefills(rows, plan, threads=2)
    assert [r.note for r in rows] == ["", "time per token 1.25× prefill 512's", "2 threads: 1.92× this", ""]
    # a one-thread row's fraction is of one core's peak, the others' of every thread's
    ceilings = Ceilings(gflops=200.0, read_gbs=None, gflops_one=100.0)
    one = Row("prefill 512, 1 thread", "nemotron_c", "float32", 500.0, flops_per_token=1e8, threads=1)
    both = Row("prefill 512", "nemotron_c", "float32", 500.0, flops_per_token=1e8)
    assert cells(one, {}, ceilings)[6] == "50%" and cells(both, {}, ceilings)[6] == "25%"


def _goal_rows(**rates):
    """Rows of a run at 2 threads whose rates are given as name=tokens/s, each name one of `names` below."""
    names = {"ours_prefill": ("prefill 512", "nemotron_c", "float32"),
             "ours_one_thread": ("prefill 512, 1 thread", "nemotron_c", "float32"),
             "ours_long": ("prefill 4096", "nemotron_c", "float32"),
             "theirs_prefill": ("prefill 512", "Transformers", "float32"),
             "llama_prefill": ("prefill 512", "llama.cpp", "f32"),
             "bf16_b1": ("decode batch 1", "nemotron_c", "bfloat16"),
             "int8_b1": ("decode batch 1", "nemotron_c", "int8"),
             "int8_b8": ("decode batch 8", "nemotron_c", "int8"),
             "ort_int8_b8": ("decode batch 8", "ORT GenAI", "int8")}
    bytes_per_token = {"bfloat16": 500e6, "int8": 265e6}
    return [Row(*names[k], v, flops_per_token=1e9 if "prefill" in k else None,
                bytes_per_token=bytes_per_token.get(names[k][2]) if "b1" in k else None,
                threads=1 if "one_thread" in k else None) for k, v in rates.items()]


def _goals_of(rows):
    names = dict(prefill="prefill 512", long="prefill 4096", score="score 16×128", one_thread="prefill 512, 1 thread")
    return {c.goal: c for c in goals.evaluate(rows, names, Ceilings(gflops=400.0, read_gbs=20.0), threads=2)}


def test_goals_are_met_at_their_bounds_and_missed_just_past_them():
    at = _goals_of(_goal_rows(ours_prefill=300.0, ours_one_thread=300.0 / 1.8, ours_long=200.0,
                              theirs_prefill=300.0 / 1.3, llama_prefill=300.0 / 1.1, bf16_b1=36.0, int8_b1=64.8,
                              int8_b8=5 * 64.8, ort_int8_b8=5 * 64.8))
    past = _goals_of(_goal_rows(ours_prefill=299.0, ours_one_thread=300.0 / 1.8, ours_long=199.0,
                                theirs_prefill=300.0 / 1.3, llama_prefill=300.0 / 1.1, bf16_b1=35.9, int8_b1=64.6,
                                int8_b8=5 * 64.6 - 0.1, ort_int8_b8=5 * 64.6))
    for goal, measured in [("prefill 512 float32: ≥ 75% of the FMA peak", "75.0%"),
                           ("prefill 512 float32: 2 threads ≥ 1.8× one", "1.800×"),
                           ("prefill 4096 float32: time per token ≤ 1.5× prefill 512's", "1.500×"),
                           ("prefill 512 float32: ≥ 1.3× Transformers float32", "1.300×"),
                           ("prefill 512 float32: ≥ 1.1× llama.cpp f32", "1.100×"),
                           ("decode batch 1 bfloat16: ≥ 90% of the read bandwidth", "90.0%"),
                           ("decode batch 1 int8: ≥ 1.8× bfloat16", "1.800×; the bytes allow 1.89× at equal GB/s"),
                           ("decode int8: batch 8 ≥ 5× batch 1", "5.000×")]:
        assert at[goal].met is True and at[goal].measured == measured, (goal, at[goal])
        assert past[goal].met is False, (goal, past[goal])
    # equal speed is not faster; a figure that was not measured is neither met nor missed
    assert at["decode batch 8 int8: faster than ORT GenAI int8"].met is False
    assert at["decode batch 1 int4: ≥ 1.7× int8"].met is None
    assert "decode batch 1 int8: faster than ORT GenAI int8" not in at  # no such peer row: no goal


def test_a_section_is_judged_again_from_its_own_table(tmp_path):
    rows = _goal_rows(ours_prefill=300.0, ours_one_thread=160.0, ours_long=200.0, theirs_prefill=240.0,
                      llama_prefill=290.0, bf16_b1=36.0, int8_b1=70.0, int8_b8=330.0, ort_int8_b8=331.0)
    rows.append(Row("score 16×128", "nemotron_c", "float32", 250.0, flops_per_token=1.2e9))
    ceilings = Ceilings(gflops=400.0, read_gbs=20.0, gflops_one=210.0)
    header = ["2026-12-02 06:59 UTC · commit abc · 2 threads · kernels avx512 · best of 3  ",
              "Probes: float32 FMA peak (avx512) 210.0 GFLOP/s one core, 400.0 all threads; read bandwidth 11.0 GB/s "
              "one thread, 20.0 all threads  "]
    text = section("CPU without goals", header, rows, ceilings)  # as a run before the goals table wrote it
    read_rows, names, read_ceilings, threads = goals.read_section(text)
    assert (names, read_ceilings, threads) == (
        dict(prefill="prefill 512", long="prefill 4096", score="score 16×128", one_thread="prefill 512, 1 thread"),
        ceilings, 2)
    assert [(r.measurement, r.engine, r.dtype, r.threads) for r in read_rows] == [
        (r.measurement, r.engine, r.dtype, r.threads) for r in rows]
    want = goals.evaluate(rows, names, ceilings, 2)
    assert [(c.goal, c.met) for c in goals.evaluate(read_rows, names, ceilings, 2)] == [(c.goal, c.met) for c in want]
    assert any(c.met for c in want) and any(c.met is False for c in want)

    results = tmp_path / "RESULTS.md"
    judged = section("CPU with goals", header, rows[:2], ceilings, "| issue | goal | measured | met |\nkept")
    results.write_text(f"# Benchmark results\n\nintro\n\n{text}\n{judged}")
    assert goals.rejudge(str(results)) == {"CPU without goals": goals.summary(want)}
    written = results.read_text()
    assert written.count(goals.GOALS_HEADING) == 2 and "kept" in written  # the judged section is left as it was
    mine = written.split("## CPU without goals\n", 1)[1].split("\n## ", 1)[0]
    assert mine.split(goals.GOALS_HEADING)[1] == f"\n\n{goals.REJUDGED}\n\n{goals.markdown(want)}\n"
    assert goals.rejudge(str(results)) == {} and results.read_text() == written
    assert set(goals.rejudge(str(results), every=True)) == {"CPU without goals", "CPU with goals"}
    assert "kept" not in results.read_text()
