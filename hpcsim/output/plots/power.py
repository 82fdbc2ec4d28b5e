"""What the feeders draw against the case load, per bus (scatter with the 1:1 line, bars) and over time."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from hpcsim.output.plots.style import (
    BAR_BUSES,
    OUTSIDE_RIGHT,
    P_COLOR,
    Q_COLOR,
    _ax_title,
    _figure,
    _legend_below,
    _suptitle,
    _time_axis,
    case_load_at,
    count_of,
    time_label,
)

# --- boundary power -----------------------------------------------------------------------------------------


def boundary_power_figure(b: pd.DataFrame, system: pd.DataFrame | None, study: str) -> Figure:
    """Feeders' P/Q against the case's PD/QD per bus (at the step of the largest load); over time when several."""
    b, known = case_load_at(b, system)
    totals = b.groupby("time_s")[["p_mw", "q_mvar", "pd_mw", "qd_mvar"]].sum(min_count=1)
    t_peak = float(totals["p_mw"].idxmax())
    step = b[b["time_s"] == t_peak]
    case = "case PD/QD" + ("" if known or len(totals) == 1 else " (nominal: load profile unknown)")
    n_bars = min(BAR_BUSES, len(step))
    if len(totals) == 1:
        fig = _figure(max(5.5, 2.4 + 0.36 * n_bars))
        ax_s, ax_b = fig.subplots(1, 2)
        axes = [ax_s, ax_b]
    else:
        fig = _figure(max(9.5, 5.6 + 0.36 * n_bars))
        mosaic = fig.subplot_mosaic([["tot", "tot"], ["ratio", "ratio"], ["scatter", "bars"]],
                                    height_ratios=[2.2, 1.0, max(3.6, 0.36 * n_bars + 0.9)])
        ax_s, ax_b = mosaic["scatter"], mosaic["bars"]
        axes = [ax_s, ax_b]
        _power_over_time(mosaic["tot"], mosaic["ratio"], totals, known)
    _power_scatter(ax_s, step)
    _power_bars(ax_b, step, n_bars)
    _legend_below(fig, axes, ncols=4)
    tot = totals.loc[t_peak]
    versus = f"{case} unknown" if not tot["pd_mw"] > 0 else \
        f"{case} {tot['pd_mw']:,.1f} MW, {tot['qd_mvar']:,.1f} Mvar: P = {tot['p_mw'] / tot['pd_mw']:.2f} × PD"
    at = f"t = {time_label(t_peak)}" if len(totals) == 1 else f"the step of the largest load (t = {time_label(t_peak)})"
    _suptitle(fig, f"{study}: boundary load at {at}, {count_of(len(step), 'bus', 'buses')}, "
                   f"{count_of(int(step['clones'].sum()), 'feeder')}\n"
                   f"feeders P {tot['p_mw']:,.1f} MW, Q {tot['q_mvar']:,.1f} Mvar{_residual(b, t_peak)}; {versus}")
    return fig


def _residual(b: pd.DataFrame, t: float) -> str:
    """ " + static residual P, Q" when the run kept one (``residual_load``), else ""."""
    if "residual_p_mw" not in b:
        return ""
    at = b[b["time_s"] == t]
    p, q = float(at["residual_p_mw"].sum()), float(at["residual_q_mvar"].sum())
    return f" + static residual {p:,.1f} MW, {q:,.1f} Mvar" if p or q else ""


def _power_scatter(ax: Axes, g: pd.DataFrame) -> None:
    ok = g["pd_mw"].notna()
    if not ok.any():
        _ax_title(ax, "case PD/QD unknown (case not readable)")
        return
    for x, y, color, marker, what in ((g["pd_mw"], g["p_mw"], P_COLOR, "o", "P vs PD (MW)"),
                                      (g["qd_mvar"], g["q_mvar"], Q_COLOR, "^", "Q vs QD (Mvar)")):
        pos = x > 0
        r = float((y[pos] / x[pos]).median()) if pos.any() else float("nan")
        ax.scatter(x, y, s=14 if len(g) > 100 else 28, color=color, marker=marker, alpha=0.6, lw=0,
                   label=f"{what}: median ratio {r:.2f}")
        if math.isfinite(r):
            top = float(np.nanmax(x.to_numpy(dtype="float64")))
            ax.plot([0, top], [0, top * r], color=color, ls="--", lw=1)
    vals = pd.concat([g["pd_mw"], g["p_mw"], g["qd_mvar"], g["q_mvar"]]).astype("float64")
    lo, hi = min(0.0, float(np.nanmin(vals))), float(np.nanmax(vals)) * 1.05
    ax.plot([lo, hi], [lo, hi], color="k", lw=0.9, label="1 : 1 (feeders draw the case load)")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_aspect("equal", adjustable="box")
    ax.set_xlabel("case load per bus: PD (MW), QD (Mvar)")
    ax.set_ylabel("feeders' load per bus: P (MW), Q (Mvar)")
    _ax_title(ax, f"per bus, {'all ' if len(g) > 1 else ''}{count_of(len(g), 'bus', 'buses')} (dashed: median ratio)")
    ax.grid(alpha=0.3)


def _power_bars(ax: Axes, g: pd.DataFrame, n: int) -> None:
    top = g.nlargest(n, "p_mw").reset_index(drop=True)
    y, h = np.arange(len(top)), 0.2
    for off, col, color, label in ((-1.5, "p_mw", P_COLOR, "P feeders (MW)"), (-0.5, "pd_mw", (P_COLOR, 0.3), "PD case (MW)"),
                                   (0.5, "q_mvar", Q_COLOR, "Q feeders (Mvar)"), (1.5, "qd_mvar", (Q_COLOR, 0.3), "QD case (Mvar)")):
        ax.barh(y + off * h, top[col].fillna(0.0), h, color=color, edgecolor="none" if "case" not in label else color[0],
                label=label)
    right = float(np.nanmax(top[["p_mw", "pd_mw"]].to_numpy(dtype="float64")))
    for yi, p, pd_ in zip(y, top["p_mw"], top["pd_mw"]):
        if pd_ and math.isfinite(pd_):
            ax.text(max(p, pd_) + 0.01 * right, yi - h, f"×{p / pd_:.2f}", va="center", fontsize=8)
    ax.set_xlim(min(0.0, float(np.nanmin(top[["q_mvar", "qd_mvar"]].to_numpy(dtype="float64")))), right * 1.16)
    ax.set_yticks(y, [f"bus {bus} (K={k})" for bus, k in zip(top["bus"], top["clones"])], fontsize=8)
    ax.set_ylim(max(len(top), 4) - 0.5, -0.5)  # a few buses keep a bar's height
    ax.set_xlabel("MW / Mvar")
    ax.grid(alpha=0.3, axis="x")
    more = f"the {len(top)} largest of {len(g):,} buses" if len(g) > len(top) else count_of(len(top), "bus", "buses")
    _ax_title(ax, f"{more} by P (×: P / PD)")


def _power_over_time(ax: Axes, ax_r: Axes, totals: pd.DataFrame, known: bool) -> None:
    x, xlabel = _time_axis(totals.index.to_series())
    marker = "." if len(totals) < 40 else None
    case = "case × load profile" if known else "case (nominal)"
    ax.plot(x, totals["p_mw"], color=P_COLOR, lw=2, marker=marker, label="P feeders (MW)")
    ax.plot(x, totals["pd_mw"], color=P_COLOR, lw=1.3, ls="--", label=f"PD {case} (MW)")
    ax.plot(x, totals["q_mvar"], color=Q_COLOR, lw=2, marker=marker, label="Q feeders (Mvar)")
    ax.plot(x, totals["qd_mvar"], color=Q_COLOR, lw=1.3, ls="--", label=f"QD {case} (Mvar)")
    ax.set_ylabel("MW / Mvar")
    _ax_title(ax, "total over the boundary buses")
    ratio = totals["p_mw"] / totals["pd_mw"]
    ax.sharex(ax_r)
    ax.tick_params(labelbottom=False)
    ax_r.plot(x, ratio, color="k", lw=1.4, marker=marker, label="P / PD")
    ax_r.axhline(1.0, color="0.5", lw=0.8)
    ax_r.set_ylabel("P / PD")
    ax_r.set_xlabel(xlabel)
    for a in (ax, ax_r):
        a.grid(alpha=0.3)
        a.legend(**OUTSIDE_RIGHT)
