"""The feeder voltage envelope: a distribution and the lowest distinct feeders (snapshot), or the pooled
envelope, the worst feeders and the feeders outside the band over time."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from hpcsim.output.plots.style import (
    BAND_COLOR,
    LOWEST_GROUPS,
    MEAN_COLOR,
    OUTSIDE_RIGHT,
    WORST_GROUPS,
    _ax_title,
    _band,
    _figure,
    _legend_below,
    _suptitle,
    _time_axis,
    collapse_identical,
    count_of,
    group_label,
    pooled_envelope,
    time_label,
)

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
    _band(ax_h, band, vertical=True)
    ax_h.set_xlabel("node voltage (pu)")
    if n >= 500:  # a log axis keeps the few feeders in the tails (out of the band) visible next to the bulk
        ax_h.set_yscale("log")
        ax_h.set_ylim(bottom=0.7)
        ax_h.set_ylabel("feeders (log scale)")
    else:
        ax_h.set_ylabel("feeders")
        ax_h.yaxis.set_major_locator(MaxNLocator(integer=True))
    nodes = fv["n_nodes"].astype("float64").sum() if fv["n_nodes"].notna().all() else 0.0
    share = f"; {fv['n_outside'].astype('float64').sum() / nodes:.2%} of {nodes:,.0f} nodes outside the band" \
        if nodes else ""
    _ax_title(ax_h, f"all {count_of(n, 'feeder')} (clones counted){share}")
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
    ax_b.set_ylim(max(len(low), 5) - 0.4, -0.6)  # lowest on top; a few entries keep a bar's height
    ax_b.set_xlabel("node voltage (pu)")
    ax_b.tick_params(axis="x", labelbottom=True)
    ax_b.grid(alpha=0.3, axis="x")
    shown = f"the {len(low)} lowest of {len(groups):,} distinct feeders" if len(groups) > len(low) else \
        count_of(len(groups), "distinct feeder")
    _ax_title(ax_b, f"{shown} (identical clones as one, ×count)")
    _legend_below(fig, [ax_h, ax_b], ncols=3)
    _suptitle(fig, f"{study}: feeder node voltages at t = {time_label(fv['time_s'].iloc[0])} ({count_of(n, 'feeder')}, "
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
    _ax_title(ax1, f"all {fv['feeder'].nunique():,} feeders pooled")
    for g, color in zip(worst, ("tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan")):
        r = groups[groups["group"] == g].sort_values("time_s")
        ax2.plot(r["time_s"] / scale, r["min_v_pu"], color=color, lw=1.4, marker=marker,
                 label=f"{group_label(r['feeder'].iloc[0], r['bus'].iloc[0], r['count'].iloc[0], r['n_buses'].iloc[0])}"
                       f": lowest {r['min_v_pu'].min():.3f} pu")
    _ax_title(ax2, f"minimum node voltage of the {len(worst)} lowest distinct feeders (identical clones as one, ×count)")
    _band(ax1, band)
    ax2.axhline(band[0], color=BAND_COLOR, ls=":", lw=1.3, label=f"band lower limit {band[0]:g} pu")
    for ax in (ax1, ax2):
        ax.set_ylabel("node voltage (pu)")
    out = fv.assign(low=fv["min_v_pu"] < band[0], high=fv["max_v_pu"] > band[1]).groupby("time_s")[["low", "high"]].sum()
    xo = out.index.to_numpy() / scale
    ax3.plot(xo, out["low"], "v-", color="tab:purple", ms=4, label=f"a node below {band[0]:g} pu")
    ax3.plot(xo, out["high"], "^-", color="tab:orange", ms=4, label=f"a node above {band[1]:g} pu")
    ax3.set_ylabel("feeders")
    ax3.set_ylim(bottom=0)
    ax3.yaxis.set_major_locator(MaxNLocator(integer=True))
    _ax_title(ax3, "feeders with a node outside the band")
    ax3.set_xlabel(xlabel)
    for ax in (ax1, ax2, ax3):
        ax.grid(alpha=0.3)
        ax.legend(**OUTSIDE_RIGHT)
    _suptitle(fig, f"{study}: feeder node-voltage envelope over {len(env)} steps\n{_source_note(fv)}")
    return fig


# --- boundary voltages against the case's operating point ---------------------------------------------------


def boundary_voltage_figure(b: pd.DataFrame, band: tuple[float, float], study: str) -> Figure:
    """The transmission side at the boundary, at the last step: the distribution of the boundary buses' |V|
    against the case's published VM at the same buses, and of the difference V − VM per bus (how far the
    coupled answer moved the case's operating point). Histograms, so 20,000 buses read like 37."""
    last = b[b["time_s"] == b["time_s"].max()]
    v = last["v_pu"].astype("float64")
    vm = last["vm_case_pu"].astype("float64") if "vm_case_pu" in last else pd.Series(np.nan, index=last.index)
    n = len(last)
    fig = _figure(4.8)
    ax_v, ax_d = fig.subplots(1, 2)
    both = pd.concat([v, vm.dropna()])
    lo, hi = min(float(both.min()), band[0]), max(float(both.max()), band[1])
    bins = np.linspace(lo - 0.02 * (hi - lo), hi + 0.02 * (hi - lo), int(np.clip(2 * math.sqrt(n), 20, 80)) + 1)
    ax_v.hist(v, bins, histtype="stepfilled", facecolor=(MEAN_COLOR, 0.35), edgecolor=MEAN_COLOR, lw=1.2,
              label="coupled answer")
    if vm.notna().any():
        ax_v.hist(vm.dropna(), bins, histtype="step", edgecolor="k", lw=1.2, ls="--", label="case's published VM")
    _band(ax_v, band, vertical=True)
    ax_v.set_xlabel("boundary bus voltage (pu)")
    ax_v.set_ylabel("buses")
    ax_v.yaxis.set_major_locator(MaxNLocator(integer=True))
    _ax_title(ax_v, f"all {count_of(n, 'boundary bus', 'boundary buses')}")
    ax_v.grid(alpha=0.3)
    if vm.notna().any():
        d = (v - vm).dropna()
        worst = int(last.loc[d.abs().idxmax(), "bus"]) if len(d) else None
        ax_d.hist(d, bins=int(np.clip(2 * math.sqrt(len(d)), 20, 80)), color=(MEAN_COLOR, 0.6), edgecolor=MEAN_COLOR)
        ax_d.axvline(0.0, color="k", lw=0.9)
        ax_d.set_xlabel("V − published VM (pu)")
        ax_d.set_ylabel("buses")
        if len(d) >= 500:
            ax_d.set_yscale("log")
            ax_d.set_ylim(bottom=0.7)
        _ax_title(ax_d, f"max |V − VM| {d.abs().max():.2g} pu (bus {worst}), rms {math.sqrt((d * d).mean()):.2g} pu")
        ax_d.grid(alpha=0.3)
    else:
        _ax_title(ax_d, "the case's published voltages are unknown (case not readable)")
        ax_d.set_axis_off()
    _legend_below(fig, [ax_v], ncols=3)
    _suptitle(fig, f"{study}: boundary voltages at t = {time_label(float(last['time_s'].iloc[0]))} against the "
                   f"case's operating point")
    return fig
