"""Benchmark the dynamic T&D co-simulation on scenario 1 (``cases/dyn_ieee14_load_variation.toml``), not a test.

Runs the study ``--repeat`` times through the real runner (plan, HELICS broker, four federate processes) without
figures and reports, per run and as the median:

- simulated seconds per wall second, end to end (plan + start-up + run + summary) and for the transmission
  federate's stepping loop alone (its ANDES time plus its time in HELICS calls and data handling);
- the split of time: ANDES (TDS integration, transmission federate), OpenDSS (exchange solves and VSM
  perturbation solves, feeder federates, in parallel with ANDES), the headroom LPs, coupling (the
  transmission federate waiting in HELICS: for the feeders and the AGC, and the exchange itself), plan and
  start-up (everything before the first time step).

First, two whole ``hpcsim run`` processes are timed from outside (Python start-up, imports, case load, plan with
the voltage coordination, federation, outputs and figures): the first with an empty cache folder
(``$HPCSIM_CACHE``: no converted case, no coordination — a fresh environment's first run), the second with the
cache the first left (every later run).

The machine load average is printed: on a shared 2-core machine the figures move with it. As a reference that
depends less on the load, ANDES alone is also timed in a separate process (CPU seconds per simulated second of the
same 14-bus case with its 20 DERs, stepped in 0.5-s intervals under a 2 % load variation): the bound on the
stepping loop.

    .venv/bin/python benchmarks/bench_dynamics.py --out /tmp/hpcsim-bench-dyn --repeat 3
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hpcsim.dynamics.runner import run_dynamic_study  # noqa: E402
from hpcsim.study import load_study  # noqa: E402

STUDY = REPO / "cases" / "dyn_ieee14_load_variation.toml"
KEYS = ("sim_s_per_wall_s", "sim_s_per_loop_s", "wall_s", "plan_s", "federation_s", "transmission_loop_s",
        "andes_s", "opendss_solve_s", "opendss_vsm_s", "lp_s", "coupling_s")


ANDES_ALONE = textwrap.dedent("""
    import time, numpy as np
    from hpcsim.transmission.dynamic import DerGroup, DynamicGrid, json_case
    ders = [DerGroup(b, tuple(f"DER_{b}_{j}" for j in range(10)), 900.0, 500.0) for b in (4, 9)]
    g = DynamicGrid(str(json_case("ieee14/ieee14_full.xlsx")), ders=ders, bus_loads={4: (47.8, 5.0), 9: (29.5, 3.0)},
                    droop_gain_pu=20.0, deadband_hz=0.017, pmx_mw=np.full(20, 0.8), balance_gen="5", trip_gen="",
                    trip_s=0.0, tds_step_s=1 / 30, governors=["TGOV1_1"])
    mult = np.random.default_rng(1).normal(1.0, 0.02, 100)
    cpu, wall = time.process_time(), time.perf_counter()
    for k in range(1, 61):
        if k % 2:
            g.scale_other_loads(mult[k])
        g.advance(k * 0.5)
        g.new_frequency_samples()
    print((time.process_time() - cpu) / 30, (time.perf_counter() - wall) / 30)
""")


def andes_cpu_s(run_dir: Path) -> float:
    """CPU seconds of the transmission federate's integrating thread, from its log (NaN if not found)."""
    m = re.search(r"ANDES integrated \S+ s in \S+ s, (\S+) s of it on the CPU",
                  (run_dir / "logs" / "transmission.log").read_text())
    return float(m.group(1)) if m else float("nan")


def andes_alone() -> tuple[float, float]:
    """(CPU s, wall s) per simulated second of ANDES alone (see module docstring)."""
    r = subprocess.run([sys.executable, "-c", ANDES_ALONE], capture_output=True, text=True, cwd=REPO, check=True)
    cpu, wall = (float(x) for x in r.stdout.split()[-2:])
    return cpu, wall


