#!/usr/bin/env python3
"""Runs the benchmarks of issue #6, prints one `bench ...` line per figure, writes
bench/results.json, and regenerates the table and the plot in docs/performance.md.

Each benchmark program measures the engine and its baseline in the same run and prints one JSON
object (bench/bench_common.h). Ratios are "higher is better": engine / baseline for rates, and
baseline / engine for costs (memory, time). Benchmarks measure; nothing here is a test.

  bench/run.py --build build-bench [--only durable_txn,interpreter] [--no-docs] [--redraw]

ATOMFLOW_BENCH_SCALE (default 1) multiplies every count but recovery's;
ATOMFLOW_BENCH_RECOVERY_SCALE (default 1) multiplies recovery's, whose engine side takes about a
minute for 100,000 executions on a quiet machine today (ten on a loaded one); below 1 its figure
is projected linearly to 100,000 executions. The counts used are printed and recorded.
ATOMFLOW_BENCH_RUNS (default 3) runs each program that many times and keeps the run whose ratio
is the median, so that one run disturbed by a neighbour on a shared machine does not decide a
figure; every run's ratio is recorded in the details (`ratios_of_runs`).
"""

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(ROOT, "docs", "performance.md")
PLOT = os.path.join(ROOT, "docs", "performance.png")
RESULTS = os.path.join(ROOT, "bench", "results.json")
TABLE_BEGIN = "<!-- bench:table begin (written by bench/run.py) -->"
TABLE_END = "<!-- bench:table end -->"
RECOVERY_TARGET_EXECUTIONS = 100000


def rate_figure(minimum_ratio, minimum_value=None):
    """A throughput: ratio = engine / baseline; met when both floors hold."""
    def judge(result):
        baseline = result["baseline"]
        ratio = result["value"] / baseline if baseline else 0.0
        met = ratio >= minimum_ratio and (minimum_value is None or result["value"] >= minimum_value)
        targets = [f"ratio>={minimum_ratio:g}"] if minimum_ratio else []
        target_ratio = minimum_ratio
        if minimum_value is not None:
            targets.append(f"value>={minimum_value:g}")
            if baseline:
                target_ratio = max(target_ratio, minimum_value / baseline)
        return ratio, met, ",".join(targets), target_ratio
    return judge


def judge_durable_txn(result):
    ratio, met, target, floor = rate_figure(0.7, 20000)(result)
    p99 = result["details"].get("p99_ms_half_load", float("inf"))
    return ratio, met and p99 <= 10, target + ",p99_half_load<=10ms", floor


def cost_figure(maximum_value, label):
    """A cost: ratio = baseline / engine; met when the engine's value is at most the target."""
    def judge(result):
        ratio = result["baseline"] / result["value"] if result["value"] else 0.0
        target_ratio = result["baseline"] / maximum_value if maximum_value else 0.0
        return ratio, 0 < result["value"] <= maximum_value, f"value<={label}", target_ratio
    return judge


# name -> (program, judge, extra environment, what the value is)
BENCHMARKS = [
    ("durable_txn", "bench_durable_txn", judge_durable_txn, {}, "transactions/s"),
    ("two_phase_commit", "bench_two_phase_commit", rate_figure(0.9), {}, "transactions/s"),
    ("interpreter", "bench_interpreter", rate_figure(0.25), {}, "steps/s"),
    ("memory_per_execution", "bench_memory", cost_figure(4096, "4096B"), {}, "bytes"),
    ("recovery", "bench_recovery", cost_figure(3.0, "3s"), {"recovery": True}, "seconds"),
    ("api_starts", "bench_api_starts", rate_figure(0.0, 5000), {"needs_atomflow": True},
     "starts/s"),
]


