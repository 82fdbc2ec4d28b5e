"""``bench.json`` and ``bench.md``: the suite's figures as data and as the Markdown tables the README quotes."""

from __future__ import annotations

import json
import math
from pathlib import Path


def _f(x: float, digits: int = 3) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}g}"


def _s(spread: dict, digits: int = 3) -> str:
    """min / median / max."""
    return f"{_f(spread['min'], digits)} / **{_f(spread['median'], digits)}** / {_f(spread['max'], digits)}"


def markdown(result: dict) -> str:
    m, fig = result["machine"], result["figures"]
    pk = ", ".join(f"{k} {v}" for k, v in m["packages"].items() if v)
    lines = [
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB, Python {m['python']} ({pk}); load "
        f"average {m['load_average_start'][0]:.2f} at start, {m['load_average_end'][0]:.2f} at end; "
        f"{result['scale']['repeats']} repeat(s), min / **median** / max; suite {result['elapsed_s'] / 60:.1f} min.",
        "",
        "| figure | value | ideal / goal |",
        "|---|---|---|",
        f"| coupling overhead, 126 feeders, 2 workers: loop / (Σ feeder solve / workers + Σ PF) | "
        f"{_s(fig['coupling_overhead'])} | 1 / ≤ 1.25 |",
        f"| of which load imbalance: busiest worker's solves / mean | {_s(fig['imbalance'])} | 1 |",
        f"| strong scaling 1 → 2 workers (126 feeders): speed-up | {_s(fig['strong_speedup'])} | 2 |",
        f"| strong scaling efficiency | {_s(fig['strong_efficiency'])} | 1 |",
        f"| weak scaling efficiency, ~63 feeders per worker, 1 → 2 workers (each run against its own ideal) | "
        f"{_s(fig['weak_efficiency'])} | 1 |",
    ]
    mem = fig["memory_per_clone_mb"]
    if "separate" in mem and "shared" in mem:
        lines.append(f"| memory per IEEE 8500 clone: separate engines / shared engine | {_f(mem['separate'])} MB / "
                     f"{_f(mem['shared'] * 1024)} kB (×{_f(fig['memory_ratio_separate_to_shared'])}) | – |")
    lines += ["", "Runs (coupling loop and whole run, seconds):", "",
              "| run | feeders | workers | engines | iterations | loop s | wall s | overhead | peak MB |",
              "|---|---|---|---|---|---|---|---|---|"]
    for name, run in result["runs"].items():
        pts = run["repeats"]
        p = pts[0]
        lines.append(f"| {name} | {p['feeders']} | {p['workers']} | {p['engine_mode']} | {p['iterations']} | "
                     f"{_s(fig['loop_s'][name])} | {_s(fig['wall_s'][name])} | "
                     f"{_f(sorted(q['overhead'] for q in pts)[(len(pts) - 1) // 2])} | "
                     f"{_f(max(q['peak_rss_mb'] for q in pts), 4)} |")
    if fig.get("methods"):
        lines += ["", "Coupling methods (each study as shipped; ideal = Σ feeder solve / workers + Σ PF):", "",
                  "| run | buses | iterations | loop s | wall s | loop / ideal | wall / ideal |", "|---|---|---|---|---|---|---|"]
        for name, mf in fig["methods"].items():
            buses = result["runs"][name]["repeats"][0]["buses"]
            lines.append(f"| {name} | {buses} | {_s(mf['iterations'])} | {_s(mf['loop_s'])} | {_s(mf['wall_s'])} | "
                         f"{_s(mf['loop_over_ideal'])} | {_s(mf['wall_over_ideal'])} |")
    lines += ["", "HELICS exchange per coupling iteration (ms; hub + 2 echo federates):", "",
              "| values | flat | root + 2 sub-brokers |", "|---|---|---|"]
    by = {(e["values"], e["sub_brokers"]): e for e in fig["exchange_ms"]}
    for values in sorted({v for v, _ in by}):
        cells = [f"{_f(by[(values, s)]['min'])} / **{_f(by[(values, s)]['median'])}** / {_f(by[(values, s)]['max'])}"
                 if (values, s) in by else "–" for s in (0, 2)]
        lines.append(f"| {values} | {cells[0]} | {cells[1]} |")
    if result.get("exchange_fit"):
        ef = result["exchange_fit"]
        lines.append(f"\nFit (flat): {ef['latency_ms']:.3g} ms + {ef['per_value_us']:.3g} µs per value.")
    if result.get("exchange_nodes"):
        nodes = result["exchange_nodes"][0]["nodes"]
        lines += ["", f"HELICS exchange across {nodes} SLURM nodes (ms, median; hub on node 0, one echo per node):",
                  "", "| values | flat (root broker only) | root + a sub-broker per node | hierarchy / flat |",
                  "|---|---|---|---|"]
        for e in result["exchange_nodes"]:
            lines.append(f"| {e['n_values']} | {_f(e['flat_ms'])} | {_f(e['hierarchy_ms'])} | "
                         f"{e['hierarchy_over_flat']:.2f} |")
    lines += ["", "Performance model (fitted on `calibration` + `shared` + micro-benchmarks) against runs it was "
              "not fitted on:", "",
              "| run | feeders | workers | engines | loop predicted / measured | error | peak MB predicted / "
              "measured | error |", "|---|---|---|---|---|---|---|---|"]
    for v in result["validation"]:
        lines.append(f"| {v['label']} | {v['feeders']} | {v['workers']} | {v['engine_mode']} | "
                     f"{_f(v['loop_s_predicted'])} / {_f(v['loop_s_measured'])} s | {v['loop_s_error']:+.0%} | "
                     f"{_f(v['peak_rss_mb_predicted'], 4)} / {_f(v['peak_rss_mb_measured'], 4)} | "
                     f"{v['peak_rss_mb_error']:+.0%} |")
    ok = sum(v["within"] for v in result["validation"])
    lines.append(f"\n{ok} of {len(result['validation'])} runs predicted within 25 % (time and memory).")
    return "\n".join(lines) + "\n"


def _clean(obj):
    """JSON without NaN (null instead)."""
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    return obj


def write_report(result: dict, out_dir: Path) -> tuple[Path, Path]:
    js, md = out_dir / "bench.json", out_dir / "bench.md"
    js.write_text(json.dumps(_clean(result), indent=1) + "\n")
    md.write_text(markdown(result))
    return js, md
