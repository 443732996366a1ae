"""The benchmark's rows, their derived figures, the table they make and benchmarks/RESULTS.md, which holds one
section per CPU kind: a run replaces the section of its own CPU kind and leaves the others."""
import dataclasses
import math
import os

RESULTS_TITLE = "# Benchmark results"
RESULTS_PREAMBLE = (
    "Written by `python -m benchmarks.run` (benchmarks/README.md says what each column means). One section per\n"
    "CPU kind; a run on the same kind replaces its section. Figures taken on a busy machine are noisy.\n")
COLUMNS = ("measurement", "engine", "dtype", "tokens/s", "× Transformers fp32", "GFLOP/s", "of FMA peak",
           "weights MB/token", "GB/s", "of read BW", "note")


@dataclasses.dataclass
class Row:
    measurement: str                        # "prefill 512", "score 16×128", "decode batch 1", ...
    engine: str                             # "nemotron_c", "Transformers", "llama.cpp", "ORT GenAI"
    dtype: str
    tokens_per_s: float | None = None
    flops_per_token: float | None = None    # for GFLOP/s: what one token of this measurement costs
    bytes_per_token: float | None = None    # weights read per generated token (a decode step's bytes / batch)
    note: str = ""
    greedy: str = ""                        # decode rows: agreement with Transformers float32's tokens
    threads: int | None = None              # 1 for the one-thread rows, None for the run's thread count


@dataclasses.dataclass
class Ceilings:
    """The probes' figures at the run's thread count (None where a probe could not run), and the FMA peak of
    one core, the ceiling of the one-thread rows."""
    gflops: float | None
    read_gbs: float | None
    gflops_one: float | None = None


def reference_rates(rows):
    """{measurement: tokens/s of Transformers float32}."""
    return {r.measurement: r.tokens_per_s for r in rows
            if r.engine == "Transformers" and r.dtype == "float32" and r.tokens_per_s}


def cells(row, reference, ceilings):
    """The table's cells of one row, as text ("" where a figure does not apply, "-" where it is missing)."""
    def number(value, spec):
        return "-" if value is None or not math.isfinite(value) else format(value, spec)

    rate = row.tokens_per_s
    measured = rate is not None and math.isfinite(rate)
    gflops = rate * row.flops_per_token / 1e9 if measured and row.flops_per_token else None
    gbs = rate * row.bytes_per_token / 1e9 if measured and row.bytes_per_token else None
    ratio = rate / reference[row.measurement] if measured and reference.get(row.measurement) else None

    def fraction(value, ceiling):
        return "" if value is None else number(value / ceiling if ceiling else None, ".0%")

    return [row.measurement, row.engine, row.dtype, number(rate, ".1f") if rate is not None else "",
            number(ratio, ".2f") if measured else "", number(gflops, ".1f") if gflops is not None else "",
            fraction(gflops, ceilings.gflops_one if row.threads == 1 else ceilings.gflops),
            number(row.bytes_per_token / 1e6, ".0f" if row.bytes_per_token >= 1e7 else ".3g") if row.bytes_per_token
            else "",
            number(gbs, ".1f") if gbs is not None else "", fraction(gbs, ceilings.read_gbs),
            "; ".join(filter(None, (row.note, row.greedy)))]


def markdown_table(rows, ceilings):
    reference = reference_rates(rows)
    lines = ["| " + " | ".join(COLUMNS) + " |",
             "|" + "|".join("---" if i in (0, 1, 2, len(COLUMNS) - 1) else "---:" for i in range(len(COLUMNS))) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells(row, reference, ceilings)) + " |")
    return "\n".join(lines)


def text_table(rows, ceilings):
    """The same table aligned for a terminal."""
    reference = reference_rates(rows)
    table = [list(COLUMNS)] + [cells(row, reference, ceilings) for row in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(COLUMNS) - 1)]
    out = []
    for r in table:
        out.append("  ".join(c.rjust(w) if i > 2 else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
                   + "  " + r[-1])
    return "\n".join(line.rstrip() for line in out)


def section(heading, header_lines, rows, ceilings, goals_table=None):
    """The CPU kind's section: header, the table, then the goals' table (goals.markdown) when given."""
    goals = ["", "### Goals of issues 12 and 13 on this CPU", "", goals_table] if goals_table else []
    return "\n".join([f"## {heading}", "", *header_lines, "", markdown_table(rows, ceilings), *goals, ""])


def update_results(path, heading, text):
    """Writes `text` (a section starting with '## heading') into the results file at `path`, in place of the
    section with the same heading, else at the end."""
    sections, preamble = [], f"{RESULTS_TITLE}\n\n{RESULTS_PREAMBLE}"
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            content = f.read()
        parts = content.split("\n## ")
        preamble = parts[0].rstrip("\n") + "\n"
        sections = ["## " + part.rstrip("\n") + "\n" for part in parts[1:]]
    text = text.rstrip("\n") + "\n"
    titles = [s.split("\n", 1)[0] for s in sections]
    if f"## {heading}" in titles:
        sections[titles.index(f"## {heading}")] = text
    else:
        sections.append(text)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        f.write("\n".join([preamble, *sections]))
    os.replace(path + ".tmp", path)
