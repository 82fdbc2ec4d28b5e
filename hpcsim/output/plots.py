"""Figures of an aggregated run (``<run>/aggregate/<name>.<fmt>``), drawn on matplotlib ``Figure`` objects (Agg;
no pyplot state). Inputs are the aggregate tables (one row per feeder or bus and time step), read with pandas.
Every figure summarises rather than draws each feeder, so it stays cheap and readable at 10^4–10^5 feeders, and
identical clones (same min/mean/max node voltage to ``CLONE_TOL_PU``) are one entry labelled ×count.

- ``voltage_envelope``: snapshot — distribution of the feeders' min/mean/max node voltage against the band, and
  the lowest distinct feeders as min–max bars; several steps — the pooled envelope over time, the lowest distinct
  feeders' minimum over time and the number of feeders outside the band per step;
- ``boundary_power``: what the feeders draw (P, Q) against the case's load (PD, QD × load profile) per bus: a
  scatter with the 1:1 line and the median ratio, bars for the largest buses; several steps add the totals and
  the P/PD ratio over time (the bus panels are then at the step of the largest load);
- ``convergence``: transmission ΔV (pu) and worst feeder |ΔS| (pu of 100 MVA) against the tolerance, per
  iteration (snapshot) or per step with the iterations per step (several steps); ∞ and missing values are marked;
- ``time_breakdown``: compute vs exchange time per federate (stacked bars).
"""

from __future__ import annotations

import logging
import math
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from matplotlib.transforms import blended_transform_factory

log = logging.getLogger(__name__)

CLONE_TOL_PU = 1e-6  # feeders whose min, mean and max node voltage agree to this are drawn as one
LOWEST_GROUPS = 20  # distinct feeders drawn as min–max bars in a snapshot
WORST_GROUPS = 5  # distinct feeders drawn over time
BAR_BUSES = 15  # buses with P/PD and Q/QD bars
MAX_FEDERATE_BARS = 40
WIDTH_IN = 11.0
VOLTS = ["min_v_pu", "mean_v_pu", "max_v_pu"]
BAND_COLOR, BAND_FILL, MEAN_COLOR = "tab:red", "tab:green", "tab:blue"
P_COLOR, Q_COLOR = "tab:blue", "tab:orange"
DV_COLOR, DS_COLOR = "tab:blue", "tab:orange"
OUTSIDE_RIGHT = {"loc": "upper left", "bbox_to_anchor": (1.02, 1.0), "borderaxespad": 0.0, "fontsize": 9}


# --- pure helpers -------------------------------------------------------------------------------------------


def wrap_title(text: str, width_in: float, fontsize: float = 12.0) -> str:
    """``text`` wrapped to lines that fit ``width_in`` inches at ``fontsize`` points (long names are broken)."""
    chars = max(20, int(width_in * 72 / (0.62 * fontsize)))
    return "\n".join(line for para in text.split("\n") for line in textwrap.wrap(para, chars) or [""])


def clone_groups(fv: pd.DataFrame, tol: float = CLONE_TOL_PU) -> pd.Series:
    """Feeder -> group number: feeders whose (min, mean, max) node voltage agree to ``tol`` pu at every time
    step share a group (values are compared on a grid of ``tol``; one hash per row, XOR-combined per feeder)."""
    q = pd.DataFrame(np.round(fv[VOLTS].to_numpy("float64") / tol), columns=VOLTS)
    q["time_s"] = fv["time_s"].to_numpy("float64")
    h = pd.util.hash_pandas_object(q, index=False).to_numpy()
    codes, names = pd.factorize(fv["feeder"].to_numpy(), sort=True)
    order = np.argsort(codes, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(codes[order]) != 0])
    signature = np.bitwise_xor.reduceat(h[order], starts) if len(h) else h
    return pd.Series(pd.factorize(signature)[0], index=pd.Index(names, name="feeder"), name="group")


