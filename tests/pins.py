"""Pinned answers of the shipped studies (issue #19: a refactor keeps every number; see PIN_RTOL for how close).

The integration tests that run a shipped study pass its answer to :func:`check_pinned`; ``tests/pinned_answers.json``
holds the recorded answers, rewritten by ``HPCSIM_UPDATE_GOLDEN=1`` (review the diff: a change of the answers is
a change of the physics or the numerics, never of the plumbing).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

PINS = Path(__file__).resolve().parent / "pinned_answers.json"
# of max(1, |value|): every shipped study's answer is pinned this close. The same code on two CPUs (the AMD EPYC of
# 2026-12-07 and the machine the steady pins were recorded on) gives the 126-feeder snapshot up to 2.5e-9 apart
# (every one of its 652 values differs a little: answers iterated to a 1e-6 tolerance carry the CPUs' last-digit
# differences); on one machine a refactor must keep them bit for bit (issue #19's did). A real change of the
# physics or numerics moves them by 1e-7 or more.
PIN_RTOL = 1e-8


def steady_answer(summary: dict) -> dict[str, float]:
    """What a steady-state run answers: each step's iterations, each boundary bus's voltage, angle and power
    (the feeders' part) at the end, and each feeder's power and voltage extremes."""
    out: dict[str, float] = {f"iterations[{i}]": s["iterations"] for i, s in enumerate(summary["steps"])}
    for b in summary["boundary"]:
        for key in ("v_pu", "angle_deg", "p_mw", "q_mvar"):
            out[f"bus {b['bus']} {key}"] = b[key]
    for f in summary["feeders"]:
        for key in ("p_mw", "q_mvar", "min_v_pu", "max_v_pu"):
            out[f"{f['name']} {key}"] = f[key]
    return out


def dynamic_answer(summary: dict) -> dict[str, float]:
    """What a dynamic run answers: the frequency and ACE statistics and every feeder's voltage extremes."""
    out: dict[str, float] = {}
    for block in ("frequency", "ace"):
        for key, value in summary[block].items():
            if key == "paper":  # the paper's table, not our answer
                continue
            for sub, v in (value.items() if isinstance(value, dict) else [("", value)]):
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    out[f"{block} {key} {sub}".rstrip()] = v
    for f in summary["feeders"]:
        name = f"{f['feeder']}@{f['bus']}"
        out[f"{name} v_min_pu"], out[f"{name} v_max_pu"] = f["v_min_pu"], f["v_max_pu"]
        out.update({f"{name} p_net_mw {k}": v for k, v in f["p_net_mw"].items()})
    return out


def check_pinned(name: str, answer: dict[str, float]) -> None:
    """``answer`` equals the answer pinned for ``name`` in tests/pinned_answers.json within :data:`PIN_RTOL`
    (same keys, every value). ``HPCSIM_UPDATE_GOLDEN=1`` records it instead (review the diff: a change of the
    answers is a change of the physics or the numerics, never of the plumbing)."""
    pins = json.loads(PINS.read_text()) if PINS.is_file() else {}
    if os.environ.get("HPCSIM_UPDATE_GOLDEN") == "1":
        pins[name] = answer
        PINS.write_text(json.dumps(dict(sorted(pins.items())), indent=1, sort_keys=True) + "\n")
        return
    assert name in pins, f"no pinned answer for {name} (HPCSIM_UPDATE_GOLDEN=1 records it)"
    pinned = pins[name]
    assert sorted(answer) == sorted(pinned), f"{name}: the answer's keys changed"
    off = {k: (answer[k], pinned[k]) for k in pinned
           if not (abs(answer[k] - pinned[k]) <= PIN_RTOL * max(1.0, abs(pinned[k]))
                   or (math.isnan(answer[k]) and math.isnan(pinned[k])))}
    assert not off, f"{name}: {len(off)} values moved from their pins, e.g. {dict(list(off.items())[:3])}"
