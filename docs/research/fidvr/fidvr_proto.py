"""FIDVR prototype for hpcsim issue #20 item 3 (research only; not wired into hpcsim).

A three-phase fault at a transmission bus (ANDES ``Fault``), cleared after ~5 cycles, with a share of the load at
buses near the fault carried by stalling air-conditioner compressor motors, two ways:

* ``--motor motor3``: ANDES ``Motor3`` (single-cage induction motor, 3rd order) with WECC-CMPLDW "motor A"
  data (constant torque, H = 0.1 s). The stall is the motor's own physics (it decelerates past pull-out during
  the fault and cannot re-accelerate at the depressed voltage). Python adds, per TDS step (``TDS.callpert``):
  a slip clamp at 1 (a compressor does not run backwards) and a thermal trip ``--t-trip`` seconds after stall.
* ``--motor algebraic``: a WECC "motor D"-style performance model as a Python state machine driven per step:
  running = constant-power PQ at rated pf; V < v_stall for t_stall -> stalled = shunt admittance
  1/(R_stall + j X_stall) on the motor base; thermal trip after ``--t-trip`` s; a fraction may restart when
  V > v_rst for t_rst.
* ``--motor none``: the same load as constant power.

DERs (``--der none|ride|trip|mc``): a negative PQLV load (constant P, current-limited below 0.7 pu) at
``--der-buses``; ``trip`` = IEEE 1547 Cat I-like under-voltage trip (V < 0.88 pu for > 0.16 s,
no return within the run), ``ride`` = stays on at its P set point, ``mc`` = momentary cessation below 0.5 pu.

Run ``python matrix.py`` for the whole study (JSON + npz into out/), then ``python plots.py`` (PNGs).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent  # outputs and generated code stay in this folder
sys.path.insert(0, str(Path(__file__).resolve().parent))
from hpcsim.transmission import der_model as andes_der  # noqa: E402
import lvload  # noqa: E402

CASES = {"ieee14": "ieee14/ieee14_full.xlsx", "npcc": "npcc/npcc.xlsx", "wecc": "wecc/wecc_full.xlsx"}

# WECC CMPLDW "motor A" (3-phase, constant-torque compressor) typical data, mapped to ANDES Motor3:
#   Ra = 0.04, Ls = xs + xm = 1.8, Lp = xs + xr*xm/(xr+xm) = 0.12, Tpo = (xr+xm)/(wb*rr) = 0.095 s, H = 0.1 s.
#   Chosen xs = 0.06 -> xm = 1.74, xr = 0.062, rr = 1.802/(377*0.095) = 0.0503.
MOTOR_A = {"rs": 0.04, "xs": 0.06, "xm": 1.74, "xr1": 0.062, "rr1": 0.0503, "Hm": 0.1,
           "rr2": 0.001, "xr2": 0.04}  # rr2/xr2 unused by Motor3
MOTOR_LF = 0.75  # CMPLDW LFm: motor loading (P / MVA rating)

# WECC motor D-like performance data (PyDSS MotorStallSettings defaults, NREL/PyDSS src/pydss/pyControllers/models.py)
MOTOR_D = {"v_stall": 0.55, "t_stall": 0.032, "r_stall": 0.10, "x_stall": 0.10, "pf": 0.939,
           "v_rst": 0.95, "t_rst": 0.30}


def torque_coeffs(t0: float, k_lock: float) -> dict:
    """ANDES Motor load torque is tm = (c1+c2+c3) - (c2+2 c3) s + c2 s^2 (motorbase.py; note the s^2 term uses
    c2, not c3). For tm = t0 (1 + (k_lock - 1) s^2) -- flat near rated slip, k_lock * t0 at standstill (a
    compressor against its head pressure; above the locked-rotor electrical torque, so a stalled motor stays
    stalled): c2 = t0 (k-1), c3 = -c2/2, c1 = t0 - c2 - c3."""
    c2 = t0 * (k_lock - 1.0)
    c3 = -c2 / 2.0
    return {"c1": t0 - c2 - c3, "c2": c2, "c3": c3}


def quiet_andes():
    import andes

    andes.config_logger(stream_level=logging.ERROR, file=False, log_path="/tmp")
    logging.getLogger("andes").setLevel(logging.ERROR)
    return andes


class Study:
    def __init__(self, a):
        self.a = a
        andes = quiet_andes()
        lvload.prepare()
        opts = {"pycode_path": str(lvload.PYCODE), "default_config": True, "no_output": True}
        cfg = (["PQ.pq2z=0"] if a.pq2z == 0 else []) + [f"Runtime.sparselib={a.sparselib}"]
        ss = self.ss = andes.load(andes.get_case(CASES[a.case]), setup=False, config_option=cfg, **opts)
        ss.PQ.config.p2p, ss.PQ.config.q2q, ss.PQ.config.p2z, ss.PQ.config.q2z = 1.0, 1.0, 0.0, 0.0
        if a.lowv_z:  # constant current instead of constant power (fallback if constant P does not solve)
            ss.PQ.config.p2p, ss.PQ.config.q2q, ss.PQ.config.p2i, ss.PQ.config.q2i = 0.0, 0.0, 1.0, 1.0
        self.sb = float(ss.config.mva)
        pq_bus = [int(b) for b in ss.PQ.bus.v]
        vn = dict(zip([int(b) for b in ss.Bus.idx.v], ss.Bus.Vn.v))
        self.motors = []  # dicts: kind, bus, idx(s), state
        share = a.share if a.motor != "none" else 0.0
        for b in a.motor_buses:
            i = pq_bus.index(b)
            p, q = float(ss.PQ.p0.v[i]), float(ss.PQ.q0.v[i])
            pm = share * p
            if pm <= 0:
                continue
            ss.PQ.p0.v[i] = p - pm
            if a.motor == "motor3":
                # one motor per bus (several identical Motor3 devices at one bus made the PF diverge); the thermal
                # trip delay of bus number j is t_trip[j % len(t_trip)]
                j = list(a.motor_buses).index(b)
                for k, ttrip in enumerate([a.t_trip[j % len(a.t_trip)]]):
                    idx = f"M3_{b}_{k}"
                    pk = pm
                    ss.add(a.motor_model, {"idx": idx, "bus": b, "Vn": vn[b], "Sn": pk * self.sb / MOTOR_LF,
                                      **torque_coeffs(pk, a.k_lock), **{**MOTOR_A, "Hm": a.hm}})
                    self.motors.append({"kind": "motor3", "bus": b, "idx": idx, "pm": pk, "t_trip": ttrip,
                                        "stalled_at": None, "tripped_at": None})
                self._pq_q_fix = getattr(self, "_pq_q_fix", []) + [(i, b, q)]
            elif a.motor == "algebraic":
                qm = pm * np.tan(np.arccos(MOTOR_D["pf"]))
                ss.PQ.q0.v[i] = q - min(qm, q)
                ntrip = len(a.t_trip)
                for k, ttrip in enumerate(a.t_trip):
                    pk, qk = pm / ntrip, qm / ntrip
                    pqi = f"MD_{b}_{k}"
                    ss.add("PQ", {"idx": pqi, "bus": b, "Vn": vn[b], "p0": pk, "q0": qk})
                    ss.add("PQLV", {"idx": f"LV_{pqi}", "pq": pqi, "vb": a.vb})
                    shi = f"MDS_{b}_{k}"
                    ss.add("Shunt", {"idx": shi, "bus": b, "Vn": vn[b], "Sn": self.sb, "g": 0.0, "b": 0.0})
                    mva = pk / MOTOR_D["pf"]
                    y = 1.0 / complex(MOTOR_D["r_stall"], MOTOR_D["x_stall"]) * mva  # system pu
                    self.motors.append({"kind": "algebraic", "bus": b, "pq": pqi, "sh": shi, "pm": pk, "qm": qk,
                                        "g": y.real, "b": y.imag, "t_trip": ttrip, "state": "run",
                                        "low_since": None, "stalled_at": None, "tripped_at": None,
                                        "high_since": None, "restart": k < round(a.f_rst * ntrip)})
                if q - min(qm, q) == 0 and qm > q:  # rest as a capacitor (pf correction), constant Z
                    ss.add("Shunt", {"idx": f"MDC_{b}", "bus": b, "Vn": vn[b], "Sn": self.sb, "g": 0.0,
                                     "b": (qm - q)})
        # DERs: a negative PQLV load (constant P, current-limited below vb -- an inverter at its current limit;
        # the project's DERFR injects constant P down to V = 0, which does not solve through a bolted fault)
        self.ders = []
        if a.der != "none":
            for b in a.der_buses:
                ss.add("PQ", {"idx": f"DERL_{b}", "bus": b, "Vn": vn[b], "p0": -a.der_mw / self.sb, "q0": 0.0})
                ss.add("PQLV", {"idx": f"LV_DERL_{b}", "pq": f"DERL_{b}", "vb": a.vb})
                self.ders.append({"bus": b, "idx": f"LV_DERL_{b}", "p": -a.der_mw / self.sb, "low_since": None,
                                  "tripped_at": None, "ceased": False})
        if a.loads == "pqlv":  # every original PQ: constant power, constant current below vb (PQLV replaces it)
            for k in range(len(pq_bus)):
                ss.add("PQLV", {"idx": f"LV_{k}", "pq": ss.PQ.idx.v[k], "vb": a.vb})
        for b in a.zip_buses:  # these buses' static loads as constant current in the TDS (ANDES ZIP replaces the PQ)
            for k, pb in enumerate(pq_bus):
                if pb == b:
                    kz = {"kpp": 0, "kpi": 100, "kpz": 0, "kqp": 0, "kqi": 100, "kqz": 0} if a.zip_kind == "i" else \
                        {"kpp": 0, "kpi": 0, "kpz": 100, "kqp": 0, "kqi": 0, "kqz": 100}
                    ss.add("ZIP", {"idx": f"ZIP_{b}", "pq": ss.PQ.idx.v[k], **kz})
        ss.add("Fault", {"idx": "F1", "bus": a.fault_bus, "tf": a.t_fault, "tc": a.t_fault + a.t_clear,
                         "xf": a.xf, "rf": 0.0})
        ss.setup()
        if self.ders:  # lower the slack-side dispatch isn't needed: slack picks up; keep it simple
            pass
        if not ss.PFlow.run():
            raise RuntimeError("power flow did not converge")
        if a.motor == "motor3":  # take the motors' reactive draw out of the PQ's q (rest as capacitor)
            for i, b, q in self._pq_q_fix:
                qm = sum(float(ss.models[a.motor_model].q.v[ss.models[a.motor_model].idx2uid(m["idx"])]) for m in self.motors if m["bus"] == b)
                self.pf_motor_q = qm
                ss.PQ.q0.v[i] = q - min(qm, q)
            # no shunt added after setup (cannot add devices); report instead
            if not ss.PFlow.run():
                raise RuntimeError("power flow (motor Q moved) did not converge")
        self.pf = {"v": {int(bb): float(v) for bb, v in zip(ss.Bus.idx.v, ss.Bus.v.v)}}
        if a.motor == "motor3":
            self.pf["motor_p_mw"] = float(np.sum(ss.models[a.motor_model].p.v) * self.sb)
            self.pf["motor_q_mvar"] = float(np.sum(ss.models[a.motor_model].q.v) * self.sb)
            self.pf["slip0"] = [float(s) for s in ss.models[a.motor_model].slip.v]
        t = ss.TDS.config
        t.tstep, t.fixt, t.criteria, t.no_tqdm, t.tf = a.tstep, 1, 0, 1, a.tf
        t.shrinkt = 1
        ss.Fault.config.scale = a.fault_scale
        if a.tds_klu:
            from andes.linsolvers.solverbase import Solver
            ss.TDS.solver = Solver(sparselib="klu")
        ss.TDS.init()
        if not ss.TDS.initialized:
            raise RuntimeError("TDS did not initialize")
        self.bus_uid = {int(bb): k for k, bb in enumerate(ss.Bus.idx.v)}
        self.vaddr = np.asarray(ss.Bus.v.a)
        self.watch = sorted(set([a.fault_bus] + list(a.motor_buses) + list(a.der_buses)))
        self.trace_t, self.trace_v, self.trace_extra = [], [], []
        self.events = []
        self._last_t = -1.0

    def v(self, bus):
        return float(self.ss.dae.y[self.vaddr[self.bus_uid[bus]]])

    # ---- per-step state machines (TDS.callpert is called before each step with the state at t) ----------
    def pert(self, t, ss):
        t = float(t)
        if t <= self._last_t + 1e-12:
            return
        dt = t - self._last_t if self._last_t >= 0 else 0.0
        self._last_t = t
        a = self.a
        for m in self.motors:
            vb = self.v(m["bus"])
            if m["kind"] == "motor3":
                uid = ss.models[a.motor_model].idx2uid(m["idx"])
                if ss.models[a.motor_model].u.v[uid] == 0:
                    continue
                sa = ss.models[a.motor_model].slip.a[uid]
                s = float(ss.dae.x[sa])
                if s > 1.0:
                    ss.dae.x[sa] = 1.0  # locked rotor: no reverse rotation
                if m["stalled_at"] is None and s > a.s_stall and t > a.t_fault:
                    m["stalled_at"] = t
                    self.events.append((t, f"{m['idx']} stalled"))
                if m["stalled_at"] is not None and s < a.s_stall * 0.5:  # re-accelerated
                    self.events.append((t, f"{m['idx']} re-accelerated"))
                    m["stalled_at"] = None
                if m["stalled_at"] is not None and t - m["stalled_at"] >= m["t_trip"]:
                    ss.set_status(a.motor_model, m["idx"], 0)
                    m["tripped_at"] = t
                    self.events.append((t, f"{m['idx']} thermal trip"))
            else:
                pq, sh = ss.PQLV.idx2uid("LV_" + m["pq"]), ss.Shunt.idx2uid(m["sh"])
                if m["state"] == "run":
                    if vb < MOTOR_D["v_stall"]:
                        m["low_since"] = t if m["low_since"] is None else m["low_since"]
                        if t - m["low_since"] >= MOTOR_D["t_stall"]:
                            m["state"], m["stalled_at"] = "stall", t
                            ss.PQLV.p0.v[pq] = ss.PQLV.q0.v[pq] = 0.0
                            ss.Shunt.g.v[sh], ss.Shunt.b.v[sh] = m["g"], m["b"]
                            self.events.append((t, f"{m['pq']} stalled"))
                    else:
                        m["low_since"] = None
                elif m["state"] == "stall" and t - m["stalled_at"] >= m["t_trip"]:
                    m["state"], m["tripped_at"] = "off", t
                    ss.Shunt.g.v[sh] = ss.Shunt.b.v[sh] = 0.0
                    self.events.append((t, f"{m['pq']} thermal trip"))
                elif m["state"] == "off" and m["restart"]:
                    if vb > MOTOR_D["v_rst"]:
                        m["high_since"] = t if m["high_since"] is None else m["high_since"]
                        if t - m["high_since"] >= MOTOR_D["t_rst"]:
                            m["state"] = "run"
                            ss.PQLV.p0.v[pq], ss.PQLV.q0.v[pq] = m["pm"], m["qm"]
                            self.events.append((t, f"{m['pq']} restarted"))
                    else:
                        m["high_since"] = None
        for d in self.ders:
            if d["tripped_at"] is not None:
                continue
            vb = self.v(d["bus"])
            uid = ss.PQLV.idx2uid(d["idx"])
            if a.der == "trip":
                if vb < a.der_vtrip:
                    d["low_since"] = t if d["low_since"] is None else d["low_since"]
                    if t - d["low_since"] > a.der_ttrip:
                        ss.PQLV.p0.v[uid] = 0.0
                        d["tripped_at"] = t
                        self.events.append((t, f"{d['idx']} tripped (UV)"))
                else:
                    d["low_since"] = None
            elif a.der == "mc":
                if vb < 0.5 and not d["ceased"]:
                    ss.PQLV.p0.v[uid], d["ceased"] = 0.0, True
                    self.events.append((t, f"{d['idx']} momentary cessation"))
                elif vb >= 0.5 and d["ceased"]:
                    ss.PQLV.p0.v[uid], d["ceased"] = d["p"], False
                    self.events.append((t, f"{d['idx']} resumed"))
        self.trace_t.append(t)
        self.trace_v.append([self.v(b) for b in self.watch])
        extra = {}
        if a.motor == "motor3":
            extra["slip"] = [float(x) for x in ss.dae.x[ss.models[a.motor_model].slip.a]]
            extra["pm"] = float(np.sum(ss.dae.y[ss.models[a.motor_model].p.a]) * self.sb)
            extra["qm"] = float(np.sum(ss.dae.y[ss.models[a.motor_model].q.a]) * self.sb)
        if self.ders:
            extra["der_p0"] = [float(ss.PQLV.p0.v[ss.PQLV.idx2uid(d["idx"])]) * self.sb for d in self.ders]
        self.trace_extra.append(extra)

    def run(self):
        ss = self.ss
        ss.TDS.callpert = self.pert
        t0 = time.perf_counter()
        ss.TDS.run()
        wall = time.perf_counter() - t0
        # solved trajectory from ANDES's in-memory time series (the callpert samples are pre-step guesses; right
        # after clearing ANDES restores pre-fault algebraic values as the Newton start)
        ts = ss.dae.ts
        ts.unpack()
        t = np.asarray(ts.t)
        V = np.asarray(ts.y)[:, [self.vaddr[self.bus_uid[b]] for b in self.watch]]
        t, keep = np.unique(np.round(t, 9), return_index=True)
        V = V[keep]
        a = self.a
        fb = self.watch.index(a.fault_bus)
        tc = a.t_fault + a.t_clear
        post = t > tc + 1e-6
        vf = V[:, fb]
        below = post & (vf < 0.9)
        # time after clearing until the faulted bus stays >= 0.9 pu
        if np.any(below):
            last_below = t[np.where(below)[0][-1]]
            idx_after = np.where((t > last_below))[0]
            t_rec = (t[idx_after[0]] - tc) if len(idx_after) else float("inf")
        else:
            t_rec = 0.0
        res = {
            "case": a.case, "motor": a.motor, "share": a.share if a.motor != "none" else 0.0, "der": a.der,
            "fault_bus": a.fault_bus, "t_clear_s": a.t_clear, "tstep": a.tstep,
            "completed": bool(ss.dae.t >= a.tf - 1e-6 and ss.exit_code == 0), "t_end": float(ss.dae.t),
            "exit_code": int(ss.exit_code),
            "t_below_0p9_after_clear_s": float(t_rec),
            "time_below_0p9_total_s": float(np.sum(np.diff(t, append=t[-1])[below])),
            "nadir_post_clear_pu": float(vf[post].min()) if np.any(post) else None,
            "v_fault_bus_end_pu": float(vf[-1]),
            "v_fault_on_pu": float(vf[(t >= a.t_fault) & (t < tc)].min()) if np.any((t >= a.t_fault) & (t < tc)) else None,
            "v_min_1s_after_clear": {str(b): float(V[(t > tc) & (t < tc + 1.0), k].min()) for k, b in
                                     enumerate(self.watch)} if np.any((t > tc) & (t < tc + 1.0)) else None,
            "wall_s": wall, "wall_per_sim_s": wall / max(float(ss.dae.t), 1e-9),
            "steps": len(t), "events": [(round(e[0], 3), e[1]) for e in self.events], "pf": self.pf,
        }
        self.t, self.V = t, V
        return res


def parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--case", default="ieee14", choices=list(CASES))
    p.add_argument("--fault-bus", type=int, default=9)
    p.add_argument("--motor-buses", type=lambda s: [int(x) for x in s.split(",")], default=[9, 10, 14])
    p.add_argument("--der-buses", type=lambda s: [int(x) for x in s.split(",") if x], default=[10, 14])
    p.add_argument("--motor", default="motor3", choices=["none", "motor3", "algebraic"])
    p.add_argument("--share", type=float, default=0.5)
    p.add_argument("--k-lock", type=float, default=4.0, help="motor3: load torque at standstill / at rated speed")
    p.add_argument("--hm", type=float, default=0.05, help="motor inertia H (s)")
    p.add_argument("--motor-model", default="Motor3AC", choices=["Motor3AC", "Motor3", "Motor5"])
    p.add_argument("--t-trip", type=lambda s: [float(x) for x in s.split(",")], default=[3.0, 5.0, 8.0],
                   help="thermal trip delays after stall, one motor block each (s)")
    p.add_argument("--f-rst", type=float, default=0.0, help="algebraic: fraction of blocks that restart")
    p.add_argument("--s-stall", type=float, default=0.5, help="motor3: slip above which a motor counts as stalled")
    p.add_argument("--der", default="none", choices=["none", "ride", "trip", "mc"])
    p.add_argument("--der-mw", type=float, default=10.0)
    p.add_argument("--der-vtrip", type=float, default=0.88)
    p.add_argument("--der-ttrip", type=float, default=0.16)
    p.add_argument("--t-fault", type=float, default=1.0)
    p.add_argument("--t-clear", type=float, default=5 / 60)
    p.add_argument("--xf", type=float, default=1e-4)
    p.add_argument("--fault-scale", type=float, default=1.0)
    p.add_argument("--tstep", type=float, default=1 / 120)
    p.add_argument("--tf", type=float, default=15.0)
    p.add_argument("--pq2z", type=int, default=0)
    p.add_argument("--loads", default="pqlv", choices=["pqlv", "pq"],
                   help="pqlv: constant P with a break to constant I below --vb; pq: ANDES PQ as configured")
    p.add_argument("--vb", type=float, default=0.7)
    p.add_argument("--sparselib", default="spsolve", help="PF/TDS linear solver (KLU segfaults with Motor3 in the PF)")
    p.add_argument("--tds-klu", type=int, default=1, help="PF with --sparselib, TDS with KLU")
    p.add_argument("--zip-buses", type=lambda s: [int(x) for x in s.split(",") if x], default=[])
    p.add_argument("--zip-kind", default="z", choices=["z", "i"])
    p.add_argument("--lowv-z", action="store_true", help="loads constant current in the TDS")
    p.add_argument("--out", default=str(HERE / "out"))
    p.add_argument("--tag", default="")
    p.add_argument("--matrix", action="store_true")
    return p


def run_one(a):
    st = Study(a)
    res = st.run()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = a.tag or f"{a.case}_{a.motor}_{a.der}"
    np.savez(out / f"{tag}.npz", t=st.t, V=st.V, watch=np.asarray(st.watch),
             extra=json.dumps(st.trace_extra))
    (out / f"{tag}.json").write_text(json.dumps(res, indent=1))
    return res, st


def plot(runs, path, title, bus):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5))
    for label, st in runs:
        k = st.watch.index(bus)
        ax.plot(st.t, st.V[:, k], label=label, lw=1.3)
    ax.axhline(0.9, color="k", ls=":", lw=0.8)
    ax.axhline(0.88, color="r", ls=":", lw=0.8)
    ax.set_xlabel("time (s)")
    ax.set_ylabel(f"bus {bus} voltage (pu)")
    ax.set_title(title)
    ax.set_ylim(0, 1.15)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    args = parser().parse_args()
    if not args.matrix:
        r, _ = run_one(args)
        print(json.dumps({k: v for k, v in r.items() if k != "pf"}, indent=1))
        sys.exit(0 if r["completed"] else 1)
