"""Local runner: one command starts the brokers and every federate as real processes on this machine, shows
progress, fails fast when any process fails, and writes the run folder.

Run folder (``--out``, default ``runs/<study>-<timestamp>/``)::

    study.toml  boundary_map.txt  configs/*.json  logs/*.log  outputs/<table>/federate=*/part-*.parquet
    errors/*.json (on failure)  progress.json  summary.json
"""

from __future__ import annotations

import json
import logging
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from hpcsim import metadata
from hpcsim.errors import FederateError, StudyError
from hpcsim.federation.brokers import BrokerSpec, broker_binary, free_port_block
from hpcsim.federation.federate import recorded_failure
from hpcsim.federation.layout import Layout, build_layout, federate_configs, write_configs
from hpcsim.federation.processes import ProcessGroup
from hpcsim.output.summary import build_run_summary, write_summary
from hpcsim.study import Study

log = logging.getLogger(__name__)
POLL_S = 0.1


@dataclass(frozen=True)
class Hierarchy:
    """Brokers and which broker each federate talks to."""

    brokers: tuple[BrokerSpec, ...]
    broker_of: dict[str, str]


def local_hierarchy(federates: list[str], sub_brokers: int, run_id: str) -> Hierarchy:
    """Flat (one root broker) or root + ``sub_brokers`` sub-brokers with federates spread round-robin
    (the transmission federate on the first sub-broker, as on node 0 of a cluster)."""
    root = BrokerSpec(name=f"root_{run_id}", federates=len(federates), port=free_port_block(2),
                      sub_brokers=sub_brokers)
    if sub_brokers == 0:
        return Hierarchy((root,), {f: root.address for f in federates})
    assign = {f: i % sub_brokers for i, f in enumerate(federates)}
    subs = []
    for s in range(sub_brokers):
        n = sum(1 for v in assign.values() if v == s)
        subs.append(BrokerSpec(name=f"sub{s}_{run_id}", federates=n, port=free_port_block(2), parent=root.address))
    return Hierarchy((root, *subs), {f: subs[s].address for f, s in assign.items()})


def start_federation(group: ProcessGroup, hierarchy: Hierarchy, configs: dict[str, Path], module: str) -> None:
    """Start the brokers (the real binary), then each federate as ``python -m MODULE CONFIG``."""
    binary = broker_binary()
    for b in hierarchy.brokers:
        group.start(b.name.rsplit("_", 1)[0] + "_broker", b.argv(binary))
    for name, path in configs.items():
        group.start(name, [sys.executable, "-m", module, str(path)])


def default_run_dir(study: Study) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{study.name}-{stamp}"


def _prepare_run_dir(run_dir: Path, study: Study, layout: Layout) -> None:
    if run_dir.exists() and any(run_dir.iterdir()):
        raise StudyError(f"output folder {run_dir} exists and is not empty")
    run_dir.mkdir(parents=True, exist_ok=True)
    if study.source is not None:
        shutil.copyfile(study.source, run_dir / "study.toml")
    metadata.write(layout.boundary, run_dir / "boundary_map.txt")


def _raise_on_term(signum, frame):  # noqa: ARG001
    raise KeyboardInterrupt


def run_study(study: Study, run_dir: Path | None = None, show_progress: bool = True) -> dict:
    """Run a study on this machine; returns the summary (also written to ``<run_dir>/summary.json``)."""
    layout = build_layout(study)
    run_dir = Path(run_dir or default_run_dir(study)).resolve()
    _prepare_run_dir(run_dir, study, layout)
    names = layout.federate_names
    run_id = f"{int(time.time() * 1000) % 10**9}"
    hierarchy = local_hierarchy(names, study.sub_brokers, run_id)
    configs = federate_configs(layout, run_dir, hierarchy.broker_of)
    paths = write_configs(configs, run_dir)
    (run_dir / "configs" / "brokers.json").write_text(json.dumps(
        [{"name": b.name, "argv": b.argv(loglevel="warning")} for b in hierarchy.brokers], indent=1))
    log.info("%s: %d boundary buses, %d feeders in %d groups, %s coupling, %d step(s) -> %s",
             study.name, layout.boundary.n_buses, len(layout.feeders), len(layout.groups), study.coupling,
             len(study.times_s), run_dir)

    old_term = signal.signal(signal.SIGTERM, _raise_on_term)
    t_start = time.perf_counter()
    peak = {"rss_mb": 0.0}
    converged = False
    try:
        with ProcessGroup(run_dir / "logs") as group:
            start_federation(group, hierarchy, {n: paths[n] for n in names}, "hpcsim.federation.federate")
            watch(group, names, run_dir, len(study.times_s), show_progress, peak)
            converged = True
            brokers = [n for n in group.procs if n.endswith("_broker")]
            if not group.wait(brokers, timeout_s=10.0):
                log.warning("broker still running 10 s after the federates finished; stopping it")
            log.debug("exit codes: %s", {n: p.returncode for n, p in group.procs.items()})
    finally:
        signal.signal(signal.SIGTERM, old_term)
        wall_s = time.perf_counter() - t_start
        try:
            summary = build_run_summary(
                run_dir, study=study.name, coupling=study.coupling, case=study.case, model=str(study.feeder),
                scale_mode=study.scale_mode, boundary=layout.boundary, converged=converged, wall_s=wall_s,
                peak_rss_mb=peak["rss_mb"], workers=len(layout.groups), sub_brokers=study.sub_brokers,
                extra={"engine_mode": layout.engine_mode, "clone_load": study.clone_load,
                       "boundary_pd_mw": sum(f.p0_mw * f.weight for f in layout.feeders)},
            )
            write_summary(run_dir, summary)
        except Exception as exc:  # noqa: BLE001 - never mask the run's own outcome
            log.warning("could not write %s: %s", run_dir / "summary.json", exc)
            summary = {}
    return summary


def _step_progress(p: dict) -> tuple[int, str]:
    return p["step"], f"{p['iterations']} it, mismatch {p['mismatch']:.1e}"


def watch(group: ProcessGroup, names: list[str], run_dir: Path, total: int, show: bool, peak: dict,
          description: str = "co-simulation", progress=_step_progress) -> None:
    """Poll until every federate exits 0; raise the recorded cause on the first failure. Tracks the peak total
    RSS in ``peak``; ``progress`` turns ``<run>/progress.json`` into (completed, text) for the bar."""
    progress_file = run_dir / "progress.json"
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TextColumn("{task.fields[info]}"), TimeElapsedColumn(), disable=not show, transient=False) as bar:
        task = bar.add_task(description, total=total, info="starting")
        while True:
            peak["rss_mb"] = max(peak["rss_mb"], group.rss_mb())
            failed = [(n, c) for n, c in group.failed() if n in names or n.endswith("_broker")]
            if failed:
                time.sleep(0.3)  # let the other federates record whether they were the cause
                raise recorded_failure(run_dir, group.failed())
            if not group.running(names):
                break
            try:
                completed, info = progress(json.loads(progress_file.read_text()))
                bar.update(task, completed=completed, info=info)
            except (OSError, json.JSONDecodeError, KeyError):
                pass
            time.sleep(POLL_S)
        bar.update(task, completed=total, info="done")
    if names[0] not in group.procs:
        raise FederateError(f"no {names[0]} federate was started")
