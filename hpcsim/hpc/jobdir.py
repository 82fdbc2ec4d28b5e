"""``hpcsim jobs render``: a job folder from a study, a cluster and the site's additions.

::

    DIR/job.sbatch            the batch script (jobs/templates/slurm.sbatch filled in by hpcsim.hpc.slurm)
    DIR/plan.json             the placement plan (nodes, ranks, brokers, ports, estimates) the job runs from
    DIR/run.json              the run's description (the summary's static part), copied into DIR/run/
    DIR/study.toml            copy of the study file; DIR/boundary_map.txt  its boundary map (steady studies)
    DIR/configs/transmission.json, DIR/configs/node_NNN.json
                              role settings (hpcsim.federation.layout.role_configs): the transmission
                              federate's, and one bundle per node holding the feeders of that node's ranks;
                              a dynamic study (hpcsim.dynamics.plan.role_configs) also has configs/agc.json,
                              and its bundles hold one feeder federate per rank
    DIR/rendered.json         what was rendered: every file above with its SHA-256
    DIR/run/                  created by the job: the same layout as ``hpcsim run`` (configs, logs, outputs,
                              summary.json, runner.json)

One bundle per node, not one config per rank: ACTIVSg70k on 512 nodes has ~60,000 ranks, and 60,000 small files
are slow to write and hard on a shared file system's metadata server; a rank cuts its feeders out of its node's
bundle at start (:func:`hpcsim.hpc.rank.feeder_config`). Addresses and ports are found at run time. Configs are
pretty-printed and name cases and feeders (no paths into the project); the one machine path is the Python
that rendered the job, the script's default ``$HPCSIM_PYTHON``.

Re-rendering into a folder is allowed only over an unedited rendering (``rendered.json`` says what was
written): a file edited or deleted since is named and the render refused unless ``force``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from hpcsim import __version__
from hpcsim.console import to_json
from hpcsim.dynamics.summary import describe_run
from hpcsim.errors import StudyError
from hpcsim.federation.layout import TRANSMISSION, build_layout, group_name, role_configs, run_description
from hpcsim.hpc import MEM_MARGIN
from hpcsim.hpc.costs import DEFAULT, CostModel
from hpcsim.hpc.plan import Cluster, Plan, make_plan, study_shape
from hpcsim.hpc.rank import bundle_name, cut_bundle
from hpcsim.hpc.slurm import render_script
from hpcsim.output.summary import DESCRIPTION
from hpcsim.study import Study

if TYPE_CHECKING:
    from hpcsim.federation.layout import Layout

log = logging.getLogger(__name__)
MANIFEST = "rendered.json"


@dataclass(frozen=True)
class Site:
    """What a site adds to a job: the Python to default to, a prologue (module loads, venv activation,
    environment), extra ``#SBATCH`` directives, the memory margin over the plan's prediction, and the MPI
    launcher of the feeder step (``pmi2``, ``pmix`` or ``none`` for MPICH's mpiexec)."""

    python: str = sys.executable
    prologue: Path | None = None
    directives: tuple[str, ...] = ()
    mem_margin: float = MEM_MARGIN
    mpi: str = "pmi2"
    requeue_before_s: int = 0  # > 0: the job requeues itself this long before its wall time, then resumes

    def prologue_text(self) -> str:
        if self.prologue is None:
            return ""
        try:
            text = self.prologue.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise StudyError(f"--prologue {self.prologue}: cannot read it as text: {exc}") from None
        if "\0" in text:
            raise StudyError(f"--prologue {self.prologue}: holds NUL bytes, not a shell script")
        return text


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def node_configs(layout: Layout, plan: Plan) -> tuple[dict, list[dict]]:
    """(transmission config, one feeder bundle per node) — what ``federate_configs`` gives for a layout whose
    groups are the plan's nodes.

    ``federate_configs`` is called once, on a layout whose single group holds every feeder, and the node
    bundles are cut from that group (as ranks cut theirs), with the transmission federate's feeder list taken
    from it too: ``dataclasses.asdict`` costs ~6 µs per feeder and per config, 0.7 s for ACTIVSg70k if every
    feeder went through it twice. A unit test checks the result equals the direct call.
    """
    whole = replace(layout, feeders=(), groups=(layout.feeders,))
    configs = role_configs(whole)
    every = {**configs[group_name(0)], "name": group_name(0)}
    transmission = {**configs[TRANSMISSION], "feeders": every["feeders"]}
    bundles = [cut_bundle(every, 0, n.first_feeder, n.first_feeder + n.feeders, group_name(n.index))
               for n in plan.nodes]
    return transmission, bundles


def job_files(study: Study, cluster: Cluster, model: CostModel = DEFAULT, site: Site = Site()
              ) -> tuple[Plan, dict[str, bytes]]:
    """The plan and every file of the job folder (relative path -> content), nothing written."""
    if not 0 <= site.mem_margin <= 10:
        raise StudyError(f"--mem-margin {site.mem_margin:g} must be between 0 and 10 (a share of the prediction)")
    text = lambda obj: (to_json(obj) + "\n").encode()  # noqa: E731
    if study.dynamics is not None:
        plan, files = _dynamic_files(study, cluster, model, text)
    else:
        layout = build_layout(study)
        plan = make_plan(study_shape(study, layout.boundary), cluster, model)
        layout = replace(layout, engine_mode=plan.engine_mode)  # the plan decides by node memory, not this machine's
        transmission, bundles = node_configs(layout, plan)
        files = {"configs/transmission.json": text(transmission)}
        files.update({f"configs/{bundle_name(i)}.json": text(b) for i, b in enumerate(bundles)})
        files[DESCRIPTION] = text(run_description(layout, workers=plan.ranks, sub_brokers=len(plan.nodes)))
        files["boundary_map.txt"] = layout.boundary.to_text().encode()
    files["plan.json"] = text(plan.to_dict())
    prologue = site.prologue_text()
    files["job.sbatch"] = render_script(plan, python=site.python, prologue=prologue,
                                        prologue_name=site.prologue.name if site.prologue else "",
                                        directives=site.directives, mem_margin=site.mem_margin,
                                        mpi=site.mpi, requeue_before_s=site.requeue_before_s).encode()
    files["study.toml"] = (study.source.read_bytes() if study.source is not None
                           else f"# study {study.name!r} was not read from a file\n".encode())
    return plan, files


def _dynamic_files(study: Study, cluster: Cluster, model: CostModel, text) -> tuple[Plan, dict[str, bytes]]:
    """The plan and the configs of a dynamic study's job: the transmission (TDS) and AGC federates' role
    settings, and one bundle per node holding the role settings of that node's feeder federates (one per rank,
    in the study's feeder order). The dynamic plan (feeder scales, coordination, seeded series) is computed
    here, once, as ``hpcsim run`` computes it."""
    from hpcsim.dynamics.plan import (  # noqa: PLC0415 - SciPy only for a dynamic study's job
        AGC, TRANSMISSION, build_plan, feeder_federate, role_configs,
    )
    plan = make_plan(study_shape(study), cluster, model)
    dplan = build_plan(study)
    roles = role_configs(dplan)
    feeders = [{**roles[feeder_federate(f.bus)], "name": feeder_federate(f.bus)} for f in dplan.feeders]
    files = {"configs/transmission.json": text({**roles[TRANSMISSION], "name": TRANSMISSION}),
             f"configs/{AGC}.json": text({**roles[AGC], "name": AGC})}
    for n in plan.nodes:
        bundle = {"name": bundle_name(n.index), "feeders": feeders[n.first_feeder:n.first_feeder + n.feeders]}
        files[f"configs/{bundle_name(n.index)}.json"] = text(bundle)
    desc = describe_run(dplan) | {"workers": plan.ranks, "sub_brokers": len(plan.nodes)}
    files[DESCRIPTION] = text(desc)
    return plan, files


def _previous(out_dir: Path, force: bool) -> list[str]:
    """Files of the previous rendering in ``out_dir`` (to replace); refuses a folder that is not an unedited
    rendering of hpcsim's unless ``force``."""
    if out_dir.exists() and not out_dir.is_dir():
        raise StudyError(f"-o {out_dir}: exists and is not a folder")
    if (out_dir / "run").exists():
        raise StudyError(f"{out_dir / 'run'} exists: {out_dir} holds a job that has run; render into a new folder")
    if not out_dir.is_dir() or not any(out_dir.iterdir()):
        return []
    try:
        listed = json.loads((out_dir / MANIFEST).read_text())["files"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError):
        if force:
            return []
        raise StudyError(f"{out_dir} is not empty and holds no readable {MANIFEST} (not a job folder hpcsim "
                         "rendered): render into a new folder, or give --force to write over it") from None
    if not force:
        for rel, digest in listed.items():
            path = out_dir / rel
            if not path.is_file():
                raise StudyError(f"{path} was deleted since it was rendered: give --force to render over it")
            if _sha256(path.read_bytes()) != digest:
                raise StudyError(f"{path} was edited since it was rendered: keep your edit (render into a new "
                                 "folder), or give --force to overwrite it")
    return list(listed)


def render_job(study: Study, cluster: Cluster, out_dir: Path, model: CostModel = DEFAULT, site: Site = Site(),
               force: bool = False) -> Plan:
    """Plan ``study`` on ``cluster`` and write the job folder ``out_dir`` (see the module docstring)."""
    plan, files = job_files(study, cluster, model, site)
    previous = _previous(out_dir, force)
    for rel in previous:
        if rel not in files:
            (out_dir / rel).unlink(missing_ok=True)  # e.g. node bundles of a plan with more nodes
    for rel, data in files.items():
        _write(out_dir / rel, data)
    manifest = {"rendered_by": f"hpcsim {__version__}", "files": {rel: _sha256(d) for rel, d in files.items()}}
    _write(out_dir / MANIFEST, (to_json(manifest) + "\n").encode())
    log.info("%s: %d node(s), %d feeder ranks, %d feeders -> %s", study.name, len(plan.nodes), plan.ranks,
             plan.study.n_feeders, out_dir)
    return plan


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
