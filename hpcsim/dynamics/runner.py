"""``hpcsim run`` for a study with a ``[dynamics]`` section: plan, brokers and federates as real processes,
Parquet outputs, ``summary.json`` and figures in the run folder.

Run folder (as for steady-state runs)::

    study.toml  plan.json  run.json  runner.json  configs/*.json  logs/*.log
    outputs/<table>/federate=*/part-*.parquet  errors/*.json (on failure)  progress.json  summary.json  *.png
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from hpcsim.federation.helics_config import write_config
from hpcsim.federation.runner import check_sub_brokers, prepare_run_dir, run_federation
from hpcsim.output.summary import DESCRIPTION, write_summary
from hpcsim.rundir import check_new_folder
from hpcsim.dynamics.plan import build_plan, federate_configs
from hpcsim.dynamics.summary import build_summary, describe_run
from hpcsim.console import Table, emit_line, emit_table
from hpcsim.study import Study

log = logging.getLogger(__name__)


def run_dynamic_study(study: Study, run_dir: Path | None = None, show_progress: bool = True,
                      plots: bool = True) -> dict:
    """Run a dynamic study on this machine; returns the summary (also in ``<run_dir>/summary.json``)."""

    t_start = time.perf_counter()
    out = check_new_folder(Path(run_dir)) if run_dir is not None else None
    plan = build_plan(study)
    plan_s = time.perf_counter() - t_start
    names = plan.federate_names
    check_sub_brokers(study.sub_brokers, len(names))
    run_dir = prepare_run_dir(out, study)
    write_config(run_dir / "plan.json", plan.describe())
    desc = describe_run(plan)
    write_config(run_dir / DESCRIPTION, desc)
    log.info("%s: dynamic study, %g s, %d feeders, %d DERs, AGC %s -> %s", study.name, plan.spec.stop_s,
             len(plan.feeders), plan.n_der, "on" if plan.spec.agc else "off", run_dir)
    t_federation = time.perf_counter()

    def summarize(ran_ok: bool, _wall_s: float, peak_mb: float) -> dict:  # wall: from the process start
        summary = build_summary(run_dir, desc, completed=ran_ok, wall_s=time.perf_counter() - t_start,
                                plan_s=plan_s, federation_s=time.perf_counter() - t_federation, peak_rss_mb=peak_mb)
        if plots and ran_ok:
            from hpcsim.dynamics.plots import write_figures  # noqa: PLC0415 - matplotlib, only with figures

            write_summary(run_dir, summary)  # the figures read it
            summary["figures"] = [p.name for p in write_figures(run_dir, f0_hz=desc["f0_hz"]).values()]
        return summary

    return run_federation(study, run_dir, names, lambda broker_of: federate_configs(plan, broker_of), summarize,
                          total=plan.spec.ticks, show_progress=show_progress, description="dynamic co-simulation",
                          progress=_tick_progress)


def _tick_progress(p: dict) -> tuple[int, str]:
    return p["tick"], f"t = {p['t_s']:.1f} s"


def print_dynamic_summary(summary: dict) -> None:
    """One paragraph and the frequency / ACE statistics (Table I of the paper beside them when it applies)."""
    f, a, tm = summary["frequency"], summary["ace"], summary["timing"]
    emit_line(
        f"{summary['study']}: {summary['stop_s']:g} s simulated, {summary['n_der']} DERs, "
        f"AGC {'on' if summary['agc'] else 'off'}; wall {tm['wall_s']:.1f} s "
        f"({tm['sim_s_per_wall_s']:.1f} simulated s per wall s; transmission loop {tm['sim_s_per_loop_s']:.1f}); "
        f"ANDES {tm['andes_s']:.2f} s, OpenDSS {tm['opendss_solve_s'] + tm['opendss_vsm_s']:.2f} s, "
        f"LP {tm['lp_s']:.2f} s, coupling {tm['coupling_s']:.2f} s"
    )
    table = Table("frequency and ACE (this run | paper Table I)", ["", "mean", "std", "min", "max"])
    for label, block, fmt in (("frequency (Hz)", f, "{:.3f}"), ("ACE (MW)", a, "{:.3f}")):
        table.rows.append([label, *(f"{fmt.format(block[k])} | {fmt.format(block['paper'][k])}"
                                    for k in ("mean", "std", "min", "max"))])
    emit_table(table)
    for fd in summary["feeders"]:
        head = fd["headroom_mw"]["mean"]
        head_text = f"headroom mean {head:.3f} MW" if head is not None and head == head else "no DERs (no headroom)"
        co = fd.get("coordination")
        co_text = (f"; coordinated: {co['regulators_moved']} regulators and {co['fixed_taps_moved']} fixed taps moved"
                   if co else "")
        emit_line(f"bus {fd['bus']} {fd['feeder']}: scale {fd['scale']:.3f}, node voltages "
                  f"{fd['v_min_pu']:.4f}–{fd['v_max_pu']:.4f} pu (published feeder without DERs "
                  f"{fd['base_v_min_pu']:.4f}–{fd['base_v_max_pu']:.4f}{co_text}), {head_text}")