def collapse_identical(fv: pd.DataFrame, tol: float = CLONE_TOL_PU) -> pd.DataFrame:
    """One entry per set of identical feeders (:func:`clone_groups`): the rows of its first feeder (by name) with
    ``group``, ``count`` (feeders it stands for) and ``n_buses`` (buses they hang from); sorted by time, then
    minimum voltage."""
    df = fv.assign(group=fv["feeder"].map(clone_groups(fv, tol)).to_numpy())
    info = df.groupby("group").agg(first=("feeder", "min"), count=("feeder", "nunique"), n_buses=("bus", "nunique"))
    rows = df[df["feeder"].isin(set(info["first"]))]
    out = rows.merge(info[["count", "n_buses"]], left_on="group", right_index=True)
    return out.sort_values(["time_s", "min_v_pu", "feeder"], ignore_index=True)


def group_label(feeder: str, bus: int, count: int, n_buses: int = 1) -> str:
    """A feeder's name, or for identical clones the bus and how many feeders the entry stands for."""
    if count <= 1:
        return str(feeder)
    where = f"bus {bus}" if n_buses <= 1 else f"bus {bus} + {n_buses - 1} more"
    return f"{where} (×{count})"


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


def case_load_at(b: pd.DataFrame, system: pd.DataFrame | None) -> tuple[pd.DataFrame, bool]:
    """Boundary rows with ``pd_mw``/``qd_mvar`` = the case's PD/QD × the step's load-profile multiplier; the flag
    says whether the multiplier was known (else nominal PD/QD)."""
    mult = pd.Series(dtype="float64")
    if system is not None and "load_mult" in system:
        mult = system.set_index("time_s")["load_mult"].astype("float64")
    m = b["time_s"].map(mult).astype("float64")
    known = bool(m.notna().all())
    m = m.fillna(1.0)
    return b.assign(pd_mw=b["pd_case_mw"].astype("float64") * m, qd_mvar=b["qd_case_mvar"].astype("float64") * m), known


def _time_axis(times_s: pd.Series) -> tuple[pd.Series, str]:
    """Times in hours when the run spans two hours or more, else seconds, with the axis label."""
    span = float(times_s.max() - times_s.min()) if len(times_s) else 0.0
    return (times_s / 3600.0, "time (h)") if span >= 7200 else (times_s, "time (s)")


# --- drawing helpers ----------------------------------------------------------------------------------------


def _figure(height_in: float, width_in: float = WIDTH_IN) -> Figure:
    return Figure(figsize=(width_in, height_in), layout="constrained")


def _suptitle(fig: Figure, text: str, fontsize: float = 12.0) -> None:
    fig.suptitle(wrap_title(text, fig.get_figwidth(), fontsize), fontsize=fontsize)


def _legend_below(fig: Figure, axes: list[Axes], ncols: int = 4) -> None:
    """One legend for ``axes`` under the figure (labels deduplicated), outside every axes."""
    seen: dict[str, object] = {}
    for ax in axes:
        for h, label in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(label, h)
    fig.legend(list(seen.values()), list(seen), loc="outside lower center", ncols=min(ncols, len(seen)), fontsize=9)


def _band(ax: Axes, band: tuple[float, float], vertical: bool = False) -> None:
    (ax.axvspan if vertical else ax.axhspan)(*band, color=BAND_FILL, alpha=0.08, lw=0)
    line = ax.axvline if vertical else ax.axhline
    for v in band:
        line(v, color=BAND_COLOR, ls=":", lw=1.3, label=f"band {band[0]:g}–{band[1]:g} pu" if v == band[0] else None)


def _marked(ax: Axes, x, y, color: str, label: str, inf_label: str, nan_label: str, **style) -> None:
    """Positive finite values as a line; ∞ as ▲ on the top edge and missing (or zero) values as ▽ on the bottom
    edge of a log axis: marked with their own legend entry, never dropped silently."""
    x, y = np.asarray(x, dtype="float64"), np.asarray(y, dtype="float64")
    ok = np.isfinite(y) & (y > 0)
    ax.plot(x[ok], y[ok], color=color, label=label, **style)
    edge = blended_transform_factory(ax.transData, ax.transAxes)
    for mask, y_axes, marker, what in ((np.isposinf(y), 0.97, "^", inf_label), (~ok & ~np.isposinf(y), 0.03, "v", nan_label)):
        if mask.any():
            ax.plot(x[mask], np.full(int(mask.sum()), y_axes), marker, color=color, ms=8, mfc="none", mew=1.5,
                    transform=edge, clip_on=False, ls="none", label=what)


