"""PNG figures of an aggregated run (``<run>/aggregate/*.png``), drawn with matplotlib's Agg canvas.

Inputs are the aggregate tables (small: one row per feeder or bus and time step), read with pandas.
A run with a single time step (snapshot) gets per-feeder / per-bus bar charts instead of time series.

- ``voltage_envelope.png``: node-voltage envelope over time — mean, ±1σ band, min/max dashed (the style of the
  T&D dynamic co-simulation paper's Fig. 11) — for all feeders pooled and the feeders with the lowest minimum;
- ``boundary_power.png``: total P and Q at the boundary buses, then one small panel per bus (P and Q);
- ``convergence.png``: iterations and final mismatch (log axis) per step;
- ``time_breakdown.png``: compute vs exchange time per federate (stacked bars).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

log = logging.getLogger(__name__)

MAX_BUS_PANELS = 40
MAX_FEDERATE_BARS = 40
WORST_FEEDERS = 3
BAND_COLOR, MEAN_COLOR = "tab:red", "tab:blue"


def _time_axis(times_s: pd.Series) -> tuple[pd.Series, str]:
    """Times in hours when the run spans two hours or more, else seconds, with the axis label."""
    span = float(times_s.max() - times_s.min()) if len(times_s) else 0.0
    return (times_s / 3600.0, "time (h)") if span >= 7200 else (times_s, "time (s)")


def _save(fig: Figure, path: Path, dpi: int = 110) -> Path:
    fig.savefig(path, dpi=dpi)
    log.info("wrote %s", path)
    return path


def pooled_envelope(fv: pd.DataFrame) -> pd.DataFrame:
    """All feeders' nodes pooled per time step: min, mean, max and std (std NaN without node statistics)."""
    rows = []
    for t, g in fv.groupby("time_s", sort=True):
        n = g["n_nodes"].astype("float64")
        if n.notna().all() and g["std_v_pu"].notna().all():
            total = n.sum()
            mean = float((n * g["mean_v_pu"]).sum() / total)
            ss = ((n - 1) * g["std_v_pu"] ** 2 + n * (g["mean_v_pu"] - mean) ** 2).sum()
            std = math.sqrt(ss / (total - 1)) if total > 1 else float("nan")
        else:
            mean, std = float(g["mean_v_pu"].mean()), float("nan")
        rows.append({"time_s": t, "min_v_pu": g["min_v_pu"].min(), "mean_v_pu": mean, "max_v_pu": g["max_v_pu"].max(),
                     "std_v_pu": std})
    return pd.DataFrame(rows)


def _envelope_panel(ax, env: pd.DataFrame, title: str, band: tuple[float, float]) -> None:
    x, xlabel = _time_axis(env["time_s"])
    ax.plot(x, env["mean_v_pu"], color=MEAN_COLOR, lw=1.8, label="mean", marker="." if len(env) < 30 else None)
    if env["std_v_pu"].notna().any():
        ax.fill_between(x, env["mean_v_pu"] - env["std_v_pu"], env["mean_v_pu"] + env["std_v_pu"], color=MEAN_COLOR,
                        alpha=0.25, lw=0, label="±1σ")
    ax.plot(x, env["min_v_pu"], "k--", lw=1, label="min / max")
    ax.plot(x, env["max_v_pu"], "k--", lw=1)
    for v in band:
        ax.axhline(v, color=BAND_COLOR, ls=":", lw=1, label=f"band {band[0]}–{band[1]} pu" if v == band[0] else None)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("node voltage (pu)")
    ax.grid(alpha=0.3)


