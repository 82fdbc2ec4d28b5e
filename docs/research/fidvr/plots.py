import json, sys
from pathlib import Path
import numpy as np, matplotlib
matplotlib.use("Agg"); import matplotlib.pyplot as plt
OUT = Path(__file__).resolve().parent / "out"
def load(tag):
    d = np.load(OUT / f"{tag}.npz"); return d["t"], d["V"], list(d["watch"]), json.loads(str(d["extra"]))
def fig(tags, labels, bus, name, title):
    f, ax = plt.subplots(figsize=(9, 4.5))
    for tg, lb in zip(tags, labels):
        if not (OUT / f"{tg}.npz").exists(): continue
        t, V, w, _ = load(tg); ax.plot(t, V[:, w.index(bus)], label=lb, lw=1.2)
    ax.axhline(0.9, color="k", ls=":", lw=0.8); ax.axhline(0.88, color="r", ls=":", lw=0.8)
    ax.set(xlabel="time (s)", ylabel=f"bus {bus} voltage (pu)", title=title, ylim=(0, 1.15)); ax.grid(alpha=.3)
    ax.legend(fontsize=8); f.tight_layout(); f.savefig(Path(__file__).resolve().parent / f"{name}.png", dpi=110); plt.close(f)
fig(["none", "motor3", "algebraic"], ["no motors (constant P, break to I < 0.7 pu)", "50 % Motor3 (stall physics) + thermal trip 3/5/8 s", "50 % algebraic motor-D state machine, trip 3/5/8 s"], 9, "fidvr_bus9_motor_vs_none", "IEEE 14: 5-cycle 3-ph fault at bus 9 (t = 1 s), motors at buses 9, 10, 14")
fig(["motor3", "motor3_der_ride", "motor3_der_trip", "motor3_der_mc"], ["no DER", "DER ride-through", "DER trip (V<0.88 pu > 0.16 s)", "DER momentary cessation (<0.5 pu)"], 9, "fidvr_bus9_der_motor3", "Motor3 FIDVR with 2 x 10 MW DER at buses 10, 14")
fig(["algebraic", "algebraic_der_ride", "algebraic_der_trip"], ["no DER", "DER ride-through", "DER trip"], 9, "fidvr_bus9_der_algebraic", "Algebraic motor-D FIDVR with 2 x 10 MW DER at buses 10, 14")
fig(["none", "none_der_ride", "none_der_trip"], ["no DER", "DER ride-through", "DER trip"], 9, "fidvr_bus9_der_nomotor", "No motors, 2 x 10 MW DER at buses 10, 14")
fig(["motor3", "motor3_tstep30", "none", "none_tstep30"], ["motor3, h = 1/120 s", "motor3, h = 1/30 s", "none, h=1/120", "none, h=1/30"], 9, "fidvr_bus9_stepsize", "Step size sensitivity")
# motor slips
if (OUT / "motor3.npz").exists():
    t, V, w, ex = load("motor3"); f, ax = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    for b in w: ax[0].plot(t, V[:, w.index(b)], label=f"bus {b}")
    ax[0].legend(); ax[0].set_ylabel("V (pu)"); ax[0].grid(alpha=.3); ax[0].axhline(0.9, color="k", ls=":")
    s = np.array([e["slip"] for e in ex]); n = len(s)
    from numpy import linspace
    ax[1].plot(np.linspace(t[0], t[-1], n) if n != len(t) else t, s); ax[1].set_ylabel("motor slip"); ax[1].set_xlabel("time (s)"); ax[1].grid(alpha=.3)
    f.tight_layout(); f.savefig(Path(__file__).resolve().parent / "fidvr_motor3_buses_slip.png", dpi=110); plt.close(f)
print("ok")