def _log_limits(ax: Axes, values: list[np.ndarray], tolerance: float | None) -> None:
    """Room above and below the finite values, so the ∞ / missing markers on the edges sit clear of the data."""
    v = np.concatenate([np.asarray(a, dtype="float64") for a in values] + [np.array([tolerance or np.nan])])
    v = v[np.isfinite(v) & (v > 0)]
    if len(v):
        ax.set_ylim(v.min() / 8, v.max() * 8)


def _save(fig: Figure, path: Path, dpi: int) -> Path:
    fig.savefig(path, dpi=dpi)
    log.info("wrote %s", path)
    return path


# --- voltage envelope ---------------------------------------------------------------------------------------


def _source_note(fv: pd.DataFrame) -> str:
    if (fv["source"] == "node_voltages").any():
        return "statistics over every energized node (node voltages written)"
    return "min/mean/max of each feeder's energized nodes from the feeders table (no node voltages written: no σ)"


def voltage_envelope_figure(fv: pd.DataFrame, band: tuple[float, float], study: str) -> Figure:
    """Snapshot: distribution + lowest distinct feeders; several steps: envelope and worst feeders over time."""
    if fv["time_s"].nunique() == 1:
        return _snapshot_envelope(fv, band, study)
    return _series_envelope(fv, band, study)


def _snapshot_envelope(fv: pd.DataFrame, band: tuple[float, float], study: str) -> Figure:
    groups = collapse_identical(fv)
    low = groups.head(LOWEST_GROUPS)
    n = len(fv)
    fig = _figure(max(5.0, 2.4 + 0.27 * len(low)))
    ax_h, ax_b = fig.subplots(1, 2, sharex=True)
    lo = min(float(np.nanmin(fv["min_v_pu"])), band[0])
    hi = max(float(np.nanmax(fv["max_v_pu"])), band[1])
    bins = np.linspace(lo - 0.04 * (hi - lo), hi + 0.04 * (hi - lo), int(np.clip(3 * math.sqrt(n), 40, 100)) + 1)
    n_low, n_high = int((fv["min_v_pu"] < band[0]).sum()), int((fv["max_v_pu"] > band[1]).sum())
    for col, color, label in (("min_v_pu", "tab:purple", f"feeder minimum ({n_low:,} of {n:,} below {band[0]:g} pu)"),
                              ("max_v_pu", "tab:orange", f"feeder maximum ({n_high:,} of {n:,} above {band[1]:g} pu)")):
        ax_h.hist(fv[col].dropna(), bins, histtype="stepfilled", facecolor=(color, 0.35), edgecolor=color, lw=1.2,
                  label=label)
    ax_h.hist(fv["mean_v_pu"].dropna(), bins, histtype="step", color="0.3", lw=1.2, label="feeder mean")
    _band(ax_h, band, vertical=True)
    ax_h.set_xlabel("node voltage (pu)")
    ax_h.set_ylabel("feeders")
    ax_h.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax_h.set_title(f"all {n:,} feeders", fontsize=10)
    ax_h.grid(alpha=0.3)

    y = np.arange(len(low))
    ax_b.barh(y, low["max_v_pu"] - low["min_v_pu"], left=low["min_v_pu"], height=0.6, color="0.8", edgecolor="0.4",
              label="one entry: min – max")
    if low["std_v_pu"].notna().any():
        ax_b.barh(y, 2 * low["std_v_pu"], left=low["mean_v_pu"] - low["std_v_pu"], height=0.6,
                  color=(MEAN_COLOR, 0.45), label="one entry: mean ± 1σ")
    ax_b.plot(low["mean_v_pu"], y, "|", color=MEAN_COLOR, ms=11, mew=2, label="one entry: mean")
    ax_b.plot(low["min_v_pu"], y, "o", color="tab:purple", ms=4)
    _band(ax_b, band, vertical=True)
    labels = [group_label(r.feeder, r.bus, r.count, r.n_buses) for r in low.itertuples()]
    ax_b.set_yticks(y, labels, fontsize=8)
    ax_b.set_ylim(len(low) - 0.4, -0.6)  # lowest on top
    ax_b.set_xlabel("node voltage (pu)")
    ax_b.tick_params(axis="x", labelbottom=True)
    ax_b.grid(alpha=0.3, axis="x")
    shown = f"the {len(low)} lowest of {len(groups):,}" if len(groups) > len(low) else f"all {len(groups):,}"
    ax_b.set_title(f"{shown} distinct feeders (identical clones as one, ×count)", fontsize=10)
    _legend_below(fig, [ax_h, ax_b], ncols=3)
    _suptitle(fig, f"{study}: feeder node voltages at t = {fv['time_s'].iloc[0]:g} s ({n:,} feeders, "
                   f"{len(groups):,} distinct)\n{_source_note(fv)}")
    return fig


