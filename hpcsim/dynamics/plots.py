"""Figures of a dynamic run (matplotlib, Agg), in the style of the paper's Figs. 7–14, written into the run folder.

- ``frequency.png``: system (centre-of-inertia) frequency against the nominal (deviation in mHz on the right
  axis), its distribution, and the load multiplier;
- ``ace.png``: ACE and the area control signal of the AGC;
- ``der_power.png``: one DER per feeder — output, base + PFR + SFR request, P_mppt and VSM limits, PFR and SFR;
- ``feeder_voltage.png``: per feeder, mean ± one standard deviation (shaded) and min / max (dashed) node voltage;
- ``bus_voltage.png`` (a study with a fault): the faulted, feeder and motor buses' voltage at every TDS step with
  the 0.9 pu recovery line, and the motors' power per bus with their stalls and trips.

``hpcsim run`` writes them into the run folder; ``hpcsim aggregate`` / ``hpcsim report`` into ``<run>/aggregate/``
(``--format``, ``--dpi``, the ``--band`` lines).

``python -m hpcsim.dynamics.plots RUN_A RUN_B ... -o compare.png`` overlays the frequency of several runs
(e.g. a generation trip with and without AGC); with ``--bus N`` the voltage of bus N instead (FIDVR: with and
without motors, DERs riding through or tripping).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from hpcsim.dynamics.fidvr import RECOVERED_PU
from hpcsim.output.parquet import read_table
from hpcsim.output.runinfo import BAND_PU

log = logging.getLogger(__name__)
F0_HZ = 60.0


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _df(run_dir: Path, table: str):
    t = read_table(run_dir / "outputs", table)
    return t.to_pandas().sort_values("time_s") if t.num_rows else None


def write_figures(run_dir: str | Path, out_dir: str | Path | None = None, fmt: str = "png", dpi: int = 110,
                  f0_hz: float = F0_HZ, band: tuple[float, float] = BAND_PU) -> dict[str, Path]:
    """Every figure of a dynamic run, from its raw outputs, into ``out_dir`` (default: the run folder) as
    ``<name>.<fmt>``; returns name -> path (names: frequency, ace, der_power, feeder_voltage, those with data)."""
    run_dir = Path(run_dir)
    out_dir = Path(out_dir) if out_dir is not None else run_dir
    plt = _plt()
    written = {}
    freq, ace, ders, volts = (_df(run_dir, t) for t in ("frequency", "ace", "der", "feeder_voltage"))
    buses = _df(run_dir, "bus_voltage")
    path = lambda name: out_dir / f"{name}.{fmt}"  # noqa: E731
    if freq is not None:
        fig, axes = plt.subplots(1, 3, figsize=(14, 3.8), gridspec_kw={"width_ratios": [3, 1, 2]})
        axes[0].plot(freq.time_s, freq.f_hz, lw=1, label="frequency")
        axes[0].axhline(f0_hz, color="k", lw=0.6, ls=":", label=f"nominal {f0_hz:g} Hz")
        axes[0].set(xlabel="time (s)", ylabel="frequency (Hz)", title="system frequency (COI)")
        axes[0].secondary_yaxis("right", functions=(lambda f: (f - f0_hz) * 1e3, lambda d: f0_hz + d / 1e3)
                                ).set_ylabel("deviation from nominal (mHz)")
        axes[0].legend(fontsize=8)
        axes[1].hist(freq.f_hz, bins=30, orientation="horizontal", color="tab:blue", alpha=0.7)
        axes[1].set(xlabel="samples", title="distribution")
        axes[2].step(freq.time_s, freq.load_mult, where="post", color="tab:gray")
        axes[2].set(xlabel="time (s)", ylabel="load multiplier", title="load variation")
        written["frequency"] = _save(fig, path("frequency"), dpi)
    if ace is not None:
        fig, ax = plt.subplots(figsize=(9, 3.5))
        ax.plot(ace.time_s, ace.ace_mw, label="ACE")
        ax.step(ace.time_s, ace.acs_mw, where="post", label="area control signal")
        ax.step(ace.time_s, ace.p_der_mw, where="post", label="DER share of AGC")
        ax.set(xlabel="time (s)", ylabel="MW", title="AGC")
        ax.legend()
        written["ace"] = _save(fig, path("ace"), dpi)
    if ders is not None:
        written["der_power"] = _save(_der_figure(plt, ders), path("der_power"), dpi)
    if volts is not None:
        written["feeder_voltage"] = _save(_voltage_figure(plt, volts, band), path("feeder_voltage"), dpi)
    if buses is not None:
        written["bus_voltage"] = _save(_recovery_figure(plt, buses, _df(run_dir, "motor"),
                                                        _df(run_dir, "fidvr_event")), path("bus_voltage"), dpi)
    plt.close("all")
    return written


def _der_figure(plt, ders):
    first = ders.groupby("feeder")["der"].min()
    fig, axes = plt.subplots(len(first), 2, figsize=(13, 3.6 * len(first)), squeeze=False)
    for row, (feeder, name) in enumerate(first.items()):
        d = ders[ders.der == name]
        ax = axes[row, 0]
        ax.plot(d.time_s, d.p_mw, lw=2, label="output")
        ax.plot(d.time_s, d.p_base_mw + d.p_pfr_mw + d.p_sfr_mw, ls=":", label="base + PFR + SFR")
        ax.step(d.time_s, d.p_mppt_mw, where="post", label="P_mppt")
        ax.step(d.time_s, d.p_vsm_mw, where="post", ls="--", label="VSM max")
        ax.axhline(d.p_cap_mw.iloc[0], color="k", lw=0.8, label="P_cap")
        ax.set(title=f"{name} ({feeder})", xlabel="time (s)", ylabel="MW")
        ax.legend(fontsize=8, ncol=3)
        ax = axes[row, 1]
        ax.plot(d.time_s, d.p_pfr_mw, label="PFR (droop)")
        ax.step(d.time_s, d.p_sfr_mw, where="post", label="SFR (AGC)")
        ax.set(title="frequency response", xlabel="time (s)", ylabel="MW")
        ax.legend(fontsize=8)
    return fig


def _voltage_figure(plt, volts, band: tuple[float, float]):
    feeders = list(dict.fromkeys(volts.feeder))
    fig, axes = plt.subplots(1, len(feeders), figsize=(6.5 * len(feeders), 3.8), squeeze=False)
    for ax, feeder in zip(axes[0], feeders):
        v = volts[volts.feeder == feeder]
        ax.plot(v.time_s, v.v_mean_pu, label="mean")
        ax.fill_between(v.time_s, v.v_mean_pu - v.v_std_pu, v.v_mean_pu + v.v_std_pu, alpha=0.3, label="±1 std")
        ax.plot(v.time_s, v.v_min_pu, "k--", lw=0.8, label="min / max")
        ax.plot(v.time_s, v.v_max_pu, "k--", lw=0.8)
        for lim in band:
            ax.axhline(lim, color="tab:red", lw=0.6)
        ax.set(title=f"{feeder} (bus {int(v.bus.iloc[0])})", xlabel="time (s)", ylabel="node voltage (pu)")
        ax.legend(fontsize=8)
    return fig


def _recovery_figure(plt, buses, motors, events):
    fig, axes = plt.subplots(1, 2, figsize=(14, 4))
    for bus, v in buses.groupby("bus"):
        axes[0].plot(v.time_s, v.v_pu, lw=1, label=f"bus {bus}")
    axes[0].axhline(RECOVERED_PU, color="k", ls=":", lw=0.8, label=f"{RECOVERED_PU} pu")
    axes[0].set(xlabel="time (s)", ylabel="voltage (pu)", title="bus voltages (every TDS step)", ylim=(0, 1.15))
    axes[0].legend(fontsize=8)
    if motors is not None:
        for bus, m in motors.groupby("bus"):
            axes[1].plot(m.time_s, m.p_mw, lw=1, label=f"bus {bus} P")
        if events is not None:
            for t in sorted(set(events.time_s[events.event == "thermal trip"].round(3))):
                axes[1].axvline(t, color="tab:red", lw=0.6, ls="--")
        axes[1].set(xlabel="time (s)", ylabel="MW", title="air-conditioner motors (dashed: thermal trips)")
        axes[1].legend(fontsize=8)
    else:
        axes[1].set_axis_off()
    return fig


def compare_voltage(run_dirs: list[Path], labels: list[str], bus: int, path: Path) -> Path:
    """Overlay one bus's voltage of several runs with a fault (FIDVR: with and without motors)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 4))
    for run_dir, label in zip(run_dirs, labels):
        v = _df(Path(run_dir), "bus_voltage")
        if v is not None:
            v = v[v.bus == bus]
            ax.plot(v.time_s, v.v_pu, lw=1.2, label=label)
    ax.axhline(RECOVERED_PU, color="k", ls=":", lw=0.8, label=f"{RECOVERED_PU} pu")
    ax.set(xlabel="time (s)", ylabel=f"bus {bus} voltage (pu)", title=f"voltage recovery at bus {bus}",
           ylim=(0, 1.15))
    ax.legend(fontsize=8)
    return _save(fig, path)