def run_program(build, name, program, extra):
    """Runs one benchmark program; returns its JSON result, or a failed result with a note."""
    env = dict(os.environ)
    if extra.get("recovery"):
        env["ATOMFLOW_BENCH_SCALE"] = os.environ.get("ATOMFLOW_BENCH_RECOVERY_SCALE", "1")
    command = [os.path.join(build, "bench", program)]
    if extra.get("needs_atomflow"):
        command.append(os.path.join(build, "atomflow"))
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900,
                              check=False)
    except subprocess.TimeoutExpired:
        return failed(name, "timed out after 900 s")
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        return failed(name, (done.stderr.strip() or f"exit status {done.returncode}")[-300:])
    return json.loads(lines[-1])


def runs():
    text = os.environ.get("ATOMFLOW_BENCH_RUNS", "3")
    return max(1, int(text)) if text.isdigit() else 3


def median_run(build, name, program, judge, extra):
    """Runs the program runs() times; the run with the median ratio, and its judgement."""
    judged = []
    failures = []
    for _ in range(runs()):
        result = run_program(build, name, program, extra)
        if extra.get("recovery"):
            result = project_recovery(result)
        if result["value"] or not result["details"].get("note"):
            judged.append((result, judge(result)))
        else:
            failures.append(result)  # a run that failed is reported, not ranked
    if not judged:
        return failures[0], judge(failures[0])
    ratios = [verdict[0] for _, verdict in judged]
    judged.sort(key=lambda pair: pair[1][0])
    result, verdict = judged[(len(judged) - 1) // 2]
    if len(judged) > 1:
        result["details"]["ratios_of_runs"] = [round(ratio, 4) for ratio in ratios]
    if failures:
        result["details"]["failed_runs"] = [failed["details"]["note"] for failed in failures]
    return result, verdict


def failed(name, note):
    return {"name": name, "value": 0.0, "baseline": 0.0, "unit": "", "scale": 0,
            "details": {"note": note}}


def project_recovery(result):
    """Recovery is measured at a lower count; its seconds scale with the count (one claim and
    one replay per execution), so both sides are projected to 100,000 executions."""
    count = result["details"].get("active_executions", 0)
    if not count or count == RECOVERY_TARGET_EXECUTIONS:
        return result
    factor = RECOVERY_TARGET_EXECUTIONS / count
    result["details"]["measured_seconds"] = result["value"]
    result["details"]["measured_baseline_seconds"] = result["baseline"]
    result["details"]["projected_from"] = count
    result["value"] *= factor
    result["baseline"] *= factor
    return result


def bench_line(name, result, ratio, met, target):
    return (f"bench {name} value={result['value']:.6g} baseline={result['baseline']:.6g} "
            f"ratio={ratio:.4g} target={target} {'met' if met else 'missed'}")


def machine():
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            names = [line.split(":", 1)[1].strip() for line in info
                     if line.startswith("model name")]
            cpu = f"{len(names)} x {names[0]}" if names else cpu
    except OSError:
        pass
    return f"{cpu}, {os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') // 2**30} GiB"


def write_plot(rows):
    """A PNG bar chart: each figure's ratio beside the ratio its target needs (log scale)."""
    if shutil.which("gnuplot") is None:
        print("gnuplot not found: no plot (make bench installs gnuplot-nox)", file=sys.stderr)
        return
    data = os.path.join(ROOT, "bench", "plot.dat")
    with open(data, "w", encoding="utf-8") as out:
        for row in rows:
            out.write(f"{row['name']} {max(row['ratio'], 1e-5):.6g} "
                      f"{max(row['target_ratio'], 1e-5):.6g}\n")
    script = f"""
set terminal pngcairo size 1000,520 font 'sans,10'
set output '{PLOT}'
set title 'Atomflow against its baselines, same run (higher is better; log scale)'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set logscale y
set yrange [1e-4:10]
set ylabel 'ratio to baseline'
set xtics rotate by -20 noenhanced
set key top right
set grid ytics
plot '{data}' using 2:xtic(1) title 'measured ratio' lc rgb '#3b6ea8', \\
     '' using 3 title 'ratio the target needs' lc rgb '#d08c2f'
"""
    done = subprocess.run(["gnuplot"], input=script, text=True, capture_output=True, check=False)
    os.remove(data)
    if done.returncode != 0:
        print("gnuplot failed: " + done.stderr, file=sys.stderr)


def table(rows, started):
    lines = [TABLE_BEGIN, "",
             f"Run of {started} UTC on {machine()}; counts scaled by "
             f"ATOMFLOW_BENCH_SCALE={os.environ.get('ATOMFLOW_BENCH_SCALE', '1')}.", "",
             "| figure | engine | baseline | ratio | target | |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        unit = row["unit"]
        lines.append(f"| {row['name']} | {row['value']:.4g} {unit} | {row['baseline']:.4g} "
                     f"{unit} | {row['ratio']:.3g} | {row['target']} | "
                     f"{'met' if row['met'] else '**missed**'} |")
    lines += ["", "Details of the run (counts, percentiles, notes):", ""]
    for row in rows:
        details = ", ".join(f"{key}={format_detail(value)}"
                            for key, value in row["details"].items())
        lines += textwrap.wrap(f"- `{row['name']}`: {details}", width=100,
                               subsequent_indent="  ", break_on_hyphens=False)
    lines += ["", "![ratios against the baselines](performance.png)", "", TABLE_END]
    return "\n".join(lines)


def format_detail(value):
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def update_doc(rows, started):
    if not os.path.exists(DOC):
        print(f"{DOC} is missing: table not written", file=sys.stderr)
        return
    with open(DOC, encoding="utf-8") as source:
        text = source.read()
    pattern = re.compile(re.escape(TABLE_BEGIN) + ".*?" + re.escape(TABLE_END), re.S)
    if not pattern.search(text):
        print(f"{DOC} has no table markers: table not written", file=sys.stderr)
        return
    text = pattern.sub(lambda _: table(rows, started), text)
    with open(DOC, "w", encoding="utf-8") as out:
        out.write(text)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", default="build-bench")
    parser.add_argument("--only", default="", help="comma-separated figure names")
    parser.add_argument("--no-docs", action="store_true", help="print only; keep the docs")
    parser.add_argument("--redraw", action="store_true",
                        help="rewrite the table and the plot from bench/results.json; run nothing")
    args = parser.parse_args()
    if args.redraw:
        with open(RESULTS, encoding="utf-8") as source:
            recorded = json.load(source)
        write_plot(recorded["figures"])
        update_doc(recorded["figures"], recorded["started_utc"])
        return
    build = os.path.abspath(args.build)
    only = set(filter(None, args.only.split(",")))
    started = datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M")

    rows = []
    for name, program, judge, extra, unit in BENCHMARKS:
        if only and name not in only:
            continue
        result, (ratio, met, target, target_ratio) = median_run(build, name, program, judge,
                                                                extra)
        print(bench_line(name, result, ratio, met, target), flush=True)
        note = result["details"].get("note")
        if note:
            print(f"  {name}: {note}", flush=True)
        if result["details"].get("projected_from"):
            print(f"  {name}: measured {result['details']['projected_from']} executions in "
                  f"{result['details']['measured_seconds']:.3g} s, projected to "
                  f"{RECOVERY_TARGET_EXECUTIONS}", flush=True)
        rows.append({"name": name, "value": result["value"], "baseline": result["baseline"],
                     "unit": result.get("unit") or unit, "ratio": ratio, "met": met,
                     "target": target, "target_ratio": target_ratio,
                     "scale": result.get("scale"), "details": result["details"]})

    with open(RESULTS, "w", encoding="utf-8") as out:
        json.dump({"started_utc": started, "machine": machine(), "figures": rows}, out, indent=2)
        out.write("\n")
    if not args.no_docs and not only:
        write_plot(rows)
        update_doc(rows, started)


if __name__ == "__main__":
    main()
