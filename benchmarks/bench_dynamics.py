"""Benchmark the dynamic T&D co-simulation on scenario 1 (``cases/dyn_ieee14_load_variation.toml``), not a test.

Runs the study ``--repeat`` times through the real runner (plan, HELICS broker, four federate processes) without
figures and reports, per run and as the median:

- simulated seconds per wall second, end to end (plan + start-up + run + summary) and for the transmission
  federate's stepping loop alone (its ANDES time plus its time in HELICS calls and data handling);
- the split of time: ANDES (TDS integration, transmission federate), OpenDSS (exchange solves and VSM
  perturbation solves, feeder federates, in parallel with ANDES), the headroom LPs, coupling (the
  transmission federate waiting in HELICS: for the feeders and the AGC, and the exchange itself), plan and
  start-up (everything before the first time step).

The machine load average is printed: on a shared 2-core machine the figures move with it.

    .venv/bin/python benchmarks/bench_dynamics.py --out /tmp/hpcsim-bench-dyn --repeat 3
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hpcsim.dynamics.runner import run_dynamic_study  # noqa: E402
from hpcsim.study import load_study  # noqa: E402

STUDY = REPO / "cases" / "dyn_ieee14_load_variation.toml"
KEYS = ("sim_s_per_wall_s", "sim_s_per_loop_s", "wall_s", "plan_s", "federation_s", "transmission_loop_s",
        "andes_s", "opendss_solve_s", "opendss_vsm_s", "lp_s", "coupling_s")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("/tmp/hpcsim-bench-dyn"))
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--study", type=Path, default=STUDY)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    study = load_study(args.study)
    shutil.rmtree(args.out, ignore_errors=True)
    runs = []
    for i in range(args.repeat):
        load = os.getloadavg()[0]
        summary = run_dynamic_study(study, args.out / f"run{i}", show_progress=False, plots=False)
        tm = {k: summary["timing"][k] for k in KEYS}
        tm["load_avg_1min_before"] = load
        runs.append(tm)
        print(f"run {i}: " + ", ".join(f"{k} {v:.2f}" for k, v in tm.items()), flush=True)
    median = {k: statistics.median(r[k] for r in runs) for k in KEYS}
    sim_s = study.dynamics.stop_s
    report = {"study": study.name, "simulated_s": sim_s, "cpus": os.cpu_count(), "python": platform.python_version(),
              "median": median, "runs": runs}
    (args.out / "bench_dynamics.json").write_text(json.dumps(report, indent=1))
    m = median
    print(f"\n{study.name}: {sim_s:g} simulated s, median of {len(runs)} runs on {os.cpu_count()} CPUs")
    print(f"  end to end     {m['wall_s']:6.1f} s wall  -> {m['sim_s_per_wall_s']:5.1f} simulated s per wall s")
    print(f"  stepping loop  {m['transmission_loop_s']:6.1f} s      -> {m['sim_s_per_loop_s']:5.1f} simulated s per wall s")
    print(f"  ANDES TDS      {m['andes_s']:6.1f} s   (transmission federate)")
    print(f"  OpenDSS        {m['opendss_solve_s'] + m['opendss_vsm_s']:6.1f} s   "
          f"(exchange solves {m['opendss_solve_s']:.1f} s + VSM perturbations {m['opendss_vsm_s']:.1f} s, "
          f"feeder federates, in parallel)")
    print(f"  headroom LP    {m['lp_s']:6.2f} s")
    print(f"  coupling       {m['coupling_s']:6.1f} s   (transmission federate in HELICS calls and data handling)")
    print(f"  plan, start-up {m['plan_s']:6.1f} s plan + {m['federation_s'] - m['transmission_loop_s']:.1f} s "
          f"process start and shutdown")
    print(f"  written: {args.out / 'bench_dynamics.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
