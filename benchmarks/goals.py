"""The speed goals of issues 12 (prefill, scoring, threads) and 13 (decode), read off one run's rows: each goal's
figures on this CPU and whether they reach it. Goals are never asserted in tests; this table says where a CPU kind
stands, in RESULTS.md beside the figures it comes from."""
import argparse
import dataclasses
import math
import os
import re

from .results import COLUMNS, Ceilings, Row, update_results

# the peers' rows at each nemotron_c dtype's precision
PEER_DTYPES = {"float32": (("llama.cpp", "f32"), ("ORT GenAI", "fp32")),
               "bfloat16": (("llama.cpp", "bf16"),),
               "int8": (("llama.cpp", "q8_0"), ("ORT GenAI", "int8")),
               "int4": (("ORT GenAI", "int4"),)}


# a bound counts as reached within this relative rounding of the figures' arithmetic (1.8 = 64.8 / 36 in decimals,
# 1.7999999999999998 in floats)
ROUNDING = 1e-9


@dataclasses.dataclass
class Check:
    issue: int
    goal: str
    measured: str      # the figure(s) the verdict comes from
    met: bool | None   # None: a figure it needs is missing


def evaluate(rows, names, ceilings, threads):
    """Checks of every goal. rows: results.Row; names: the run's measurement names (prefill, long (None: not
    run), score, the one-thread prefill); ceilings: results.Ceilings."""
    def row(measurement, dtype, engine="nemotron_c"):
        return next((r for r in rows if (r.measurement, r.engine, r.dtype) == (measurement, engine, dtype)), None)

    def rate(measurement, engine="nemotron_c", dtype="float32"):
        """tokens/s of that row, None when it is missing or failed"""
        r = row(measurement, dtype, engine)
        ok = r is not None and r.tokens_per_s is not None and math.isfinite(r.tokens_per_s) and r.tokens_per_s > 0
        return r.tokens_per_s if ok else None

    def bytes_ratio(dtype, other_engine, other_dtype):
        """what the weights' bytes allow a batch-1 decode ratio to be, both rows reading at the same GB/s"""
        mine, theirs = row("decode batch 1", dtype), row("decode batch 1", other_dtype, other_engine)
        if mine is None or theirs is None or not mine.bytes_per_token or not theirs.bytes_per_token:
            return ""
        return f"; the bytes allow {theirs.bytes_per_token / mine.bytes_per_token:.2f}× at equal GB/s"

    checks = []

    def ratio_check(issue, goal, top, bottom, least=None, most=None, above=None, hint=""):
        """top / bottom at least `least`, at most `most`, or strictly above `above`; hint: said after the ratio"""
        if top is None or bottom is None:
            checks.append(Check(issue, goal, "not measured", None))
            return
        value = top / bottom
        met = ((least is None or value >= least * (1 - ROUNDING)) and (most is None or value <= most * (1 + ROUNDING))
               and (above is None or value > above * (1 + ROUNDING)))
        # three decimals (and a fraction's one): 1.0964 is not 1.1, which two would show
        checks.append(Check(issue, goal, f"{value:.3f}×{hint}", met))

    def fraction_check(issue, goal, measurement, dtype, ceiling, least, per_token):
        r, value = row(measurement, dtype), None
        if ceiling and rate(measurement, dtype=dtype) and per_token(r):
            value = r.tokens_per_s * per_token(r) / 1e9 / ceiling
        checks.append(Check(issue, goal, "not measured" if value is None else f"{value:.1%}",
                            None if value is None else value >= least * (1 - ROUNDING)))

    prefill, score, long, one_thread = names["prefill"], names["score"], names["long"], names["one_thread"]
    for dtype in ("float32", "bfloat16"):
        for measurement in (prefill, score):
            fraction_check(12, f"{measurement} {dtype}: ≥ 75% of the FMA peak", measurement, dtype,
                           ceilings.gflops, 0.75, lambda r: r.flops_per_token)
            ratio_check(12, f"{measurement} {dtype}: ≥ 1.3× Transformers float32", rate(measurement, dtype=dtype),
                        rate(measurement, "Transformers"), least=1.3)
        llama = {"float32": "f32", "bfloat16": "bf16"}[dtype]
        ratio_check(12, f"{prefill} {dtype}: ≥ 1.1× llama.cpp {llama}", rate(prefill, dtype=dtype),
                    rate(prefill, "llama.cpp", llama), least=1.1)
        if long is not None:
            ratio_check(12, f"{long} {dtype}: time per token ≤ 1.5× {prefill}'s", rate(prefill, dtype=dtype),
                        rate(long, dtype=dtype), most=1.5)
        if threads == 2:  # the goal is stated for two threads
            ratio_check(12, f"{prefill} {dtype}: 2 threads ≥ 1.8× one", rate(prefill, dtype=dtype),
                        rate(one_thread, dtype=dtype), least=1.8)

    b1, b8 = "decode batch 1", "decode batch 8"
    fraction_check(13, "decode batch 1 bfloat16: ≥ 90% of the read bandwidth", b1, "bfloat16", ceilings.read_gbs,
                   0.90, lambda r: r.bytes_per_token)
    ratio_check(13, "decode batch 1 bfloat16: ≥ 2.5× Transformers float32", rate(b1, dtype="bfloat16"),
                rate(b1, "Transformers"), least=2.5, hint=bytes_ratio("bfloat16", "Transformers", "float32"))
    fraction_check(13, "decode batch 1 int8: ≥ 85% of the read bandwidth", b1, "int8", ceilings.read_gbs, 0.85,
                   lambda r: r.bytes_per_token)
    ratio_check(13, "decode batch 1 int8: ≥ 1.8× bfloat16", rate(b1, dtype="int8"), rate(b1, dtype="bfloat16"),
                least=1.8, hint=bytes_ratio("int8", "nemotron_c", "bfloat16"))
    ratio_check(13, "decode batch 1 int8: ≥ 4× Transformers float32", rate(b1, dtype="int8"),
                rate(b1, "Transformers"), least=4, hint=bytes_ratio("int8", "Transformers", "float32"))
    ratio_check(13, "decode batch 1 int4: ≥ 1.7× int8", rate(b1, dtype="int4"), rate(b1, dtype="int8"), least=1.7,
                hint=bytes_ratio("int4", "nemotron_c", "int8"))
    for dtype in PEER_DTYPES:
        ratio_check(13, f"decode {dtype}: batch 8 ≥ 5× batch 1", rate(b8, dtype=dtype), rate(b1, dtype=dtype),
                    least=5)
    # decode faster than every peer at equal precision, at each batch both measured (issue 12 holds prefill to 1.1x
    # llama.cpp above)
    for dtype, peers in PEER_DTYPES.items():
        for engine, peer_dtype in peers:
            for measurement in (b1, b8):
                theirs = rate(measurement, engine, peer_dtype)
                if theirs is not None:
                    ratio_check(13, f"{measurement} {dtype}: faster than {engine} {peer_dtype}",
                                rate(measurement, dtype=dtype), theirs, above=1.0)
    return checks