def _series_envelope(fv: pd.DataFrame, band: tuple[float, float], study: str) -> Figure:
    env = pooled_envelope(fv)
    groups = collapse_identical(fv)
    worst = groups.groupby("group")["min_v_pu"].min().nsmallest(WORST_GROUPS).index
    fig = _figure(10.0)
    ax1, ax2, ax3 = fig.subplots(3, 1, sharex=True, height_ratios=[3.0, 2.6, 1.7])
    x, xlabel = _time_axis(env["time_s"])
    scale = 3600.0 if xlabel == "time (h)" else 1.0
    marker = "." if len(env) < 40 else None
    ax1.plot(x, env["mean_v_pu"], color=MEAN_COLOR, lw=1.8, marker=marker, label="mean")
    if env["std_v_pu"].notna().any():
        ax1.fill_between(x, env["mean_v_pu"] - env["std_v_pu"], env["mean_v_pu"] + env["std_v_pu"], color=MEAN_COLOR,
                         alpha=0.25, lw=0, label="mean ± 1σ")
    ax1.plot(x, env["min_v_pu"], "k--", lw=1, label="min / max")
    ax1.plot(x, env["max_v_pu"], "k--", lw=1)
    ax1.set_title(f"all {fv['feeder'].nunique():,} feeders pooled", fontsize=10)
    for g, color in zip(worst, ("tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan")):
        r = groups[groups["group"] == g].sort_values("time_s")
        ax2.plot(r["time_s"] / scale, r["min_v_pu"], color=color, lw=1.4, marker=marker,
                 label=f"{group_label(r['feeder'].iloc[0], r['bus'].iloc[0], r['count'].iloc[0], r['n_buses'].iloc[0])}"
                       f": lowest {r['min_v_pu'].min():.3f} pu")
    ax2.set_title(f"minimum node voltage of the {len(worst)} lowest distinct feeders (identical clones as one, ×count)",
                  fontsize=10)
    for ax in (ax1, ax2):
        _band(ax, band)
        ax.set_ylabel("node voltage (pu)")
    out = fv.assign(low=fv["min_v_pu"] < band[0], high=fv["max_v_pu"] > band[1]).groupby("time_s")[["low", "high"]].sum()
    xo = out.index.to_numpy() / scale
    ax3.plot(xo, out["low"], "v-", color="tab:purple", ms=4, label=f"a node below {band[0]:g} pu")
    ax3.plot(xo, out["high"], "^-", color="tab:orange", ms=4, label=f"a node above {band[1]:g} pu")
    ax3.set_ylabel("feeders")
    ax3.set_ylim(bottom=0)
    ax3.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax3.set_title("feeders with a node outside the band", fontsize=10)
    ax3.set_xlabel(xlabel)
    for ax in (ax1, ax2, ax3):
        ax.grid(alpha=0.3)
        ax.legend(**OUTSIDE_RIGHT)
    _suptitle(fig, f"{study}: feeder node-voltage envelope over {len(env)} steps\n{_source_note(fv)}")
    return fig


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
        fig = _figure(max(5.5, 2.6 + 0.42 * n_bars))
        ax_s, ax_b = fig.subplots(1, 2)
        axes = [ax_s, ax_b]
    else:
        fig = _figure(max(9.5, 6.2 + 0.42 * n_bars))
        mosaic = fig.subplot_mosaic([["tot", "tot"], ["ratio", "ratio"], ["scatter", "bars"]],
                                    height_ratios=[2.2, 1.1, max(3.6, 0.42 * n_bars + 0.9)])
        ax_s, ax_b = mosaic["scatter"], mosaic["bars"]
        axes = [ax_s, ax_b]
        _power_over_time(mosaic["tot"], mosaic["ratio"], totals, system, known)
    _power_scatter(ax_s, step)
    _power_bars(ax_b, step, n_bars)
    _legend_below(fig, axes, ncols=4)
    tot = totals.loc[t_peak]
    ratio = tot["p_mw"] / tot["pd_mw"] if tot["pd_mw"] else float("nan")
    at = f"t = {t_peak:g} s" if len(totals) == 1 else f"the step of the largest load (t = {t_peak:g} s)"
    _suptitle(fig, f"{study}: boundary load at {at}, {len(step)} buses, {int(step['clones'].sum()):,} feeders\n"
                   f"feeders P {tot['p_mw']:,.1f} MW, Q {tot['q_mvar']:,.1f} Mvar; {case} {tot['pd_mw']:,.1f} MW, "
                   f"{tot['qd_mvar']:,.1f} Mvar: P = {ratio:.2f} × PD")
    return fig


