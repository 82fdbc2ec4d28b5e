"""Resume a killed QSTS run (``hpcsim run --resume RUN``) from its last completed step.

A step is complete when every federate wrote its ``steps`` record for it (the feeder groups write theirs when
the next step begins, so the last step a killed run shows for all of them is whole). The outputs of later steps
are removed, with their records, and the federation is started again from step k with the state the federates
carried out of step k − 1, read back from what was written:

- the transmission federate: the power each feeder sent last (its final iteration's p, q) and the voltage each
  bus published last (what the feeders solved at in that iteration);
- each feeder: its regulator taps and capacitor steps after that solve, its source voltage and load
  multiplier. Its first solve starts from the model solved at that voltage and multiplier with those controls
  (the node voltages themselves are not written; they only start the solve).

- ``residual_load``: the static load each boundary bus carried beside its feeders (scaled by the load profile
  from the step it was carried in).
- Newton: the slope each feeder sent last (the transmission's boundary equivalents of the next step's first
  power flow are built from it).

What is not restored is what only starts a solve (the power flow's initial voltages, a feeder's node voltages),
so a resumed run gives the uninterrupted run's tables to the solvers' tolerances (tested: every row).
"""

from __future__ import annotations

import json
import logging
import math
import re
import shutil
from pathlib import Path

import pyarrow.parquet as pq

from hpcsim.errors import StudyError
from hpcsim.output.written import RECORDS, UNRECORDED, verify

log = logging.getLogger(__name__)

SLOPE_COLUMNS = ("ds_dv_p_mw_per_pu", "ds_dv_q_mvar_per_pu")
PART_RE = re.compile(r"^part-(\d+)\.parquet$")
TABLES = ("transmission", "feeders", "steps", "node_voltages")


def _steps_of(folder: Path) -> set[int]:
    return {int(m.group(1)) for p in folder.glob("part-*.parquet") if (m := PART_RE.match(p.name))}


def completed_steps(run_dir: Path, federates: list[str]) -> int:
    """How many leading steps every federate finished (its ``steps`` file written)."""
    done = [_steps_of(run_dir / "outputs" / "steps" / f"federate={name}") for name in federates]
    k = 0
    while all(k in d for d in done):
        k += 1
    return k


def truncate(run_dir: Path, from_step: int) -> int:
    """Remove every part file of step ``from_step`` or later (and its record), and the run's end products
    (summary, errors, progress); returns how many files went."""
    removed = 0
    out = run_dir / "outputs"
    for table in TABLES:
        for folder in sorted((out / table).glob("federate=*")):
            for p in folder.glob("part-*"):  # *.parquet and a killed writer's *.parquet.tmp
                m = re.match(r"^part-(\d+)\.parquet", p.name)
                if m and int(m.group(1)) >= from_step:
                    p.unlink()
                    removed += 1
        for rec in sorted((out / RECORDS / table).glob("*.jsonl")):
            keep = []
            for line in rec.read_text().splitlines():
                try:
                    m = PART_RE.match(json.loads(line)["file"])
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue
                if m and int(m.group(1)) < from_step:
                    keep.append(line)
            rec.write_text("".join(f"{line}\n" for line in keep))
    for name in ("summary.json", "progress.json"):
        (run_dir / name).unlink(missing_ok=True)
    shutil.rmtree(run_dir / "errors", ignore_errors=True)
    return removed


