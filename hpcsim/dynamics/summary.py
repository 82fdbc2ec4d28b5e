"""``summary.json`` of a dynamic run, built from its Parquet outputs (never from the federates' memory).

Blocks: ``frequency`` and ``ace`` (the paper's Table I statistics over every TDS step, with the paper's values
alongside), ``der`` (largest excess of output over its limits, PFR/SFR ranges), ``feeders`` (scale, voltage
envelope over the run next to the unmodified feeder's envelope, headroom), ``timing`` (ANDES, OpenDSS, LP and
coupling seconds, and simulated seconds per wall second).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hpcsim.dynamics import fidvr
from hpcsim.output.parquet import read_table

PAPER_TABLE_I = {"frequency_hz": {"mean": 59.999, "std": 0.026, "min": 59.936, "max": 60.054},
                 "ace_mw": {"mean": -0.172, "std": 4.174, "min": -10.371, "max": 8.833}}


def _stats(x: np.ndarray) -> dict:
    if x.size == 0:
        return {"mean": float("nan"), "std": float("nan"), "min": float("nan"), "max": float("nan")}
    return {"mean": float(x.mean()), "std": float(x.std()), "min": float(x.min()), "max": float(x.max())}


def _col(table: pa.Table, name: str) -> np.ndarray:
    return np.asarray(table[name].to_numpy(zero_copy_only=False), dtype=float) if table.num_rows else np.zeros(0)


def _sorted(table: pa.Table) -> pa.Table:
    return table.sort_by("time_s") if table.num_rows else table


def frequency_block(freq: pa.Table, f0_hz: float, trip_s: float | None) -> dict:
    t, f = _col(freq, "time_s"), _col(freq, "f_hz")
    block = {**_stats(f), "samples": int(f.size), "nadir_hz": float(f.min()) if f.size else float("nan"),
             "nadir_s": float(t[np.argmin(f)]) if f.size else float("nan")}
    if f.size:
        tail = f[t >= t[-1] - 5.0]
        block["final_hz"] = float(tail.mean())  # mean over the last 5 s
        block["final_deviation_hz"] = float(tail.mean() - f0_hz)
    if trip_s is not None and f.size:
        pre = f[t < trip_s]
        block["pre_event_hz"] = float(pre.mean()) if pre.size else float("nan")
    block["paper"] = PAPER_TABLE_I["frequency_hz"]
    return block


def der_block(ders: pa.Table) -> dict:
    if ders.num_rows == 0:
        return {"n": 0}
    p = _col(ders, "p_mw")
    limits = {"mppt": _col(ders, "p_mppt_mw"), "cap": _col(ders, "p_cap_mw"), "vsm": _col(ders, "p_vsm_mw")}
    return {
        "n": len(set(ders["der"].to_pylist())),
        "max_excess_mw": {k: float(np.max(p - v)) for k, v in limits.items()},
        "p_mw": {"min": float(p.min()), "max": float(p.max())},
        "pfr_mw": {"min": float(_col(ders, "p_pfr_mw").min()), "max": float(_col(ders, "p_pfr_mw").max())},
        "sfr_mw": {"min": float(_col(ders, "p_sfr_mw").min()), "max": float(_col(ders, "p_sfr_mw").max())},
        "limited_by_vsm_fraction": float(np.mean(limits["vsm"] <= np.minimum(limits["mppt"], limits["cap"]) - 1e-9)),
    }


STATIC_FEEDER_KEYS = ("bus", "feeder", "scale", "p_bus_mw", "p_gross0_mw", "der_buses", "base_v_min_pu",
                      "base_v_max_pu", "coordination")


def feeder_blocks(volts: pa.Table, feeders: list[dict]) -> list[dict]:
    """Per feeder: its planned (static) figures and, from the outputs, its voltage envelope and headroom."""
    out = []
    for fp in feeders:
        sel = volts.filter(pc.equal(volts["bus"], fp["bus"])) if volts.num_rows else volts
        hr = _col(sel, "headroom_mw")
        hr = hr[np.isfinite(hr)]
        block = {k: fp[k] for k in STATIC_FEEDER_KEYS}
        block.update({
            "v_min_pu": float(_col(sel, "v_min_pu").min()) if sel.num_rows else float("nan"),
            "v_max_pu": float(_col(sel, "v_max_pu").max()) if sel.num_rows else float("nan"),
            "headroom_mw": _stats(hr) | {"lps": int(hr.size)},
            "p_net_mw": _stats(_col(sel, "p_net_mw")),
        })
        out.append(block)
    return out


def timing_block(steps: pa.Table, volts: pa.Table, stop_s: float, wall_s: float | None, plan_s: float | None,
                 federation_s: float | None) -> dict:
    def total(table: pa.Table, col: str, fed: str | None = None) -> float:
        if table.num_rows == 0:
            return 0.0
        if fed is not None:
            table = table.filter(pc.equal(table["federate"], fed))
        return float(np.nansum(_col(table, col)))

    andes_s = total(steps, "compute_s", "transmission")
    coupling_s = total(steps, "exchange_s", "transmission")
    loop_s = andes_s + coupling_s
    if wall_s is None:  # no runner measured it (re-run by `helics run`): the transmission federate's loop
        wall_s = loop_s
    return {
        "andes_s": andes_s, "opendss_solve_s": total(volts, "solve_s"), "opendss_vsm_s": total(volts, "vsm_s"),
        "lp_s": total(volts, "lp_s"), "coupling_s": coupling_s,
        "transmission_loop_s": loop_s, "plan_s": plan_s, "federation_s": federation_s, "wall_s": wall_s,
        "sim_s_per_wall_s": stop_s / wall_s if wall_s > 0 else float("nan"),
        "sim_s_per_loop_s": stop_s / loop_s if loop_s > 0 else float("nan"),
    }


def voltage_recovery_block(volts: pa.Table, motors: pa.Table, events: pa.Table, fault: dict) -> dict:
    """A study with a fault: per watched bus (faulted, feeder and motor buses) the recovery after clearing
    (:func:`hpcsim.dynamics.fidvr.recovery`: time to stay at or above 0.9 pu, time below, post-clear nadir, final
    voltage), the motor stalls and thermal trips (count, first and last time) and the DER trips."""
    buses = {}
    if volts.num_rows:
        for bus in sorted(set(volts["bus"].to_pylist())):
            sel = _sorted(volts.filter(pc.equal(volts["bus"], bus)))
            buses[str(bus)] = fidvr.recovery(_col(sel, "time_s"), _col(sel, "v_pu"), fault["clear_s"])
    ev = events.to_pylist() if events.num_rows else []

    def kind(name: str) -> dict:
        times = sorted(e["time_s"] for e in ev if e["event"] == name)
        return {"n": len(times), "first_s": times[0] if times else None, "last_s": times[-1] if times else None}

    motor_buses = sorted(set(motors["bus"].to_pylist())) if motors.num_rows else []
    return {
        "threshold_pu": fidvr.RECOVERED_PU, **fault, "buses": buses,
        "faulted_bus": buses.get(str(fault["bus"])),
        "motors": {"buses": motor_buses, "stall": kind("stall"), "thermal_trip": kind("thermal trip"),
                   "restart": kind("restart")},
        "der_trips": {**kind("der trip"), "ders": sorted(e["device"] for e in ev if e["event"] == "der trip")},
        "events": [{k: e[k] for k in ("time_s", "device", "bus", "event")} for e in sorted(ev, key=lambda e: e["time_s"])],
    }


def describe_run(plan) -> dict:
    """The static description of a dynamic run (``<run>/run.json``): everything the summary takes from the
    plan, so ``hpcsim summarize`` rebuilds the summary from the run folder alone."""
    s = plan.spec
    feeders = plan.describe()["feeders"]
    fv = plan.fidvr
    fault = {} if fv is None else {"fault": {  # only a study with a fault has the key
        "bus": fv.fault_bus, "t_s": fv.fault_s, "clear_s": fv.clear_s, "x_pu": fv.fault_x_pu,
        "motor_mw": {str(m.bus): m.p_mw for m in fv.motors}, "der_ride_through": fv.der_ride_through}}
    return {
        "schema": 2, "study": plan.study.name, "kind": "dynamic", "case": str(plan.study.case), "stop_s": s.stop_s,
        "agc": s.agc, "trip": {"gen": s.trip_gen, "t_s": s.trip_s} if s.trip_gen else None,
        "load_std": s.load_std, "seed": s.seed, "n_der": plan.n_der, "balance": plan.balance,
        "f0_hz": plan.f0_hz, "bias_mw_per_01hz": plan.bias_mw_per_01hz,
        "feeders": [{k: f[k] for k in STATIC_FEEDER_KEYS} for f in feeders],
        "settings": {"tds_step_s": s.tds_step_s(plan.f0_hz), "exchange_s": s.exchange_s, "control_s": s.control_s,
                     "agc_s": s.agc_s, "headroom_s": s.headroom_s, "pfr_deadband_hz": s.pfr_deadband_hz,
                     "droop_gain_pu": s.droop_gain_pu, "agc_kp": s.agc_kp, "agc_ki_per_s": s.agc_ki,
                     "agc_deadband_hz": s.agc_deadband_hz, "der_agc_share": s.der_agc_share,
                     "feeder_head": s.feeder_head, "v_limits_pu": [s.v_min_pu, s.v_max_pu],
                     "coordinate_voltage": s.coordinate_voltage, "voltage_margin_pu": s.voltage_margin_pu},
        **fault,
    }


def build_summary(run_dir: str | Path, desc: dict, *, completed: bool, wall_s: float | None = None,
                  plan_s: float | None = None, federation_s: float | None = None,
                  peak_rss_mb: float | None = None) -> dict:
    """``summary.json`` of a dynamic run from its description (:func:`describe_run`) and its outputs."""
    out = Path(run_dir) / "outputs"
    freq, ace = _sorted(read_table(out, "frequency")), _sorted(read_table(out, "ace"))
    ders, volts, steps = read_table(out, "der"), read_table(out, "feeder_voltage"), read_table(out, "steps")
    trip = desc["trip"]
    ace_block = {**_stats(_col(freq, "ace_mw")), "paper": PAPER_TABLE_I["ace_mw"],
                 "bias_mw_per_01hz": desc["bias_mw_per_01hz"],
                 "agc_samples": _stats(_col(ace, "ace_mw")) | {"n": ace.num_rows},
                 "acs_mw_final": float(_col(ace, "acs_mw")[-1]) if ace.num_rows else float("nan")}
    if peak_rss_mb is None and steps.num_rows:
        peak_rss_mb = sum(float(pc.max(steps.filter(pc.equal(steps["federate"], f))["peak_rss_mb"]).as_py())
                          for f in set(steps["federate"].to_pylist()))
    static = {k: desc[k] for k in ("study", "kind", "case", "stop_s", "agc", "trip", "load_std", "seed", "n_der",
                                   "balance")}
    extra = {}
    if desc.get("fault"):
        extra["voltage_recovery"] = voltage_recovery_block(read_table(out, "bus_voltage"), read_table(out, "motor"),
                                                           read_table(out, "fidvr_event"), desc["fault"])
    return {
        **static, "completed": bool(completed), **extra,
        "frequency": frequency_block(freq, desc["f0_hz"], trip["t_s"] if trip else None),
        "ace": ace_block, "der": der_block(ders), "feeders": feeder_blocks(volts, desc["feeders"]),
        "timing": timing_block(steps, volts, desc["stop_s"], wall_s, plan_s, federation_s)
        | {"peak_rss_mb": peak_rss_mb or 0.0},
        "settings": desc["settings"],
    }