def markdown(checks):
    lines = ["| issue | goal | measured | met |", "|---|---|---:|---|"]
    for c in checks:
        verdict = "-" if c.met is None else "yes" if c.met else "**no**"
        lines.append(f"| {c.issue} | {c.goal} | {c.measured} | {verdict} |")
    return "\n".join(lines)


def summary(checks):
    measured = [c for c in checks if c.met is not None]
    return f"goals met: {sum(c.met for c in measured)} of {len(measured)} measured"


# ------------------------------------------------------------ judging a section of RESULTS.md again

GOALS_HEADING = "### Goals of issues 12 and 13 on this CPU"


def read_section(text):
    """(rows, names, ceilings, threads) of one RESULTS.md section as results.section wrote it: the rows from its
    table (tokens/s, and the FLOPs and bytes per token that its GFLOP/s and MB/token columns give), the ceilings from
    its Probes line, the threads from its first line. Figures come back rounded as the table shows them."""
    threads = int(re.search(r"· (\d+) threads? ·", text).group(1))
    probes = re.search(r"FMA peak \([^)]*\) ([\d.]+) GFLOP/s one core, ([\d.]+) all threads", text)
    bandwidth = re.search(r"read bandwidth [\d.]+ GB/s one thread, ([\d.]+) all threads", text)
    ceilings = Ceilings(float(probes.group(2)) if probes else None, float(bandwidth.group(1)) if bandwidth else None,
                        float(probes.group(1)) if probes else None)

    def number(cell):
        try:
            return float(cell)
        except ValueError:  # "" or "-": not measured
            return None

    rows = []
    for line in text.split(GOALS_HEADING)[0].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != len(COLUMNS) or cells[0] in (COLUMNS[0], "---"):
            continue
        value = dict(zip(COLUMNS, cells))
        rate, gflops, megabytes = (number(value[k]) for k in ("tokens/s", "GFLOP/s", "weights MB/token"))
        one_thread = value["measurement"].endswith(", 1 thread")
        rows.append(Row(value["measurement"], value["engine"], value["dtype"], rate,
                        flops_per_token=gflops * 1e9 / rate if gflops and rate else None,
                        bytes_per_token=megabytes * 1e6 if megabytes else None, note=value["note"],
                        threads=1 if one_thread else None))
    # the shortest prompt is the prefill the goals are stated for; a longer one is the long-prompt row
    prompts = sorted({r.measurement for r in rows if re.fullmatch(r"prefill \d+", r.measurement)},
                     key=lambda m: int(m.split()[1]))
    scores = [r.measurement for r in rows if r.measurement.startswith("score ")]
    names = dict(prefill=prompts[0] if prompts else "prefill", long=prompts[1] if len(prompts) > 1 else None,
                 score=scores[0] if scores else "score",
                 one_thread=f"{prompts[0] if prompts else 'prefill'}, 1 thread")
    return rows, names, ceilings, threads


def rejudge(path, every=False):
    """Adds to each section of the results file at `path` that has none the goals table its own table gives (a
    section measured before the goals were judged), or with every=True replaces every section's (after the goals
    change). Returns {heading: summary} of the sections written."""
    with open(path, encoding="utf-8") as f:
        sections = f.read().split("\n## ")[1:]
    summaries = {}
    for body in sections:
        if GOALS_HEADING in body and not every:
            continue
        heading = body.split("\n", 1)[0]
        checks = evaluate(*read_section(body))
        text = "## " + body.split("\n" + GOALS_HEADING)[0].rstrip("\n")
        update_results(path, heading, f"{text}\n\n{GOALS_HEADING}\n\n{REJUDGED}\n\n{markdown(checks)}\n")
        summaries[heading] = summary(checks)
    return summaries


REJUDGED = "Judged after the run from the table above, as rounded there (`python -m benchmarks.goals`)."


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m benchmarks.goals", description=rejudge.__doc__)
    parser.add_argument("results", nargs="?", default=os.path.join(os.path.dirname(__file__), "RESULTS.md"))
    parser.add_argument("--every", action="store_true", help="judge again the sections that have a goals table")
    args = parser.parse_args()
    for heading, said in rejudge(args.results, args.every).items():
        print(f"{heading}: {said}")
