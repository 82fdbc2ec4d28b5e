"""Local runner: one command starts the brokers and every federate as real processes on this machine, shows
progress, fails fast when any process fails, and writes the run folder.

Run folder (``--out``, default ``runs/<study>-<YYYYmmdd-HHMMSS-microseconds>/``)::

    study.toml  boundary_map.txt  run.json (the run's description)  runner.json (``helics run`` file)
    configs/<federate>.json (HELICS federate configs)  logs/*.log  outputs/<table>/federate=*/part-*.parquet
    errors/*.json (on failure)  progress.json  summary.json

The runner writes ``runner.json`` first and starts exactly the processes it lists, in the run folder, so
``helics run --path=<run>/runner.json`` re-runs the same federation.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from hpcsim import metadata
from hpcsim.console import Progress
from hpcsim.errors import FederateError, StudyError, raise_terminated
from hpcsim.federation.brokers import BrokerSpec, broker_binary, free_port_block
from hpcsim.federation.federate import recorded_failure
from hpcsim.federation.helics_config import Process, federate_process, runner_file, write_config
from hpcsim.federation.layout import build_layout, federate_configs, run_description, write_configs
from hpcsim.federation.liveness import DEFAULT_STALL_TIMEOUT_S, Liveness
from hpcsim.federation.processes import ProcessGroup
from hpcsim.federation.resume import prepare, resume_section
from hpcsim.output.summary import DESCRIPTION, build_run_summary, write_summary
from hpcsim.rundir import check_new_folder, create_folder, create_unique_folder
from hpcsim.study import Study, load_study

log = logging.getLogger(__name__)
POLL_S = 0.1
FEDERATE_MODULE = "hpcsim.federation.federate"  # every federate of every study kind: python -m FEDERATE_MODULE CFG
LIVENESS_PERIOD_S = 1.0  # how often the watchdog looks at the processes (psutil costs ~1 ms per process)


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


def broker_label(spec: BrokerSpec) -> str:
    """Process name of a broker: ``root_broker``, ``sub0_broker``, ... (its HELICS name without the run id)."""
    return spec.name.rsplit("_", 1)[0] + "_broker"


def federation_processes(hierarchy: Hierarchy, federates: list[str], module: str) -> list[Process]:
    """The brokers (the real binary, so a signal reaches the broker itself) and every federate as
    ``python -m MODULE configs/<name>.json``, all run in the run folder."""
    binary = broker_binary()
    brokers = [Process(broker_label(b), tuple(b.argv(binary))) for b in hierarchy.brokers]
    return brokers + [federate_process(n, module, f"configs/{n}.json") for n in federates]


def write_runner(run_dir: Path, name: str, processes: list[Process]) -> Path:
    return write_config(run_dir / "runner.json", runner_file(name, processes))


def start_federation(group: ProcessGroup, run_dir: Path, processes: list[Process]) -> None:
    """Start every process of the runner file, in order (brokers first), each in its directory."""
    for p in processes:
        env = {**os.environ, **dict(p.env)} if p.env else None
        group.start(p.name, list(p.argv), cwd=run_dir / p.directory, env=env)


def check_sub_brokers(sub_brokers: int, federates: int) -> None:
    """A sub-broker with no federate never completes the federation: refuse such a hierarchy up front."""
    if sub_brokers > federates:
        raise StudyError(f"--sub-brokers {sub_brokers}: only {federates} federates to spread over them "
                         f"(at most {federates} sub-brokers, each serving at least one)")


def prepare_run_dir(run_dir: Path | None, study: Study) -> Path:
    """Create the run folder (``--out``, checked before with :func:`hpcsim.rundir.check_new_folder`, or a new
    ``runs/<study>-<time>``) and copy the study into it; returns it."""
    run_dir = create_folder(run_dir) if run_dir is not None else create_unique_folder(Path("runs"), study.name)
    if study.source is not None:
        shutil.copyfile(study.source, run_dir / "study.toml")
    return run_dir



def run_study(study: Study, run_dir: Path | None = None, show_progress: bool = True,
              overrides: dict | None = None) -> dict:
    """Run a study on this machine; returns the summary (also written to ``<run_dir>/summary.json``; the
    returned copy also names the ``run_dir``). ``overrides``: the command-line settings already applied to
    ``study``, recorded in ``run.json`` so that ``--resume`` rebuilds the same study."""
    out = check_new_folder(Path(run_dir)) if run_dir is not None else None
    layout = build_layout(study)
    check_sub_brokers(study.sub_brokers, len(layout.federate_names))
    run_dir = prepare_run_dir(out, study)
    metadata.write(layout.boundary, run_dir / "boundary_map.txt")
    desc = run_description(layout, sub_brokers=study.sub_brokers,
                           study_source=str(study.source) if study.source else None, overrides=overrides or {})
    write_config(run_dir / DESCRIPTION, desc)
    return _run_federation(study, layout, run_dir, desc, show_progress)


def resume_study(run_dir: Path, show_progress: bool = True) -> dict:
    """Continue a killed QSTS run from its last completed step (:mod:`hpcsim.federation.resume`) in the same
    folder; returns the summary of the whole run."""
    run_dir = Path(run_dir).resolve()
    try:
        desc = json.loads((run_dir / DESCRIPTION).read_text())
    except FileNotFoundError:
        raise StudyError(f"--resume {run_dir}: not a run folder (no {DESCRIPTION})") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise StudyError(f"--resume {run_dir}: unreadable {DESCRIPTION}: {exc}") from None
    if desc.get("kind") != "steady":
        raise StudyError(f"--resume {run_dir}: only steady-state runs (snapshot, QSTS) can be resumed so far")
    source = desc.get("study_source")
    if not source:
        raise StudyError(f"--resume {run_dir}: the run does not record its study file (made before --resume)")
    copy = run_dir / "study.toml"
    try:
        same = Path(source).read_bytes() == copy.read_bytes()
    except OSError as exc:
        raise StudyError(f"--resume {run_dir}: cannot read the study {source}: {exc.strerror}") from None
    if not same:
        raise StudyError(f"--resume {run_dir}: {source} changed since the run (it differs from {copy})")
    study = load_study(source).with_overrides(**desc.get("overrides", {}))
    layout = build_layout(study)
    k, carried = prepare(run_dir, layout.federate_names, [f.name for f in layout.feeders], study.n_steps)
    log.info("%s: resuming at step %d of %d", run_dir, k + 1, study.n_steps)
    return _run_federation(study, layout, run_dir, desc, show_progress, resume=(k, carried) if k else None)


def _with_resume(configs: dict[str, dict], from_step: int, carried: dict[str, dict]) -> dict[str, dict]:
    """Each federate's config with what it carries into step ``from_step`` (its feeders' states)."""
    for doc in configs.values():
        role = doc["hpcsim"]
        role["resume"] = resume_section(role, from_step, carried)
    return configs


def _run_federation(study: Study, layout, run_dir: Path, desc: dict, show_progress: bool,
                    resume: tuple[int, dict] | None = None) -> dict:
    """Run the steady-state federation of ``layout`` in ``run_dir`` (from step ``resume[0]`` with its carried
    state, if given) and write the summary."""

    def configs_of(broker_of: dict[str, str]) -> dict[str, dict]:
        configs = federate_configs(layout, broker_of)
        return _with_resume(configs, *resume) if resume is not None else configs

    def summarize(ran_ok: bool, wall_s: float, peak_mb: float) -> dict:
        return build_run_summary(run_dir, desc, layout.boundary, ran_ok=ran_ok, wall_s=wall_s, peak_rss_mb=peak_mb)

    log.info("%s: %d boundary buses, %d feeders in %d groups, %s coupling, %d step(s) -> %s",
             study.name, layout.boundary.n_buses, len(layout.feeders), len(layout.groups), study.coupling,
             study.n_steps, run_dir)
    summary = run_federation(study, run_dir, layout.federate_names, configs_of, summarize, total=study.n_steps,
                             show_progress=show_progress)
    if summary.get("problems"):  # reached only when every federate ended well (a failure raises)
        log.warning("%s: the federates ended well but the outputs do not show a converged run: %s", run_dir,
                    "; ".join(summary["problems"]))
    return summary | {"run_dir": str(run_dir)} if summary else summary


def run_federation(study: Study, run_dir: Path, names: list[str], configs_of, summarize, *, total: int,
                   show_progress: bool, description: str = "co-simulation", progress=None) -> dict:
    """The one local runner of every study kind: brokers (flat, or ``study.sub_brokers`` sub-brokers) and the
    federates ``names`` as real processes in ``run_dir`` (``configs_of(broker_of)`` gives their config files,
    ``runner.json`` lists the processes), watched to the end (``total`` units of ``progress.json`` on the bar);
    ``summarize(ran_ok, wall_s, peak_rss_mb)`` builds the summary, written in a ``finally`` so a failed run
    still describes itself. Returns the summary (empty if it could not be built); a failure raises."""
    run_id = f"{int(time.time() * 1000) % 10**9}"
    hierarchy = local_hierarchy(names, study.sub_brokers, run_id)
    write_configs(configs_of(hierarchy.broker_of), run_dir)
    processes = federation_processes(hierarchy, names, FEDERATE_MODULE)
    write_runner(run_dir, study.name, processes)
    old_term = signal.signal(signal.SIGTERM, raise_terminated)
    t_start = time.perf_counter()
    peak = {"rss_mb": 0.0}
    ran_ok = False
    try:
        with ProcessGroup(run_dir / "logs") as group:
            start_federation(group, run_dir, processes)
            watch(group, names, run_dir, total, show_progress, peak, description, progress or _step_progress,
                  stall_timeout_s=study.stall_timeout_s)
            ran_ok = True
            brokers = [n for n in group.procs if n.endswith("_broker")]
            if not group.wait(brokers, timeout_s=10.0):
                log.warning("broker still running 10 s after the federates finished; stopping it")
            log.debug("exit codes: %s", {n: p.returncode for n, p in group.procs.items()})
    finally:
        signal.signal(signal.SIGTERM, old_term)
        try:
            summary = summarize(ran_ok, time.perf_counter() - t_start, peak["rss_mb"])
            write_summary(run_dir, summary)
        except Exception as exc:  # noqa: BLE001 - never mask the run's own outcome
            log.warning("could not write %s: %s", run_dir / "summary.json", exc)
            summary = {}
    return summary


def _step_progress(p: dict) -> tuple[int, str]:
    fmt = lambda x: "–" if x is None else f"{x:.1e}"  # noqa: E731
    return p["step"], f"{p['iterations']} it, dV {fmt(p['dv_pu'])} pu, dS {fmt(p['ds_pu'])} pu"


def watch(group: ProcessGroup, names: list[str], run_dir: Path, total: int, show: bool, peak: dict,
          description: str = "co-simulation", progress=_step_progress,
          stall_timeout_s: float = DEFAULT_STALL_TIMEOUT_S) -> None:
    """Poll until every federate exits 0; raise the recorded cause on the first failure, or a
    :class:`FederateError` when the federation stalls (:mod:`hpcsim.federation.liveness`). Tracks the peak total
    RSS in ``peak``; ``progress`` turns ``<run>/progress.json`` into (completed, text) for the bar."""
    progress_file = run_dir / "progress.json"

    def sample() -> None:
        peak["rss_mb"] = max(peak["rss_mb"], group.rss_mb())

    def show_progress() -> None:
        try:
            completed, info = progress(json.loads(progress_file.read_text()))
        except FileNotFoundError:
            completed, info = 0, "starting"  # a heartbeat while the first step's first solves run
        except (OSError, json.JSONDecodeError, KeyError, TypeError):
            completed, info = None, ""
        if completed is not None:
            bar.update(completed, info)

    with Progress(description, total, show) as bar:
        wait_for_federates(group, names, run_dir, liveness=Liveness(progress_file, stall_timeout_s),
                           before_check=sample, while_running=show_progress)
        bar.update(total, "done")
    if names[0] not in group.procs:
        raise FederateError(f"no {names[0]} federate was started")


def wait_for_federates(group: ProcessGroup, names: list[str], run_dir: Path, *, liveness: Liveness | None = None,
                       timeout_s: float | None = None, what: str = "federation", poll_s: float = POLL_S,
                       before_check=None, while_running=None) -> None:
    """The wait of every local launch (``hpcsim run``, the exchange benchmark): poll until the federates ``names``
    have all exited; on the first non-zero exit of one of them or of a broker, give the others 0.3 s to record
    whether they were the cause and raise :func:`recorded_failure`'s error. ``liveness`` (checked every
    ``LIVENESS_PERIOD_S``) raises a :class:`FederateError` when the federation stalls, ``timeout_s`` when it is
    still running after that long. ``before_check()`` runs at every poll, ``while_running()`` at every poll that
    finds a federate still running."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    next_check = time.monotonic() + LIVENESS_PERIOD_S
    while True:
        if liveness is not None and time.monotonic() >= next_check:
            next_check = time.monotonic() + LIVENESS_PERIOD_S
            cause = liveness.check({n: p.pid for n, p in group.procs.items() if p.poll() is None})
            if cause:
                raise FederateError(cause)
        if before_check is not None:
            before_check()
        failed = [(n, c) for n, c in group.failed() if n in names or n.endswith("_broker")]
        if failed:
            time.sleep(0.3)  # let the other federates record whether they were the cause
            raise recorded_failure(run_dir, group.failed())
        if not group.running(names):
            return
        if deadline is not None and time.monotonic() > deadline:
            raise FederateError(f"{what}: {', '.join(group.running(names))} still running after {timeout_s:g} s "
                                f"(logs in {run_dir / 'logs'})")
        if while_running is not None:
            while_running()
        time.sleep(poll_s)
