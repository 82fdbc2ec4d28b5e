"""``hpcsim jobs render``: a job folder from a study and a cluster.

::

    DIR/job.sbatch            the batch script (hpcsim.hpc.slurm.render_script)
    DIR/plan.json             the placement plan (nodes, ranks, brokers, ports, estimates) the job runs from
    DIR/study.toml            copy of the study file; DIR/boundary_map.txt  its boundary map
    DIR/configs/transmission.json, DIR/configs/node_NNN.json
                              federate configs from hpcsim.federation.layout.federate_configs: the transmission
                              federate's, and one bundle per node holding the feeders of that node's ranks
    DIR/run/                  created by the job: the same layout as ``hpcsim run`` (configs, logs, outputs,
                              summary.json)

One bundle per node, not one config per rank: ACTIVSg70k on 512 nodes has ~60,000 ranks, and 60,000 small files
are slow to write and hard on a shared file system's metadata server; a rank cuts its feeders out of its node's
bundle at start (:func:`hpcsim.hpc.rank.feeder_config`). Addresses and the run folder are filled in at run time.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from hpcsim import metadata
from hpcsim.errors import StudyError
from hpcsim.hpc.costs import DEFAULT, CostModel
from hpcsim.hpc.plan import Cluster, Plan, make_plan, study_shape
from hpcsim.hpc.rank import bundle_name, cut_bundle
from hpcsim.hpc.slurm import render_script
from hpcsim.study import Study

if TYPE_CHECKING:
    from hpcsim.federation.layout import Layout

log = logging.getLogger(__name__)
RUN_PLACEHOLDER = Path("run")  # configs get the real run folder when the job starts


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def node_configs(layout: Layout, plan: Plan) -> tuple[dict, list[dict]]:
    """(transmission config, one feeder bundle per node) — what ``federate_configs`` gives for a layout whose
    groups are the plan's nodes.

    ``federate_configs`` is called once, on a layout whose single group holds every feeder, and the node
    bundles are cut from that group (as ranks cut theirs), with the transmission federate's feeder list taken
    from it too: ``dataclasses.asdict`` costs ~6 µs per feeder and per config, 0.7 s for ACTIVSg70k if every
    feeder went through it twice. A unit test checks the result equals the direct call.
    """
    from hpcsim.federation.layout import TRANSMISSION, federate_configs, group_name  # noqa: PLC0415

    whole = replace(layout, feeders=(), groups=(layout.feeders,))
    configs = federate_configs(whole, RUN_PLACEHOLDER, {TRANSMISSION: "", group_name(0): ""}, plan.network)
    every = configs[group_name(0)]
    transmission = {**configs[TRANSMISSION], "feeders": every["feeders"]}
    bundles = [cut_bundle(every, 0, n.first_feeder, n.first_feeder + n.feeders, group_name(n.index))
               for n in plan.nodes]
    return transmission, bundles


def render_job(study: Study, cluster: Cluster, out_dir: Path, model: CostModel = DEFAULT) -> Plan:
    """Plan ``study`` on ``cluster`` and write the job folder ``out_dir``; returns the plan."""
    from hpcsim.federation.layout import build_layout  # noqa: PLC0415

    if (out_dir / "run").exists():
        raise StudyError(f"{out_dir / 'run'} exists: {out_dir} holds a job that has run; render into a new folder")
    layout = build_layout(study)
    plan = make_plan(study_shape(study, layout.boundary), cluster, model)
    layout = replace(layout, engine_mode=plan.engine_mode)  # the plan decides by node memory, not this machine's
    transmission, bundles = node_configs(layout, plan)

    folder = out_dir / "configs"
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("node_*.json"):
        stale.unlink()
    compact = {"separators": (",", ":")}
    _write(folder / "transmission.json", json.dumps(transmission, **compact))
    for i, bundle in enumerate(bundles):
        _write(folder / f"{bundle_name(i)}.json", json.dumps(bundle, **compact))
    _write(out_dir / "plan.json", json.dumps(plan.to_dict(), indent=1) + "\n")
    _write(out_dir / "job.sbatch", render_script(plan))
    if study.source is not None:
        shutil.copyfile(study.source, out_dir / "study.toml")
    else:
        _write(out_dir / "study.toml", f"# study {study.name!r} was not read from a file\n")
    metadata.write(layout.boundary, out_dir / "boundary_map.txt")
    log.info("%s: %d node(s), %d feeder ranks, %d feeders -> %s", study.name, len(plan.nodes), plan.ranks,
             len(layout.feeders), out_dir)
    return plan