def _power_scatter(ax: Axes, g: pd.DataFrame) -> None:
    ok = g["pd_mw"].notna()
    if not ok.any():
        ax.set_title("case PD/QD unknown (case not readable)", fontsize=10)
        return
    for x, y, color, marker, what in ((g["pd_mw"], g["p_mw"], P_COLOR, "o", "P vs PD (MW)"),
                                      (g["qd_mvar"], g["q_mvar"], Q_COLOR, "^", "Q vs QD (Mvar)")):
        pos = x > 0
        r = float((y[pos] / x[pos]).median()) if pos.any() else float("nan")
        ax.scatter(x, y, s=14 if len(g) > 100 else 28, color=color, marker=marker, alpha=0.6, lw=0,
                   label=f"{what}: median ratio {r:.2f}")
        if math.isfinite(r):
            top = float(np.nanmax(np.r_[x.to_numpy(), y.to_numpy() / r]))
            ax.plot([0, top], [0, top * r], color=color, ls="--", lw=1)
    vals = pd.concat([g["pd_mw"], g["p_mw"], g["qd_mvar"], g["q_mvar"]]).astype("float64")
    lo, hi = min(0.0, float(np.nanmin(vals))), float(np.nanmax(vals)) * 1.05
    ax.plot([lo, hi], [lo, hi], color="k", lw=0.9, label="1 : 1 (feeders draw the case load)")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_aspect("equal", adjustable="box")
    ax.set_xlabel("case load per bus: PD (MW), QD (Mvar)")
    ax.set_ylabel("feeders' load per bus: P (MW), Q (Mvar)")
    ax.set_title(f"per bus, all {len(g):,} buses (dashed: median ratio)", fontsize=10)
    ax.grid(alpha=0.3)