def voltage_envelope(fv: pd.DataFrame, path: Path, band: tuple[float, float], study: str) -> Path:
    """Envelope over time (several steps) or per feeder (one step)."""
    source = "node voltages" if (fv["source"] == "node_voltages").any() else \
        "feeders table (no node voltages written: no ±1σ band)"
    if fv["time_s"].nunique() == 1:
        return _snapshot_envelope(fv, path, band, study, source)
    worst = fv.groupby("feeder")["min_v_pu"].min().nsmallest(WORST_FEEDERS).index.tolist()
    panels = [(f"all {fv['feeder'].nunique()} feeders pooled", pooled_envelope(fv))]
    for name in worst:
        g = fv[fv["feeder"] == name].sort_values("time_s")
        panels.append((f"{name} (lowest min {g['min_v_pu'].min():.3f} pu)", g))
    ncols = 2 if len(panels) > 1 else 1
    nrows = math.ceil(len(panels) / ncols)
    fig = Figure(figsize=(6.5 * ncols, 3.6 * nrows + 0.6), layout="constrained")
    axes = fig.subplots(nrows, ncols, sharey=True, squeeze=False).ravel()
    for i, (ax, (title, env)) in enumerate(zip(axes, panels)):
        _envelope_panel(ax, env, title, band)
        if i % ncols:
            ax.set_ylabel("")
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=4, fontsize=9)
    fig.suptitle(f"{study}: feeder node-voltage envelope (from {source})")
    return _save(fig, path)


def _snapshot_envelope(fv: pd.DataFrame, path: Path, band: tuple[float, float], study: str, source: str) -> Path:
    g = fv.sort_values("min_v_pu").reset_index(drop=True)
    x = np.arange(len(g))
    fig = Figure(figsize=(max(7.0, min(16.0, 0.12 * len(g) + 4)), 4.5), layout="constrained")
    ax = fig.subplots()
    ax.vlines(x, g["min_v_pu"], g["max_v_pu"], color="k", lw=0.8, label="min – max")
    if g["std_v_pu"].notna().any():
        ax.vlines(x, g["mean_v_pu"] - g["std_v_pu"], g["mean_v_pu"] + g["std_v_pu"], color=MEAN_COLOR, lw=4, alpha=0.4,
                  label="±1σ")
    ax.plot(x, g["mean_v_pu"], "o", color=MEAN_COLOR, ms=3, label="mean")
    for v in band:
        ax.axhline(v, color=BAND_COLOR, ls=":", lw=1)
    if len(g) <= 30:
        ax.set_xticks(x, g["feeder"], rotation=60, ha="right", fontsize=7)
    ax.set_xlabel("feeder (sorted by minimum voltage)")
    ax.set_ylabel("node voltage (pu)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"{study}: node voltages per feeder at t = {g['time_s'].iloc[0]:g} s (from {source})", fontsize=10)
    return _save(fig, path)


def boundary_power(b: pd.DataFrame, path: Path, study: str) -> Path:
    """System totals on top, then one small panel per bus (the largest MAX_BUS_PANELS by mean P)."""
    if b["time_s"].nunique() == 1:
        return _snapshot_power(b, path, study)
    order = b.groupby("bus")["p_mw"].mean().sort_values(ascending=False)
    shown = order.index[:MAX_BUS_PANELS].tolist() if len(order) > 1 else []  # one bus: the total says it all
    ncols = 6 if len(shown) > 12 else max(1, min(4, len(shown)))
    nrows = math.ceil(len(shown) / ncols)
    fig = Figure(figsize=(max(9.0, 2.6 * ncols + 1), 3.4 + 1.9 * nrows), layout="constrained")
    if shown:
        top, grid = fig.subfigures(2, 1, height_ratios=[3.2, 1.9 * nrows])
    else:
        top, grid = fig, None
    ax = top.subplots()
    tot = b.groupby("time_s")[["p_mw", "q_mvar"]].sum().reset_index()
    x, xlabel = _time_axis(tot["time_s"])
    ax.plot(x, tot["p_mw"], color="tab:blue", lw=2, label="P (MW)")
    ax.plot(x, tot["q_mvar"], color="tab:orange", lw=2, label="Q (Mvar)")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("MW / Mvar")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"{study}: total load of the {b['bus'].nunique()} boundary buses (final iteration of each step)",
                 fontsize=10)
    if grid is None:
        return _save(fig, path)
    axes = grid.subplots(nrows, ncols, squeeze=False).ravel()  # not sharex: every panel keeps its time labels
    for a, bus in zip(axes, shown):
        g = b[b["bus"] == bus].sort_values("time_s")
        xb, _ = _time_axis(g["time_s"])
        a.plot(xb, g["p_mw"], color="tab:blue", lw=1.2)
        a.plot(xb, g["q_mvar"], color="tab:orange", lw=1.0, ls="--")
        a.set_title(f"bus {bus} (K={int(g['clones'].iloc[0])})", fontsize=8, pad=2)
        a.tick_params(labelsize=7)
        a.grid(alpha=0.3)
    for a in axes[len(shown):]:
        a.set_visible(False)
    more = f", largest {len(shown)} of {len(order)} by mean P" if len(order) > len(shown) else ""
    grid.suptitle(f"per bus: P (MW, solid) and Q (Mvar, dashed) vs {xlabel}{more}", fontsize=9)
    return _save(fig, path)