def whole_process(study: Path, run_dir: Path, cache: Path) -> dict:
    """Wall time of one ``hpcsim run`` process (figures included) with the cache folder ``cache``, and the
    run's own timing split."""
    env = {**os.environ, "HPCSIM_CACHE": str(cache)}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "hpcsim", "run", str(study), "-o", str(run_dir)], cwd=REPO, env=env,
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    timing = json.loads((run_dir / "summary.json").read_text())["timing"]
    return {"process_wall_s": wall, "plan_s": timing["plan_s"], "federation_s": timing["federation_s"],
            "andes_s": timing["andes_s"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("/tmp/hpcsim-bench-dyn"))
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--study", type=Path, default=STUDY)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    study = load_study(args.study)
    shutil.rmtree(args.out, ignore_errors=True)
    sim_s = study.dynamics.stop_s
    whole = {}
    with tempfile.TemporaryDirectory(prefix="hpcsim-cold-cache-") as cache:
        for label in ("first run (empty cache)", "second run (cached)"):
            load = os.getloadavg()[0]
            w = whole[label] = whole_process(args.study, args.out / label.split()[0], Path(cache))
            print(f"{label:24s} {w['process_wall_s']:6.1f} s whole process -> {sim_s / w['process_wall_s']:5.1f} "
                  f"simulated s per wall s (plan {w['plan_s']:.1f} s, federation {w['federation_s']:.1f} s, "
                  f"ANDES {w['andes_s']:.1f} s; load {load:.1f})", flush=True)
    runs = []
    for i in range(args.repeat):
        load = os.getloadavg()[0]
        summary = run_dynamic_study(study, args.out / f"run{i}", show_progress=False, plots=False)
        tm = {k: summary["timing"][k] for k in KEYS}
        tm["andes_cpu_s"] = andes_cpu_s(args.out / f"run{i}")
        tm["load_avg_1min_before"] = load
        runs.append(tm)
        print(f"run {i}: " + ", ".join(f"{k} {v:.2f}" for k, v in tm.items()), flush=True)
    median = {k: statistics.median(r[k] for r in runs) for k in (*KEYS, "andes_cpu_s")}
    andes_cpu, andes_wall = andes_alone()
    report = {"study": study.name, "simulated_s": sim_s, "cpus": os.cpu_count(), "python": platform.python_version(),
              "median": median, "runs": runs, "whole_process": whole, "andes_alone_cpu_s_per_sim_s": andes_cpu,
              "andes_alone_wall_s_per_sim_s": andes_wall, "load_avg_1min_after": os.getloadavg()[0]}
    (args.out / "bench_dynamics.json").write_text(json.dumps(report, indent=1))
    m = median
    print(f"\n{study.name}: {sim_s:g} simulated s, median of {len(runs)} runs on {os.cpu_count()} CPUs")
    print(f"  end to end     {m['wall_s']:6.1f} s wall  -> {m['sim_s_per_wall_s']:5.1f} simulated s per wall s")
    print(f"  stepping loop  {m['transmission_loop_s']:6.1f} s      -> {m['sim_s_per_loop_s']:5.1f} simulated s "
          "per wall s")
    print(f"  ANDES TDS      {m['andes_s']:6.1f} s   (transmission federate; {m['andes_cpu_s']:.1f} s of it on the "
          f"CPU, the rest preempted); ANDES alone: {andes_cpu * 1000:.0f} ms CPU ({andes_wall * 1000:.0f} ms wall) per "
          f"simulated s -> at most {1 / andes_cpu:.1f} simulated s per s")
    print(f"  OpenDSS        {m['opendss_solve_s'] + m['opendss_vsm_s']:6.1f} s   "
          f"(exchange solves {m['opendss_solve_s']:.1f} s + VSM perturbations {m['opendss_vsm_s']:.1f} s, "
          f"feeder federates, in parallel)")
    print(f"  headroom LP    {m['lp_s']:6.2f} s")
    print(f"  coupling       {m['coupling_s']:6.1f} s   (transmission federate in HELICS calls and data handling)")
    print(f"  plan, start-up {m['plan_s']:6.1f} s plan + {m['federation_s'] - m['transmission_loop_s']:.1f} s "
          f"process start and shutdown")
    for label, w in whole.items():
        print(f"  {label:22s} {w['process_wall_s']:6.1f} s whole process -> "
              f"{sim_s / w['process_wall_s']:5.1f} simulated s per wall s (target 10)")
    print(f"  written: {args.out / 'bench_dynamics.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
