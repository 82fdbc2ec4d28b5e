"""Independent checks of a converged steady-state answer (``hpcsim check RUN``), from its ``summary.json`` alone.

Neither side is trusted to the coupling that produced the answer:

- **each feeder** (all, or a seeded sample) is compiled afresh and solved alone at its bus's reported voltage,
  with its reported load multiplier, regulator taps and capacitor steps held: it must draw the reported power
  (within ``power_atol_mw``). From that solution, controls acting, no tap or step may move (the controls are
  at an equilibrium, not frozen at an arbitrary state);
- **the transmission** is solved alone by ANDES with each boundary bus's reported load (the feeders' part and
  the static residual, ``residual_load``) and the run's generator voltages (``gen_voltage``): it must give
  the reported boundary voltages (within ``v_atol_pu``, angles within 1e-3 degrees).

Also reported, not judged: how far every transmission bus lies from the case's published solution.
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from hpcsim.cases import case_solution, resolve_feeder, resolve_transmission_case
from hpcsim.distribution import CloneState, ControlState, FeederEngine
from hpcsim.errors import OutputError
from hpcsim.transmission import TransmissionNetwork

log = logging.getLogger(__name__)

# the coupling tolerance (1e-6 on 100 MVA = 1e-4 MW) plus OpenDSS's own solution noise
POWER_ATOL_MW = 2e-4
V_ATOL_PU = 1e-6
ANGLE_ATOL_DEG = 1e-3


@dataclass
class CheckReport:
    run_dir: str
    feeders_checked: int = 0
    feeders_total: int = 0
    max_dp_mw: float = 0.0
    max_dq_mvar: float = 0.0
    worst_feeder: str = ""
    controls_moved: list[str] = field(default_factory=list)
    transmission_max_dv_pu: float = 0.0
    transmission_max_da_deg: float = 0.0
    published_max_dv_pu: float = float("nan")  # every bus of the case, against its published VM
    published_worst_bus: int | None = None
    problems: list[str] = field(default_factory=list)
    check_s: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict:
        return asdict(self) | {"ok": self.ok}


def _read(run_dir: Path) -> tuple[dict, dict, str]:
    """(summary, transmission role settings, feeder model) of a finished run folder."""
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
    except FileNotFoundError:
        raise OutputError(f"{run_dir}: no summary.json (not a finished run folder)") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise OutputError(f"{run_dir}/summary.json: unreadable: {exc}") from None
    if summary.get("kind", "steady") != "steady" or "boundary" not in summary:
        raise OutputError(f"{run_dir}: only steady-state runs can be checked")
    if not summary.get("converged"):
        raise OutputError(f"{run_dir}: the run did not converge; there is no answer to check")
    try:
        role = json.loads((run_dir / "configs" / "transmission.json").read_text())["hpcsim"]
        group = next(iter(sorted((run_dir / "configs").glob("feeders_*.json"))))
        model = json.loads(group.read_text())["hpcsim"]["feeder_model"]
    except (OSError, StopIteration, KeyError, json.JSONDecodeError) as exc:
        raise OutputError(f"{run_dir}/configs: cannot read the federate configs: {exc}") from None
    return summary, role, model


def check_feeder(engine, feeder: dict, v_pu: float, angle_deg: float):
    """(result with the controls held, result with them acting from there) of one reported feeder."""
    engine.apply_control_state(ControlState(tuple(feeder["reg_taps"]), tuple(feeder["cap_states"])))
    engine.freeze_controls()
    clone = CloneState("alone", feeder["bus"], feeder.get("load_mult", 1.0), v_pu, angle_deg)
    held = engine.solve(clone)
    engine.freeze_controls(False)
    return held, engine.solve(clone)


def check_run(run_dir: str | Path, sample: int | None = None, seed: int = 0,
              power_atol_mw: float = POWER_ATOL_MW, v_atol_pu: float = V_ATOL_PU) -> CheckReport:
    """Check a converged run folder (see the module docstring); ``sample``: that many feeders, seeded."""
    run_dir = Path(run_dir)
    summary, role, model_name = _read(run_dir)
    return check_answer(summary, role["case"], model_name, role.get("gen_voltage", "setpoint"), sample=sample,
                        seed=seed, power_atol_mw=power_atol_mw, v_atol_pu=v_atol_pu, where=str(run_dir))


def check_answer(summary: dict, case: str, model_name: str, gen_voltage: str = "setpoint", *,
                 sample: int | None = None, seed: int = 0, power_atol_mw: float = POWER_ATOL_MW,
                 v_atol_pu: float = V_ATOL_PU, where: str = "") -> CheckReport:
    """The checks of :func:`check_run` on a summary (``summary.json``'s content) of a run on ``case`` with
    feeder model ``model_name`` (a name or a .dss path) and generators at ``gen_voltage``."""
    t0 = time.perf_counter()
    report = CheckReport(where, feeders_total=len(summary["feeders"]))
    buses = {int(b["bus"]): b for b in summary["boundary"]}
    feeders = list(summary["feeders"])
    if sample is not None and sample < len(feeders):
        feeders = random.Random(seed).sample(feeders, sample)
    model = resolve_feeder(model_name)
    worst = 0.0
    for i, f in enumerate(feeders):
        b = buses[int(f["bus"])]
        with FeederEngine(model) as engine:  # compiled afresh: nothing carried over from the run
            held, acting = check_feeder(engine, f, b["v_pu"], b["angle_deg"])
        dp, dq = abs(held.p_mw - f["p_mw"]), abs(held.q_mvar - f["q_mvar"])
        report.max_dp_mw, report.max_dq_mvar = max(report.max_dp_mw, dp), max(report.max_dq_mvar, dq)
        if max(dp, dq) > worst:
            worst, report.worst_feeder = max(dp, dq), f["name"]
        if acting.control.reg_taps != tuple(f["reg_taps"]) or acting.control.cap_states != tuple(f["cap_states"]):
            report.controls_moved.append(f["name"])
        if (i + 1) % 50 == 0:
            log.info("checked %d of %d feeders", i + 1, len(feeders))
    report.feeders_checked = len(feeders)
    if worst > power_atol_mw:
        report.problems.append(f"feeder {report.worst_feeder} alone draws {worst:.3g} MW/Mvar off its reported "
                               f"power (tolerance {power_atol_mw:g})")
    if report.controls_moved:
        report.problems.append(f"{len(report.controls_moved)} feeder(s) would move a control from their reported "
                               f"state, first {report.controls_moved[0]}")

    solution = case_solution(case)
    order = sorted(buses)
    net = TransmissionNetwork(resolve_transmission_case(case), order,
                              hold_voltages=solution if gen_voltage == "solution" else None)
    net.set_boundary_loads({k: buses[k]["p_mw"] + buses[k].get("residual_p_mw", 0.0) for k in order},
                           {k: buses[k]["q_mvar"] + buses[k].get("residual_q_mvar", 0.0) for k in order})
    net.solve()
    v, a = net.boundary_voltages()
    report.transmission_max_dv_pu = float(np.max(np.abs(v - [buses[k]["v_pu"] for k in order])))
    report.transmission_max_da_deg = float(np.max(np.abs(a - [buses[k]["angle_deg"] for k in order])))
    if report.transmission_max_dv_pu > v_atol_pu or report.transmission_max_da_deg > ANGLE_ATOL_DEG:
        report.problems.append(f"the transmission alone with the reported loads is {report.transmission_max_dv_pu:.3g}"
                               f" pu / {report.transmission_max_da_deg:.3g} deg off the reported boundary voltages")
    all_v = dict(zip((int(x) for x in net.ss.Bus.idx.v), np.asarray(net.ss.Bus.v.v, dtype=float)))
    dv = {bus: abs(all_v[bus] - vm) for bus, (vm, _) in solution.items() if bus in all_v}
    if dv:
        report.published_worst_bus = max(dv, key=dv.get)
        report.published_max_dv_pu = float(dv[report.published_worst_bus])
    report.check_s = time.perf_counter() - t0
    return report