def _snapshot_power(b: pd.DataFrame, path: Path, study: str) -> Path:
    g = b.sort_values("p_mw", ascending=False).reset_index(drop=True)
    x = np.arange(len(g))
    fig = Figure(figsize=(max(7.0, min(16.0, 0.3 * len(g) + 3)), 4.5), layout="constrained")
    ax = fig.subplots()
    ax.bar(x - 0.2, g["p_mw"], 0.4, label="P (MW)", color="tab:blue")
    ax.bar(x + 0.2, g["q_mvar"], 0.4, label="Q (Mvar)", color="tab:orange")
    ax.set_xticks(x, [f"{bus}\nK={k}" for bus, k in zip(g["bus"], g["clones"])], fontsize=7)
    ax.set_xlabel("boundary bus")
    ax.set_ylabel("MW / Mvar")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    ax.set_title(f"{study}: boundary load per bus at t = {g['time_s'].iloc[0]:g} s "
                 f"(total {g['p_mw'].sum():.1f} MW, {g['q_mvar'].sum():.1f} Mvar)", fontsize=10)
    return _save(fig, path)


def convergence(steps: pd.DataFrame, path: Path, study: str, tolerance: float | None, coupling: str | None,
                iterations: pd.DataFrame | None = None) -> Path:
    """Iterations per step (bars) and final mismatch (log axis); infinite mismatches are marked, not dropped.
    A single-step run shows the mismatch of every iteration instead."""
    if len(steps) == 1 and iterations is not None and len(iterations) > 1:
        return _iteration_convergence(iterations, path, study, tolerance)
    s = steps.sort_values("time_s")
    x, xlabel = _time_axis(s["time_s"])
    width = float(np.min(np.diff(x))) * 0.8 if len(x) > 1 else 0.8
    fig = Figure(figsize=(9, 6), layout="constrained")
    ax1, ax2 = fig.subplots(2, 1, sharex=True)
    ax1.bar(x, s["iterations"].astype("float64").fillna(0), width=width, color="tab:gray")
    ax1.set_ylabel("iterations")
    ax1.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax1.grid(alpha=0.3, axis="y")
    ax1.set_title("transmission iterations per step", fontsize=10)
    finite_max = 1.0
    for col, color, label, style in (
            ("dv_pu", "tab:blue", "transmission ΔV (pu)",
             {"marker": "o", "mfc": "none", "ms": 7, "lw": 1.5}),
            ("ds_pu", "tab:orange", "feeders, worst |ΔS| (pu of 100 MVA)",
             {"marker": "x", "ms": 5, "lw": 1})):
        y = s[col].astype("float64")
        ok = np.isfinite(y) & (y > 0)
        if ok.any():
            ax2.plot(x[ok], y[ok], color=color, label=label, **style)
            finite_max = max(finite_max, float(y[ok].max()))
        inf = np.isinf(y)
        if inf.any():
            ax2.plot(x[inf], [finite_max * 3] * int(inf.sum()), "^", color=color, ms=8,
                     label=f"{label}: no previous value (∞)")
    if tolerance and coupling == "iterative":
        ax2.axhline(tolerance, color=BAND_COLOR, ls=":", label=f"tolerance {tolerance:g}")
    ax2.set_yscale("log")
    ax2.set_xlabel(xlabel)
    ax2.set_ylabel("final mismatch")
    ax2.grid(alpha=0.3, which="both")
    ax2.legend(fontsize=8)
    what = "change from the previous step" if coupling == "loose" else "at the last iteration"
    ax2.set_title(f"final mismatch per step ({coupling or '?'} coupling: {what})", fontsize=10)
    fig.suptitle(f"{study}: convergence")
    return _save(fig, path)