def carried_state(run_dir: Path, step: int) -> dict[str, dict]:
    """Per feeder: what its final iteration of ``step`` left (p, q, source voltage and angle, load multiplier,
    taps, capacitor steps), from the ``feeders`` table."""
    folder = run_dir / "outputs" / "feeders"
    state: dict[str, dict] = {}
    for part in sorted(folder.glob(f"federate=*/part-{step:05d}.parquet")):
        pf = pq.ParquetFile(part)
        slopes = [c for c in SLOPE_COLUMNS if c in pf.schema_arrow.names]  # absent in runs before they existed
        t = pf.read(columns=["iteration", "feeder", "v_source_pu", "angle_deg", "load_mult", "p_mw", "q_mvar",
                             "reg_taps", "cap_states", *slopes]).to_pylist()
        for row in sorted(t, key=lambda r: r["iteration"]):  # the last iteration wins
            before = state.get(row["feeder"], {})
            st = {"p_mw": row["p_mw"], "q_mvar": row["q_mvar"], "v_pu": row["v_source_pu"],
                  "angle_deg": row["angle_deg"], "load_mult": row["load_mult"],
                  "reg_taps": list(row["reg_taps"] or []), "cap_states": list(row["cap_states"] or []),
                  # Newton: the slope the transmission holds is the last one sent (not every iteration sends one)
                  "ds_dv_mva_re": before.get("ds_dv_mva_re"), "ds_dv_mva_im": before.get("ds_dv_mva_im")}
            if len(slopes) == 2 and row[slopes[0]] is not None and not math.isnan(row[slopes[0]]):
                st["ds_dv_mva_re"], st["ds_dv_mva_im"] = row[slopes[0]], row[slopes[1]]
            state[row["feeder"]] = st
    return state


def carried_residual(run_dir: Path, step: int) -> dict[str, list[float]]:
    """Per boundary bus (str): the static residual load (P MW, Q Mvar) the transmission carried in ``step``
    (``residual_load``; empty for runs without the columns)."""
    out: dict[str, list[float]] = {}
    for part in sorted((run_dir / "outputs" / "transmission").glob(f"federate=*/part-{step:05d}.parquet")):
        pf = pq.ParquetFile(part)
        if "residual_p_mw" not in pf.schema_arrow.names:
            continue
        for row in pf.read(columns=["bus", "residual_p_mw", "residual_q_mvar"]).to_pylist():
            out[str(row["bus"])] = [row["residual_p_mw"], row["residual_q_mvar"]]
    return out


def prepare(run_dir: Path, federates: list[str], feeders: list[str], n_steps: int) -> tuple[int, dict]:
    """Check the run folder, find the step to resume from, remove what comes after and return (k, the carried
    state of step k − 1: ``{"feeders": per feeder, "residual": per bus}``; empty when k = 0)."""
    from hpcsim.output.readers import COLUMNS  # noqa: PLC0415 - pandas only when a run is resumed

    checked = verify(run_dir, dict(COLUMNS))
    # a part file a federate was writing when the run was killed (there, but not recorded by its writer) ends
    # the completed steps before its own step: the run resumes from there (the transmission federate may report
    # a step done while a feeder group is still writing its rows of it)
    unfinished = [s for p in checked.problems if UNRECORDED in p and (s := _part_step(p)) is not None]
    k = min([completed_steps(run_dir, federates), *unfinished])
    if unfinished and min(unfinished) == k:
        log.info("%s: resuming from step %d: its outputs were being written when the run stopped", run_dir, k)
    damaged = [p for p in checked.problems if (s := _part_step(p)) is None or s < k]
    if damaged:
        raise StudyError(f"{run_dir}: cannot resume: {len(damaged)} output file(s) of the completed steps are "
                         f"damaged or missing: {damaged[0]}")
    if k >= n_steps:
        raise StudyError(f"{run_dir}: all {n_steps} steps are complete; nothing to resume")
    truncate(run_dir, k)
    if k == 0:
        return 0, {}
    state = carried_state(run_dir, k - 1)
    missing = sorted(set(feeders) - set(state))
    if missing:
        raise StudyError(f"{run_dir}: cannot resume: step {k - 1} has no row of feeder {missing[0]}")
    return k, {"feeders": state, "residual": carried_residual(run_dir, k - 1)}


def resume_section(role: dict, from_step: int, carried: dict) -> dict:
    """The ``resume`` section of one federate's config: the carried states of its own feeders, and (the
    transmission) the boundary buses' residual loads."""
    section = {"from_step": from_step,
               "feeders": {f["name"]: carried["feeders"][f["name"]] for f in role.get("feeders", [])}}
    if role.get("role") == "transmission":
        section["residual"] = carried.get("residual", {})
    return section


def _part_step(problem: str) -> int | None:
    """The step of the part file a problem of :func:`hpcsim.output.written.verify` is about, if it is one."""
    m = re.search(r"part-(\d+)\.parquet", problem)
    return int(m.group(1)) if m else None
