"""Shared pieces of the run figures: constants, clone grouping, titles, legends, the band, marked ∞/missing
values, saving."""

from __future__ import annotations

import logging
import math
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.transforms import blended_transform_factory

log = logging.getLogger(__name__)

CLONE_TOL_PU = 1e-6  # feeders whose min, mean and max node voltage agree to this are drawn as one
LOWEST_GROUPS = 20  # distinct feeders drawn as min–max bars in a snapshot
WORST_GROUPS = 5  # distinct feeders drawn over time
BAR_BUSES = 12  # buses with P/PD and Q/QD bars
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


def count_of(n: int, one: str, many: str | None = None) -> str:
    """``1 bus``, ``37 buses``, ``6,580 feeders``."""
    return f"{n:,} {one if n == 1 else (many or one + 's')}"


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


def time_label(time_s: float) -> str:
    """``5 h`` for whole quarter-hours after the start, else seconds (``0 s``, ``12.5 s``)."""
    return f"{time_s / 3600:g} h" if time_s and time_s % 900 == 0 else f"{time_s:g} s"


def _time_axis(times_s: pd.Series) -> tuple[pd.Series, str]:
    """Times in hours when the run spans two hours or more, else seconds, with the axis label."""
    span = float(times_s.max() - times_s.min()) if len(times_s) else 0.0
    return (times_s / 3600.0, "time (h)") if span >= 7200 else (times_s, "time (s)")


# --- drawing helpers ----------------------------------------------------------------------------------------


def _figure(height_in: float, width_in: float = WIDTH_IN) -> Figure:
    return Figure(figsize=(width_in, height_in), layout="constrained")


def _suptitle(fig: Figure, text: str, fontsize: float = 12.0) -> None:
    fig.suptitle(wrap_title(text, fig.get_figwidth(), fontsize), fontsize=fontsize)


def _ax_title(ax: Axes, text: str, fontsize: float = 10.0) -> None:
    """An axes title wrapped to the width of the axes' grid columns (less room for the tick labels)."""
    spec = ax.get_subplotspec()
    ratios = spec.get_gridspec().get_width_ratios() or [1.0] * spec.get_gridspec().ncols
    share = sum(ratios[i] for i in spec.colspan) / sum(ratios)
    width_in = ax.get_figure(root=True).get_figwidth() * share * 0.85
    ax.set_title(wrap_title(text, width_in, fontsize), fontsize=fontsize)


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


def _marked(ax: Axes, x, y, color: str, label: str, inf_label: str, nan_label: str, slot: int = 0, **style) -> None:
    """Positive finite values as a line; ∞ as ▲ near the top edge and missing (or zero) values as ▽ near the
    bottom edge of a log axis (``slot`` 0, 1, … staggers the series): own legend entries, never dropped silently."""
    x, y = np.asarray(x, dtype="float64"), np.asarray(y, dtype="float64")
    ok = np.isfinite(y) & (y > 0)
    ax.plot(x[ok], y[ok], color=color, label=label, **style)
    edge = blended_transform_factory(ax.transData, ax.transAxes)
    for mask, y_axes, marker, what in ((np.isposinf(y), 0.96 - 0.06 * slot, "^", inf_label),
                                     (~ok & ~np.isposinf(y), 0.04 + 0.06 * slot, "v", nan_label)):
        if mask.any():
            ax.plot(x[mask], np.full(int(mask.sum()), y_axes), marker, color=color, ms=8, mfc="none", mew=1.5,
                    transform=edge, clip_on=False, ls="none", label=what)


def _log_limits(ax: Axes, values: list[np.ndarray], tolerance: float | None) -> None:
    """Room above and below the finite values, so the ∞ / missing markers on the edges sit clear of the data."""
    v = np.concatenate([np.asarray(a, dtype="float64") for a in values] + [np.array([tolerance or np.nan])])
    v = v[np.isfinite(v) & (v > 0)]
    if len(v):
        ax.set_ylim(v.min() / 12, v.max() * 12)


def _save(fig: Figure, path: Path, dpi: int) -> Path:
    fig.savefig(path, dpi=dpi)
    log.info("wrote %s", path)
    return path
