"""Run report: a few key tables from the aggregates, printed (:mod:`hpcsim.console`) and written as
``<run>/report.md`` with the figures embedded (relative links, so the run folder can be moved or copied whole).

Each section is plain data (a :class:`hpcsim.console.Table`) rendered three ways: to the terminal or batch log,
to markdown, and to ``--json``.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd

from hpcsim.console import Table, emit_table

log = logging.getLogger(__name__)

TOP_BUSES = 10
FIGURES = {
    "voltage_envelope": "Feeder node voltages against the band",
    "boundary_power": "Boundary load: feeders vs the case's PD/QD",
    "convergence": "Convergence (ΔV and ΔS against the tolerance)",
    "time_breakdown": "Time per federate",
    # a dynamic run's (hpcsim.dynamics.plots)
    "frequency": "System frequency against the nominal, its distribution, the load variation",
    "ace": "ACE and the AGC's area control signal",
    "der_power": "DER output: base, PFR (droop) and SFR (AGC) against the limits (one DER per feeder)",
    "feeder_voltage": "Feeder node voltages (mean ± std, min / max) against the band",
}
STATISTICS = {"frequency_hz": ("frequency, Hz (every TDS step)", ".4f"), "ace_mw": ("ACE, MW (every TDS step)", ".3f"),
              "agc_ace_mw": ("ACE, MW (AGC samples)", ".3f"), "acs_mw": ("area control signal, MW", ".3f"),
              "agc_thermal_mw": ("AGC to thermal units, MW", ".3f"), "agc_der_mw": ("AGC to DERs, MW", ".3f")}


Section = Table  # one table of the report; ``note`` is a line printed under it


def _f(x: float | None, fmt: str = ".3f") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)) or x is pd.NA:
        return "–"
    return "∞" if isinstance(x, float) and math.isinf(x) else format(x, fmt)


def _t(time_s: float) -> str:
    return f"{time_s / 3600:g} h" if time_s and time_s % 900 == 0 else f"{time_s:g} s"


def run_section(m: dict) -> Section:
    rows = [["study", m["study"]], ["case", str(m.get("case"))], ["status", m["status"]]]
    if m.get("kind") == "dynamic":
        rows += [["simulated / planned", f"{m['simulated_s']:g} s / {m['stop_s']:g} s"],
                 ["feeders, DERs", f"{m['n_feeders']}, {m['n_der']}"],
                 ["AGC, trip", f"{'on' if m['agc'] else 'off'}, {m.get('trip') or 'none'}"]]
    else:
        rows += [["steps written / planned", f"{m['steps_written']} / {m.get('planned_steps') or '?'}"],
                 ["coupling", f"{m.get('coupling')} (tolerance {_f(m.get('tolerance'), 'g')})"
                  if m.get("coupling") == "iterative" else str(m.get("coupling"))]]
    rows += [["input rows", ", ".join(f"{k} {v:,}" for k, v in m["input_rows"].items())],
             ["aggregated with", f"{m['scheduler']} in {m['elapsed_s']:.1f} s"]]
    return Section("Run", ["", ""], rows)


def convergence_section(steps: pd.DataFrame, m: dict) -> Section:
    it = steps["iterations"].dropna()
    dv = steps["dv_pu"].astype("float64")
    ds = steps["ds_pu"].astype("float64")
    worst = lambda x: _f(float(x[np.isfinite(x)].max()) if np.isfinite(x).any() else None, ".2e")  # noqa: E731
    rows = [["iterations per step", f"{int(it.min()) if len(it) else '–'} – {int(it.max()) if len(it) else '–'}"
             f" (total {int(it.sum())})"],
            ["worst final dV (finite), pu", worst(dv)],
            ["worst final dS (finite), pu of 100 MVA", worst(ds)],
            ["steps with no previous value (∞)", str(int((np.isinf(dv) | np.isinf(ds)).sum()))]]
    if m.get("coupling") == "iterative" and m.get("tolerance"):
        above = (dv[np.isfinite(dv)] > m["tolerance"]).reindex(dv.index, fill_value=False) | \
            (ds[np.isfinite(ds)] > m["tolerance"]).reindex(ds.index, fill_value=False)
        rows.append(["steps above tolerance", str(int(above.sum()))])
    return Section("Convergence", ["", ""], rows)


def voltage_section(fv: pd.DataFrame, band: tuple[float, float]) -> Section:
    lo = fv.loc[fv["min_v_pu"].idxmin()]
    hi = fv.loc[fv["max_v_pu"].idxmax()]
    rows = [["lowest node voltage", f"{lo['min_v_pu']:.4f} pu", f"{lo['feeder']} at {_t(lo['time_s'])}"],
            ["highest node voltage", f"{hi['max_v_pu']:.4f} pu", f"{hi['feeder']} at {_t(hi['time_s'])}"]]
    has_nodes = fv["n_nodes"].notna()
    if has_nodes.any():
        nv = fv[has_nodes]
        share = nv["n_outside"].sum() / nv["n_nodes"].sum()
        rows.append([f"node-steps outside {band[0]}–{band[1]} pu", f"{share:.2%}",
                     f"{int(nv['n_outside'].sum()):,} of {int(nv['n_nodes'].sum()):,}"])
        rows.append(["feeder-steps with a node outside", str(int((nv["n_outside"] > 0).sum())),
                     f"of {len(nv)}"])
    else:
        rows.append(["node statistics", "–", "no node voltages written ([outputs] node_voltages = true)"])
    return Section("Feeder voltages", ["", "value", "where"], rows)


def boundary_section(b: pd.DataFrame, system: pd.DataFrame) -> Section:
    last = b[b["time_s"] == b["time_s"].max()].sort_values("p_mw", ascending=False)
    shown = min(TOP_BUSES, len(last))
    sec = Section(f"Boundary buses at {_t(last['time_s'].iloc[0])} (largest {shown} of {len(last)})",
                  ["bus", "K", "V pu", "angle deg", "P MW", "Q Mvar", "case PD MW"])
    for r in last.head(TOP_BUSES).itertuples():
        sec.rows.append([str(r.bus), str(r.clones), f"{r.v_pu:.4f}", f"{r.angle_deg:.2f}", f"{r.p_mw:.2f}",
                         f"{r.q_mvar:.2f}", _f(r.pd_case_mw, ".2f")])
    s_last = system[system["time_s"] == system["time_s"].max()].iloc[0]
    ratio = system["p_ratio"].astype("float64")
    res_p, res_q = s_last.get("p_residual_mw"), s_last.get("q_residual_mvar")
    residual = (f" + static residual {res_p:.1f} MW / {res_q:.1f} Mvar"
                if res_p is not None and pd.notna(res_p) and (res_p or res_q) else "")
    sec.note = (f"all {len(last)} buses: feeders' load {s_last['p_dist_mw']:.1f} MW / {s_last['q_dist_mvar']:.1f} "
                f"Mvar{residual} vs case {_f(s_last['p_case_mw'], '.1f')} MW / {_f(s_last['q_case_mvar'], '.1f')} Mvar "
                f"(× load profile {_f(s_last['load_mult'], 'g')}); P ratio over the run "
                f"{_f(ratio.min(), '.3f')} – {_f(ratio.max(), '.3f')}")
    return sec


def timing_section(fed: pd.DataFrame) -> Section:
    sec = Section("Time per federate (summed over steps)",
                  ["federate", "steps", "compute s", "exchange s", "peak RSS MB"])
    d = fed[fed["role"] == "feeders"]
    for r in fed[fed["role"] != "feeders"].itertuples():
        sec.rows.append([r.federate, str(r.steps), f"{r.compute_s:.2f}", f"{r.exchange_s:.2f}", f"{r.peak_rss_mb:.0f}"])
    if len(d):
        sec.rows.append([f"{len(d)} feeder group(s): max", str(d["steps"].max()), f"{d['compute_s'].max():.2f}",
                         f"{d['exchange_s'].max():.2f}", f"{d['peak_rss_mb'].max():.0f}"])
        sec.rows.append(["feeder groups: sum", str(d["steps"].sum()), f"{d['compute_s'].sum():.2f}",
                         f"{d['exchange_s'].sum():.2f}", "–"])
    return sec


def statistics_section(stats: pd.DataFrame, f0_hz: float) -> Section:
    sec = Section("Frequency and AGC", ["", "samples", "mean", "std", "min", "at", "max", "at"])
    for r in stats.itertuples():
        label, fmt = STATISTICS.get(r.quantity, (r.quantity, ".4g"))
        sec.rows.append([label, str(r.n), _f(r.mean, fmt), _f(r.std, fmt), _f(r.min, fmt), _t(r.t_min_s),
                         _f(r.max, fmt), _t(r.t_max_s)])
    f = stats[stats["quantity"] == "frequency_hz"]
    if len(f):
        r = f.iloc[0]
        sec.note = (f"nadir {r['min']:.4f} Hz ({(r['min'] - f0_hz) * 1e3:+.1f} mHz from {f0_hz:g} Hz) at "
                    f"{_t(r['t_min_s'])}; peak {(r['max'] - f0_hz) * 1e3:+.1f} mHz at {_t(r['t_max_s'])}")
    return sec


def feeders_section(feeders: pd.DataFrame, band: tuple[float, float]) -> Section:
    sec = Section("Feeders over the run", ["bus", "feeder", "scale", "lowest V pu", "at", "highest V pu", "at",
                                           f"exchanges outside {band[0]}–{band[1]}", "P net MW", "headroom MW"])
    for r in feeders.itertuples():
        sec.rows.append([str(r.bus), r.feeder, f"{r.scale:.3f}", f"{r.min_v_pu:.4f}", _t(r.t_min_s),
                         f"{r.max_v_pu:.4f}", _t(r.t_max_s), f"{r.exchanges_outside} of {r.exchanges}",
                         f"{r.p_net_min_mw:.3f} – {r.p_net_max_mw:.3f}", _f(r.headroom_mean_mw, ".3f")])
    sec.note = "P net: one feeder model (× scale at its bus); headroom: mean over the LPs solved"
    return sec


def der_section(ders: pd.DataFrame) -> Section:
    sec = Section("DER output per feeder (Σ over its DERs, MW of the feeder model)",
                  ["bus", "feeder", "DERs", "base min – max", "PFR min – max", "SFR min – max",
                   "output min – max"])
    for (bus, feeder), d in ders.groupby(["bus", "feeder"], sort=True):
        spans = [f"{d[c].min():.3f} – {d[c].max():.3f}" for c in ("p_base_mw", "p_pfr_mw", "p_sfr_mw", "p_mw")]
        sec.rows.append([str(bus), feeder, str(int(d["n_der"].max())), *spans])
    return sec


def _dynamic_sections(read, m: dict) -> list[Section]:
    stats, feeders, ders, fed = read("statistics"), read("feeders"), read("der_totals"), read("federates")
    sections = []
    if len(stats):
        sections.append(statistics_section(stats, m["f0_hz"]))
    if len(feeders):
        sections.append(feeders_section(feeders, tuple(m["band_pu"])))
    if len(ders):
        sections.append(der_section(ders))
    if len(fed):
        sections.append(timing_section(fed))
    return sections


def build_sections(agg_dir: Path, m: dict) -> list[Section]:
    read = lambda name: pd.read_parquet(agg_dir / f"{name}.parquet")  # noqa: E731
    sections = [run_section(m)]
    if m.get("kind") == "dynamic":
        return sections + _dynamic_sections(read, m)
    steps, fv, b = read("steps"), read("feeder_voltages"), read("boundary")
    system, fed = read("system"), read("federates")
    if len(steps):
        sections.append(convergence_section(steps, m))
    if len(fv):
        sections.append(voltage_section(fv, tuple(m["band_pu"])))
    if len(b):
        sections.append(boundary_section(b, system))
    if len(fed):
        sections.append(timing_section(fed))
    return sections


def print_sections(sections: list[Section]) -> None:
    for sec in sections:
        key_value = not any(sec.columns)
        emit_table(Table(sec.title, sec.columns, sec.rows, f"  {sec.note}" if sec.note else "",
                         align=["l"] * len(sec.columns) if key_value else None))


def _md_table(sec: Section) -> list[str]:
    cols = [c or " " for c in sec.columns]
    rule = "|" + "|".join("---" if i == 0 else "---:" for i in range(len(cols))) + "|"
    lines = ["| " + " | ".join(cols) + " |", rule]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in sec.rows]
    return lines


def write_markdown(run_dir: Path, sections: list[Section], figures: dict[str, Path], m: dict) -> Path:
    """``<run>/report.md`` with the tables and the figures (links relative to the run folder)."""
    lines = [f"# Run report: {m['study']}", "", f"Status: **{m['status']}**. Tables: `aggregate/*.parquet` "
             "(schema in docs/outputs.md).", ""]
    for sec in sections:
        lines += [f"## {sec.title}", "", *_md_table(sec), ""]
        if sec.note:
            lines += [sec.note, ""]
    lines += ["## Figures", ""]
    for name, title in FIGURES.items():
        if name in figures:
            rel = figures[name].resolve().relative_to(run_dir.resolve())
            lines += [f"### {title}", "", f"![{title}]({rel.as_posix()})", ""]
    path = run_dir / "report.md"
    path.write_text("\n".join(lines))
    log.info("wrote %s", path)
    return path