def _iteration_convergence(it: pd.DataFrame, path: Path, study: str, tolerance: float | None) -> Path:
    it = it.sort_values("iteration")
    y = it["dv_pu"].astype("float64")
    ok = np.isfinite(y) & (y > 0)
    fig = Figure(figsize=(8, 4.5), layout="constrained")
    ax = fig.subplots()
    ax.plot(it["iteration"][ok], y[ok], "o-", color="tab:blue", label="transmission voltage mismatch (pu)")
    if tolerance:
        ax.axhline(tolerance, color=BAND_COLOR, ls=":", label=f"tolerance {tolerance:g}")
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("iteration")
    ax.set_ylabel("√Σ(ΔVm² + ΔVa²) (pu)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    ax.set_title(f"{study}: convergence at t = {it['time_s'].iloc[0]:g} s ({int(it['iteration'].max())} exchanges; "
                 "iteration 0 has no previous value)", fontsize=10)
    return _save(fig, path)


def time_breakdown(fed: pd.DataFrame, path: Path, study: str) -> Path:
    """Horizontal stacked bars: compute (solve + I/O) and exchange (inside HELICS calls) per federate."""
    f = fed.assign(total=fed["compute_s"] + fed["exchange_s"])
    more = ""
    if len(f) > MAX_FEDERATE_BARS:
        keep = f[f["role"] == "transmission"].index.union(f.nlargest(MAX_FEDERATE_BARS - 1, "total").index)
        more = f" (transmission + the {len(keep) - 1} busiest of {len(f) - 1} feeder groups)"
        f = f.loc[keep]
    f = f.iloc[::-1]  # first federate on top
    y = np.arange(len(f))
    fig = Figure(figsize=(9, 1.6 + 0.35 * len(f)), layout="constrained")
    ax = fig.subplots()
    ax.barh(y, f["compute_s"], color="tab:blue", label="compute (solve + output)")
    ax.barh(y, f["exchange_s"], left=f["compute_s"], color="tab:orange", label="exchange (waiting in HELICS)")
    for yi, total in zip(y, f["total"]):
        ax.text(total, yi, f" {total:.1f} s", va="center", fontsize=8)
    ax.set_yticks(y, f["federate"], fontsize=8)
    ax.set_xlabel("time summed over all steps (s)")
    ax.set_xlim(0, float(f["total"].max()) * 1.15 or 1.0)
    ax.grid(alpha=0.3, axis="x")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title(f"{study}: time per federate{more}", fontsize=10)
    return _save(fig, path)


def plot_run(agg_dir: Path, manifest: dict, fmt: str = "png", dpi: int = 110) -> dict[str, Path]:
    """Every figure of an aggregated run; returns name -> path (``<agg_dir>/<name>.<fmt>``)."""
    read = lambda name: pd.read_parquet(agg_dir / f"{name}.parquet")  # noqa: E731
    study, band = manifest["study"], tuple(manifest["band_pu"])
    out = {}
    fv, b, s, f = read("feeder_voltages"), read("boundary"), read("steps"), read("federates")
    if len(fv):
        out["voltage_envelope"] = voltage_envelope(fv, agg_dir / f"voltage_envelope.{fmt}", band, study)
    if len(b):
        out["boundary_power"] = boundary_power(b, agg_dir / f"boundary_power.{fmt}", study)
    if len(s):
        it = read("iterations") if (agg_dir / "iterations.parquet").exists() else None
        out["convergence"] = convergence(s, agg_dir / f"convergence.{fmt}", study, manifest.get("tolerance"),
                                         manifest.get("coupling"), it)
    if len(f):
        out["time_breakdown"] = time_breakdown(f, agg_dir / f"time_breakdown.{fmt}", study)
    return out
