"""How the large-system dynamic study grows with its number of feeders, not a test (issue #20 item 2).

Runs ``cases/dyn_npcc_gentrip_agc.toml`` (ANDES NPCC 140-bus, an 800-MW unit trip at 5 s, AGC) with 1, 5, 10 and
20 feeders (always the IEEE 8500 at bus 34, then IEEE 34s and IEEE 13s at NEPOOL and NYISO load buses without
generators, 10 DERs each), each as a whole ``hpcsim -q run`` process, and prints per size: wall time from outside,
plan, federation, the transmission federate's stepping loop, simulated s per wall s (end to end and loop), ANDES
and OpenDSS seconds, peak memory. Each feeder is a federate process of its own, so on C cores the feeders' work
runs C at a time; the last column is the run's federation time over the 1-feeder run's: the ideal is 1.0 while the
feeders' work fits beside the transmission federate, and grows with the OpenDSS CPU seconds per core after that.

Voltage coordination is off here by default (``--coordinate`` keeps it, then the first run of each size
coordinates and caches); the shipped study coordinates.

    .venv/bin/python benchmarks/bench_dynamic_scaling.py --sizes 1 5 10 20 --stop 20
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STUDY = REPO / "cases" / "dyn_npcc_gentrip_agc.toml"
IEEE34_DERS = ["800", "802", "802", "806", "806", "808", "812", "812", "814", "890"]
# (bus, feeder) in the order they are added: the shipped study's ten, then ten more load buses without a generator
FEEDERS = [(34, "ieee8500"), (14, "ieee34"), (12, "ieee34"), (6, "ieee13"), (30, "ieee13"), (18, "ieee34"),
           (20, "ieee34"), (15, "ieee34"), (7, "ieee13"), (31, "ieee13"),
           (9, "ieee34"), (11, "ieee34"), (16, "ieee34"), (17, "ieee34"), (19, "ieee34"), (35, "ieee13"),
           (41, "ieee13"), (45, "ieee13"), (46, "ieee13"), (49, "ieee13")]

log = logging.getLogger("bench_dynamic_scaling")


def study_text(n: int, stop_s: float, coordinate: bool) -> str:
    """The shipped study with its first ``n`` feeders of :data:`FEEDERS`."""
    if not 1 <= n <= len(FEEDERS):
        raise SystemExit(f"bench_dynamic_scaling: {n} feeders: give 1..{len(FEEDERS)}")
    chosen = FEEDERS[:n]
    feeders = ", ".join(f'{b} = "{f}"' for b, f in chosen)
    named = ", ".join(f"{b} = {json.dumps(IEEE34_DERS)}" for b, f in chosen if f == "ieee34")
    spans = ", ".join(f"{b} = [0.0, 1.0]" for b, f in chosen if f != "ieee34")
    text = STUDY.read_text()
    text = re.sub(r'(?m)^name = .*$', f'name = "npcc_scaling_{n}"', text)
    text = re.sub(r"(?m)^stop_s = .*$", f"stop_s = {stop_s}", text)
    text = re.sub(r"(?m)^feeders = .*$", f"feeders = {{ {feeders} }}", text)
    text = re.sub(r"(?m)^der_buses = .*$", f"der_buses = {{ {named} }}" if named else "", text)
    text = re.sub(r"(?m)^der_span = .*$", f"der_span = {{ {spans} }}", text)
    text = re.sub(r"(?m)^coordinate_voltage = .*$", f"coordinate_voltage = {str(coordinate).lower()}", text)
    return text


def run_size(n: int, work: Path, stop_s: float, coordinate: bool) -> dict:
    study = work / f"npcc_{n}.toml"
    study.write_text(study_text(n, stop_s, coordinate))
    out = work / f"run_{n}"
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "hpcsim", "-q", "run", str(study), "--out", str(out)],
                       capture_output=True, text=True, cwd=REPO, check=False)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"bench_dynamic_scaling: {n} feeders failed: {r.stderr.strip()[-400:]}")
    s = json.loads((out / "summary.json").read_text())
    return {"n": n, "outside_wall_s": wall, **s["timing"], "stop_s": s["stop_s"], "n_der": s["n_der"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 5, 10, 20])
    ap.add_argument("--stop", type=float, default=20.0, help="simulated seconds per run")
    ap.add_argument("--coordinate", action="store_true", help="keep the study's voltage coordination")
    ap.add_argument("--out", type=Path, default=None, help="keep the runs here (default: a temporary folder)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    work = args.out or Path(tempfile.mkdtemp(prefix="hpcsim-bench-scaling-"))
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in args.sizes:
        log.info("%d feeder(s), %g s simulated ...", n, args.stop)
        rows.append(run_size(n, work, args.stop, args.coordinate))
    base = rows[0]["federation_s"]
    log.info("load average %s; %d cores; runs in %s", " ".join(f"{x:.2f}" for x in os.getloadavg()),
             os.cpu_count() or 0, work)
    head = ("feeders", "DERs", "wall (outside)", "plan", "federation", "loop", "sim/wall", "sim/loop", "ANDES",
            "OpenDSS", "peak MB", f"federation / {rows[0]['n']}-feeder")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        dss = r["opendss_solve_s"] + r["opendss_vsm_s"]
        print(f"| {r['n']} | {r['n_der']} | {r['outside_wall_s']:.1f} s | {r['plan_s']:.1f} s | "
              f"{r['federation_s']:.1f} s | {r['transmission_loop_s']:.1f} s | {r['sim_s_per_wall_s']:.2f} | "
              f"{r['sim_s_per_loop_s']:.2f} | {r['andes_s']:.1f} s | {dss:.1f} s | {r['peak_rss_mb']:.0f} | "
              f"{r['federation_s'] / base:.2f} |")


if __name__ == "__main__":
    main()