def _power_bars(ax: Axes, g: pd.DataFrame, n: int) -> None:
    top = g.nlargest(n, "p_mw").reset_index(drop=True)
    y, h = np.arange(len(top)), 0.2
    for off, col, color, label in ((-1.5, "p_mw", P_COLOR, "P feeders (MW)"), (-0.5, "pd_mw", (P_COLOR, 0.3), "PD case"),
                                   (0.5, "q_mvar", Q_COLOR, "Q feeders (Mvar)"), (1.5, "qd_mvar", (Q_COLOR, 0.3), "QD case")):
        ax.barh(y + off * h, top[col].fillna(0.0), h, color=color, edgecolor="none" if "case" not in label else color[0],
                label=label)
    right = float(np.nanmax(top[["p_mw", "pd_mw"]].to_numpy(dtype="float64")))
    for yi, p, pd_ in zip(y, top["p_mw"], top["pd_mw"]):
        if pd_ and math.isfinite(pd_):
            ax.text(max(p, pd_) + 0.01 * right, yi - h, f"×{p / pd_:.2f}", va="center", fontsize=8)
    ax.set_xlim(min(0.0, float(np.nanmin(top[["q_mvar", "qd_mvar"]].to_numpy(dtype="float64")))), right * 1.16)
    ax.set_yticks(y, [f"bus {bus} (K={k})" for bus, k in zip(top["bus"], top["clones"])], fontsize=8)
    ax.set_ylim(len(top) - 0.5, -0.5)
    ax.set_xlabel("MW / Mvar")
    ax.grid(alpha=0.3, axis="x")
    more = f"the {len(top)} largest of {len(g):,} buses" if len(g) > len(top) else f"all {len(top)} buses"
    ax.set_title(f"{more} by P (×: P / PD)", fontsize=10)


def _power_over_time(ax: Axes, ax_r: Axes, totals: pd.DataFrame, system: pd.DataFrame | None, known: bool) -> None:
    x, xlabel = _time_axis(totals.index.to_series())
    marker = "." if len(totals) < 40 else None
    case = "case × load profile" if known else "case (nominal)"
    ax.plot(x, totals["p_mw"], color=P_COLOR, lw=2, marker=marker, label="P feeders (MW)")
    ax.plot(x, totals["pd_mw"], color=P_COLOR, lw=1.3, ls="--", label=f"PD {case} (MW)")
    ax.plot(x, totals["q_mvar"], color=Q_COLOR, lw=2, marker=marker, label="Q feeders (Mvar)")
    ax.plot(x, totals["qd_mvar"], color=Q_COLOR, lw=1.3, ls="--", label=f"QD {case} (Mvar)")
    ax.set_ylabel("MW / Mvar")
    ax.set_title("total over the boundary buses", fontsize=10)
    ratio = totals["p_mw"] / totals["pd_mw"]
    ax_r.plot(x, ratio, color="k", lw=1.4, marker=marker, label="P / PD")
    ax_r.axhline(1.0, color="0.5", lw=0.8)
    ax_r.set_ylabel("P / PD")
    ax_r.set_xlabel(xlabel)
    for a in (ax, ax_r):
        a.grid(alpha=0.3)
        a.legend(**OUTSIDE_RIGHT)


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
    fig = _figure(7.0)
    if traces:
        m = fig.subplot_mosaic([["it", "trace"], ["final", "trace"]], width_ratios=[1.6, 1.0], height_ratios=[1, 1.6])
        ax1, ax2 = m["it"], m["final"]
        ax1.sharex(ax2)
    else:
        ax1, ax2 = fig.subplots(2, 1, sharex=True, height_ratios=[1, 1.6])
    width = float(np.min(np.diff(x))) * 0.8 if len(x) > 1 else 0.8
    it = s["iterations"].astype("float64")
    ax1.bar(x, it.fillna(0), width=width, color="tab:gray", label="iterations (exchanges)")
    if it.isna().any():
        ax1.plot(x[it.isna()], np.zeros(int(it.isna().sum())), "x", color=BAND_COLOR, ms=8, clip_on=False,
                 label="step not finished")
    ax1.set_ylabel("iterations")
    ax1.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax1.tick_params(labelbottom=False)
    ax1.grid(alpha=0.3, axis="y")
    ax1.set_title("transmission iterations per step", fontsize=10)
    _marked(ax2, x, s["dv_pu"], DV_COLOR, DV_LABEL, "ΔV = ∞ (no previous voltages)", "ΔV missing (step not finished)",
            marker="o", mfc="none", ms=6, lw=1.4)
    _marked(ax2, x, s["ds_pu"], DS_COLOR, DS_LABEL, "ΔS = ∞ (no previous powers)", "ΔS missing (no feeder powers)",
            marker="x", ms=6, lw=1.0)
    if tol:
        ax2.axhline(tol, color=BAND_COLOR, ls=":", lw=1.3, label=f"tolerance {tol:g}")
    ax2.set_yscale("log")
    _log_limits(ax2, [s["dv_pu"], s["ds_pu"]], tol)
    ax2.set_xlabel(xlabel)
    ax2.set_ylabel("final mismatch (pu; ΔS pu of 100 MVA)")
    ax2.grid(alpha=0.3, which="both")
    what = "change from the previous step" if coupling == "loose" else "at the last iteration"
    ax2.set_title(f"final mismatch per step ({coupling or '?'} coupling: {what})", fontsize=10)
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
    ax.set_title("every step, per iteration (∞ / missing omitted)", fontsize=10)


