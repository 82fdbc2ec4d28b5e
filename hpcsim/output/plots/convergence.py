"""Convergence (ΔV and ΔS per iteration or per step, against the tolerance) and time per federate."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from hpcsim.output.plots.style import (
    BAND_COLOR,
    DS_COLOR,
    DV_COLOR,
    MAX_FEDERATE_BARS,
    _ax_title,
    _figure,
    _legend_below,
    _log_limits,
    _marked,
    _suptitle,
    _time_axis,
    count_of,
    time_label,
)

# --- convergence --------------------------------------------------------------------------------------------

DV_LABEL = "transmission ΔV = √Σ(ΔVm² + ΔVa²) (pu)"
DS_LABEL = "worst feeder |ΔS| (pu of 100 MVA)"


def convergence_figure(steps: pd.DataFrame, iterations: pd.DataFrame | None, study: str,
                       tolerance: float | None, coupling: str | None) -> Figure:
    """Snapshot: ΔV and ΔS of every iteration; several steps: iterations and final ΔV / ΔS per step (and, when
    iterative, every step's per-iteration ΔV)."""
    tol = tolerance if coupling == "iterative" else None
    if len(steps) == 1 and iterations is not None and len(iterations) > 1:
        return _iteration_convergence(iterations, study, tol)
    s = steps.sort_values("time_s")
    x, xlabel = _time_axis(s["time_s"])
    traces = tol is not None and iterations is not None and iterations.groupby("time_s").size().max() > 2
    varies = s["iterations"].astype("float64").nunique(dropna=False) > 1
    fig = _figure(7.0 if varies or traces else 6.0)
    heights = [1.0 if varies else 0.45, 1.6]  # the same count every step (loose coupling: 1) needs little room
    if traces:
        m = fig.subplot_mosaic([["it", "trace"], ["final", "trace"]], width_ratios=[1.6, 1.0], height_ratios=heights)
        ax1, ax2 = m["it"], m["final"]
        ax1.sharex(ax2)
    else:
        ax1, ax2 = fig.subplots(2, 1, sharex=True, height_ratios=heights)
    width = float(np.min(np.diff(x))) * 0.8 if len(x) > 1 else 0.8
    it = s["iterations"].astype("float64")
    ax1.bar(x, it.fillna(0), width=width, color="tab:gray", label="iterations (exchanges)")
    if it.isna().any():
        ax1.plot(x[it.isna()], np.zeros(int(it.isna().sum())), "x", color=BAND_COLOR, ms=8, clip_on=False,
                 label="step not finished")
    ax1.set_ylabel("iterations")
    ax1.yaxis.set_major_locator(MaxNLocator(nbins="auto" if varies else 2, integer=True))
    ax1.tick_params(labelbottom=False)
    ax1.grid(alpha=0.3, axis="y")
    _ax_title(ax1, "transmission iterations per step")
    _marked(ax2, x, s["dv_pu"], DV_COLOR, DV_LABEL, "ΔV = ∞ (no previous voltages)", "ΔV missing (step not finished)",
            marker="o", mfc="none", ms=6, lw=1.4)
    _marked(ax2, x, s["ds_pu"], DS_COLOR, DS_LABEL, "ΔS = ∞ (no previous powers)", "ΔS missing (no feeder powers)",
            slot=1, marker="x", ms=6, lw=1.0)
    if tol:
        ax2.axhline(tol, color=BAND_COLOR, ls=":", lw=1.3, label=f"tolerance {tol:g}")
    ax2.set_yscale("log")
    _log_limits(ax2, [s["dv_pu"], s["ds_pu"]], tol)
    ax2.set_xlabel(xlabel)
    ax2.set_ylabel("final mismatch (pu; ΔS pu of 100 MVA)")
    ax2.grid(alpha=0.3, which="both")
    what = "change from the previous step" if coupling == "loose" else "at the last iteration"
    _ax_title(ax2, f"final mismatch per step ({coupling or '?'} coupling: {what})")
    axes = [ax1, ax2]
    if traces:
        _iteration_traces(m["trace"], iterations, tol)
        axes.append(m["trace"])
    _legend_below(fig, axes, ncols=3)
    _suptitle(fig, f"{study}: convergence over {len(s)} steps")
    return fig


def _iteration_traces(ax: Axes, it: pd.DataFrame, tol: float) -> None:
    for _, g in it.sort_values(["time_s", "iteration"]).groupby("time_s"):
        for col, color in (("dv_pu", DV_COLOR), ("ds_pu", DS_COLOR)):
            y = g[col].astype("float64")
            ok = np.isfinite(y) & (y > 0)
            ax.plot(g["iteration"][ok], y[ok], color=color, lw=0.8, alpha=0.35)
    ax.axhline(tol, color=BAND_COLOR, ls=":", lw=1.3)
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("iteration")
    ax.set_ylabel("mismatch (pu; ΔS pu of 100 MVA)")
    ax.grid(alpha=0.3, which="both")
    _ax_title(ax, "every step, per iteration (∞ / missing omitted)")


def _iteration_convergence(it: pd.DataFrame, study: str, tol: float | None) -> Figure:
    it = it.sort_values("iteration")
    fig = _figure(5.2)
    ax = fig.subplots()
    _marked(ax, it["iteration"], it["dv_pu"], DV_COLOR, DV_LABEL, "ΔV = ∞ at the first solve (no previous voltages)",
            "ΔV missing", marker="o", mfc="none", ms=7, lw=1.6)
    _marked(ax, it["iteration"], it["ds_pu"], DS_COLOR, DS_LABEL, "ΔS = ∞ (no previous powers)",
            "ΔS missing (no feeder answer yet)", slot=1, marker="x", ms=7, lw=1.2)
    if tol:
        ax.axhline(tol, color=BAND_COLOR, ls=":", lw=1.3, label=f"tolerance {tol:g}")
    ax.set_yscale("log")
    _log_limits(ax, [it["dv_pu"], it["ds_pu"]], tol)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("iteration (transmission solve; 0 = the first, on the start loads)")
    ax.set_ylabel("mismatch (pu; ΔS in pu of 100 MVA)")
    ax.grid(alpha=0.3, which="both")
    _legend_below(fig, [ax], ncols=2)
    last = it.iloc[-1]
    _suptitle(fig, f"{study}: convergence at t = {time_label(it['time_s'].iloc[0])}\n"
                   f"{count_of(int(it['iteration'].max()), 'exchange')}; final ΔV {last['dv_pu']:.2g} pu, "
                   f"ΔS {last['ds_pu']:.2g} pu of 100 MVA" + (f"; tolerance {tol:g}" if tol else ""))
    return fig


# --- time per federate --------------------------------------------------------------------------------------


def time_breakdown_figure(fed: pd.DataFrame, study: str) -> Figure:
    """Horizontal stacked bars: compute (solve + I/O) and exchange (inside HELICS calls) per federate."""
    f = fed.assign(total=fed["compute_s"] + fed["exchange_s"])
    more = ""
    if len(f) > MAX_FEDERATE_BARS:
        keep = f[f["role"] == "transmission"].index.union(f.nlargest(MAX_FEDERATE_BARS - 1, "total").index)
        more = f" (transmission + the {len(keep) - 1} busiest of {len(f) - 1} feeder groups)"
        f = f.loc[keep]
    f = f.iloc[::-1]  # first federate on top
    y = np.arange(len(f))
    fig = _figure(2.2 + 0.34 * len(f), width_in=9.0)
    ax = fig.subplots()
    ax.barh(y, f["compute_s"], color="tab:blue", label="compute (solve + output)")
    ax.barh(y, f["exchange_s"], left=f["compute_s"], color="tab:orange", label="exchange (inside HELICS, waiting)")
    for yi, total in zip(y, f["total"]):
        ax.text(total, yi, f" {total:,.1f} s" if total < 600 else f" {total:,.0f} s ({total / 60:.1f} min)", va="center",
                fontsize=8)
    ax.set_yticks(y, f["federate"], fontsize=8 if len(f) > 12 else 9)
    ax.set_xlabel("wall time summed over all steps (s)")
    ax.set_xlim(0, float(f["total"].max()) * 1.22 or 1.0)
    ax.grid(alpha=0.3, axis="x")
    _legend_below(fig, [ax], ncols=2)
    _suptitle(fig, f"{study}: time per federate{more}")
    return fig
