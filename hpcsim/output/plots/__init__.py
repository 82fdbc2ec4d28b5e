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
- ``boundary_voltages``: histograms of the boundary buses' |V| against the case's published VM there, and of
  V − VM per bus (how far the coupled answer moved the case's operating point);
- ``convergence``: transmission ΔV (pu) and worst feeder |ΔS| (pu of 100 MVA) against the tolerance, per
  iteration (snapshot) or per step with the iterations per step (several steps); ∞ and missing values are marked;
- ``time_breakdown``: compute vs exchange time per federate (stacked bars).

A dynamic run's figures are those of :mod:`hpcsim.dynamics.plots`, drawn from its raw outputs into the same folder.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from hpcsim.dynamics.plots import write_figures
from hpcsim.output.plots.convergence import convergence_figure, time_breakdown_figure
from hpcsim.output.plots.power import boundary_power_figure
from hpcsim.output.plots.style import (
    CLONE_TOL_PU,
    LOWEST_GROUPS,
    _save,
    case_load_at,
    clone_groups,
    collapse_identical,
    group_label,
    pooled_envelope,
    wrap_title,
)
from hpcsim.output.plots.voltage import boundary_voltage_figure, voltage_envelope_figure

__all__ = ["CLONE_TOL_PU", "LOWEST_GROUPS", "boundary_power_figure", "boundary_voltage_figure", "case_load_at", "clone_groups", "collapse_identical",
           "convergence_figure", "group_label", "plot_run", "pooled_envelope", "time_breakdown_figure",
           "voltage_envelope_figure", "wrap_title"]

# --- entry point --------------------------------------------------------------------------------------------


def plot_run(agg_dir: Path, manifest: dict, fmt: str = "png", dpi: int = 110) -> dict[str, Path]:
    """Every figure of an aggregated run; returns name -> path (``<agg_dir>/<name>.<fmt>``). A dynamic run's are
    :func:`hpcsim.dynamics.plots.write_figures`' (frequency, ace, der_power, feeder_voltage)."""
    if manifest.get("kind") == "dynamic":
        return write_figures(agg_dir.parent, agg_dir, fmt=fmt, dpi=dpi, f0_hz=manifest["f0_hz"],
                             band=tuple(manifest["band_pu"]))

    def read(name: str) -> pd.DataFrame | None:
        return pd.read_parquet(agg_dir / f"{name}.parquet") if (agg_dir / f"{name}.parquet").exists() else None

    study, band = manifest["study"], tuple(manifest["band_pu"])
    fv, b, s, f = read("feeder_voltages"), read("boundary"), read("steps"), read("federates")
    figures = {}
    if fv is not None and len(fv):
        figures["voltage_envelope"] = lambda: voltage_envelope_figure(fv, band, study)
    if b is not None and len(b):
        figures["boundary_power"] = lambda: boundary_power_figure(b, read("system"), study)
        figures["boundary_voltages"] = lambda: boundary_voltage_figure(b, band, study)
    if s is not None and len(s):
        figures["convergence"] = lambda: convergence_figure(s, read("iterations"), study, manifest.get("tolerance"),
                                                            manifest.get("coupling"))
    if f is not None and len(f):
        figures["time_breakdown"] = lambda: time_breakdown_figure(f, study)
    return {name: _save(draw(), agg_dir / f"{name}.{fmt}", dpi) for name, draw in figures.items()}