def _iteration_convergence(it: pd.DataFrame, study: str, tol: float | None) -> Figure:
    it = it.sort_values("iteration")
    fig = _figure(5.2)
    ax = fig.subplots()
    _marked(ax, it["iteration"], it["dv_pu"], DV_COLOR, DV_LABEL, "ΔV = ∞ at the first solve (no previous voltages)",
            "ΔV missing", marker="o", mfc="none", ms=7, lw=1.6)
    _marked(ax, it["iteration"], it["ds_pu"], DS_COLOR, DS_LABEL, "ΔS = ∞ (no previous powers)",
            "ΔS missing (no feeder powers received yet)", marker="x", ms=7, lw=1.2)
    if tol:
        ax.axhline(tol, color=BAND_COLOR, ls=":", lw=1.3, label=f"tolerance {tol:g}")
    ax.set_yscale("log")
    _log_limits(ax, [it["dv_pu"], it["ds_pu"]], tol)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("iteration (transmission solve; 0 = first, before any feeder power is received)")
    ax.set_ylabel("mismatch (pu; ΔS in pu of 100 MVA)")
    ax.grid(alpha=0.3, which="both")
    _legend_below(fig, [ax], ncols=2)
    last = it.iloc[-1]
    _suptitle(fig, f"{study}: convergence at t = {it['time_s'].iloc[0]:g} s: {int(it['iteration'].max())} exchanges, "
                   f"final ΔV {last['dv_pu']:.2g} pu, ΔS {last['ds_pu']:.2g} pu of 100 MVA"
                   + (f" (tolerance {tol:g})" if tol else ""))
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
        ax.text(total, yi, f" {total:.1f} s", va="center", fontsize=8)
    ax.set_yticks(y, f["federate"], fontsize=8 if len(f) > 12 else 9)
    ax.set_xlabel("wall time summed over all steps (s)")
    ax.set_xlim(0, float(f["total"].max()) * 1.18 or 1.0)
    ax.grid(alpha=0.3, axis="x")
    _legend_below(fig, [ax], ncols=2)
    _suptitle(fig, f"{study}: time per federate{more}")
    return fig


# --- entry point --------------------------------------------------------------------------------------------


def plot_run(agg_dir: Path, manifest: dict, fmt: str = "png", dpi: int = 110) -> dict[str, Path]:
    """Every figure of an aggregated run; returns name -> path (``<agg_dir>/<name>.<fmt>``)."""
    def read(name: str) -> pd.DataFrame | None:
        return pd.read_parquet(agg_dir / f"{name}.parquet") if (agg_dir / f"{name}.parquet").exists() else None

    study, band = manifest["study"], tuple(manifest["band_pu"])
    fv, b, s, f = read("feeder_voltages"), read("boundary"), read("steps"), read("federates")
    figures = {}
    if fv is not None and len(fv):
        figures["voltage_envelope"] = lambda: voltage_envelope_figure(fv, band, study)
    if b is not None and len(b):
        figures["boundary_power"] = lambda: boundary_power_figure(b, read("system"), study)
    if s is not None and len(s):
        figures["convergence"] = lambda: convergence_figure(s, read("iterations"), study, manifest.get("tolerance"),
                                                            manifest.get("coupling"))
    if f is not None and len(f):
        figures["time_breakdown"] = lambda: time_breakdown_figure(f, study)
    return {name: _save(draw(), agg_dir / f"{name}.{fmt}", dpi) for name, draw in figures.items()}
