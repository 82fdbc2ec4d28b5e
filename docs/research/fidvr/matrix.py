"""Run the study matrix (2 at a time) and plot. python matrix.py"""
import json, subprocess, sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
import numpy as np
PY = sys.executable
OUT = Path(__file__).resolve().parent / "out"
RUNS = {
    "none": "--motor none",
    "motor3": "--motor motor3",
    "algebraic": "--motor algebraic",
    "motor3_der_ride": "--motor motor3 --der ride",
    "motor3_der_trip": "--motor motor3 --der trip",
    "motor3_der_mc": "--motor motor3 --der mc",
    "none_der_ride": "--motor none --der ride",
    "none_der_trip": "--motor none --der trip",
    "algebraic_der_ride": "--motor algebraic --der ride",
    "algebraic_der_trip": "--motor algebraic --der trip",
    "motor3_tstep30": "--motor motor3 --tstep 0.0333333333333",
    "none_tstep30": "--motor none --tstep 0.0333333333333",
}
def one(tag):
    cmd = f"nice -n 19 {PY} fidvr_proto.py --tf 15 --tag {tag} {RUNS[tag]}".split()
    r = subprocess.run(cmd, cwd=Path(__file__).resolve().parent, capture_output=True, text=True, timeout=1800)
    return tag, r.returncode, r.stderr[-300:]
if __name__ == "__main__":
    tags = sys.argv[1:] or list(RUNS)
    with ThreadPoolExecutor(2) as ex:
        for tag, rc, err in ex.map(one, tags):
            print(tag, rc, err.strip().splitlines()[-1:] if rc else "")