def compare_frequency(run_dirs: list[Path], labels: list[str], path: Path) -> Path:
    """Overlay the frequency of several runs (the paper's Fig. 12: with and without AGC)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 4))
    for run_dir, label in zip(run_dirs, labels):
        f = _df(Path(run_dir), "frequency")
        if f is not None:
            ax.plot(f.time_s, f.f_hz, label=label)
    ax.axhline(60.0, color="k", lw=0.6)
    ax.set(xlabel="time (s)", ylabel="frequency (Hz)", title="frequency response")
    ax.legend()
    return _save(fig, path)


def _save(fig, path: Path, dpi: int = 110) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="overlay the frequency of dynamic runs")
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("-o", "--out", type=Path, required=True)
    p.add_argument("--bus", type=int, help="overlay this bus's voltage (runs with a fault) instead")
    args = p.parse_args(argv)
    labels = []
    for r in args.runs:
        try:
            s = json.loads((r / "summary.json").read_text())
            labels.append(s["study"] if args.bus is not None else f"{s['study']} (AGC {'on' if s.get('agc') else 'off'})")
        except (OSError, json.JSONDecodeError, KeyError):
            labels.append(r.name)
    if args.bus is not None:
        compare_voltage(args.runs, labels, args.bus, args.out)
    else:
        compare_frequency(args.runs, labels, args.out)
    log.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
