"""The rendered job folder: golden files, determinism, shell quoting, configs.

Regenerate the golden files after an intended change with ``HPCSIM_UPDATE_GOLDEN=1 pytest tests/unit/test_slurm_render.py``
and review the diff.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from hpcsim.cases import CASES_DIR, PROJECT_ROOT
from hpcsim.errors import StudyError
from hpcsim.federation.layout import TRANSMISSION, build_layout, federate_configs, group_name
from hpcsim.hpc.jobdir import RUN_PLACEHOLDER, node_configs, render_job
from hpcsim.hpc.plan import Cluster, make_plan, study_shape
from hpcsim.study import load_study

pytestmark = pytest.mark.unit

GOLDEN = PROJECT_ROOT / "tests" / "golden" / "activsg200_ieee8500_4nodes"
UPDATE = os.environ.get("HPCSIM_UPDATE_GOLDEN") == "1"
CLUSTER = Cluster(nodes=4, cores_per_node=16, mem_per_node_gb=64, walltime="00:30:00", partition="compute",
                  account="hpcsim")
STUDY = CASES_DIR / "activsg200_ieee8500.toml"
ODD_NAME = "it's \"odd\" $(touch pwned) `id` name;\n& *"  # study names cannot hold / or \\


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    out = tmp_path_factory.mktemp("job")
    return out, render_job(load_study(STUDY), CLUSTER, out)


@pytest.mark.parametrize("name", ["job.sbatch", "plan.json"])
def test_rendering_matches_the_golden_file(rendered, name):
    out, _ = rendered
    text = (out / name).read_text()
    if UPDATE:
        GOLDEN.mkdir(parents=True, exist_ok=True)
        (GOLDEN / name).write_text(text)
    assert text == (GOLDEN / name).read_text(), f"{name} changed: HPCSIM_UPDATE_GOLDEN=1 regenerates, review the diff"


def test_rendering_is_deterministic_and_holds_no_machine_paths(rendered, tmp_path):
    out, _ = rendered
    again = tmp_path / "again"
    render_job(load_study(STUDY), CLUSTER, again)
    for name in ("job.sbatch", "plan.json"):
        text = (out / name).read_text()
        assert text == (again / name).read_text()
        for machine_path in (str(out), str(again), str(PROJECT_ROOT), sys.prefix, str(Path.home())):
            assert not re.search(re.escape(machine_path) + r"(?![\w-])", text), (name, machine_path)


def test_rendered_script_passes_bash_n_and_follows_the_plan(rendered):
    out, plan = rendered
    subprocess.run(["bash", "-n", str(out / "job.sbatch")], check=True)
    text = (out / "job.sbatch").read_text()
    assert "#SBATCH --nodes=4\n" in text and "#SBATCH --ntasks-per-node=16\n" in text
    assert "#SBATCH --partition=compute\n" in text and "#SBATCH --account=hpcsim\n" in text
    assert "RANKS_PER_NODE=(14 15 15 15)" in text and "RANKS=59\n" in text
    assert 'scontrol show hostnames "$SLURM_JOB_NODELIST"' in text
    assert text.count("srun --mpi=pmi2") == 1 and "wait -n" in text
    assert "tcp://" not in text, "broker addresses are computed at run time"


def test_configs_are_federate_configs_per_node(rendered):
    out, plan = rendered
    t = json.loads((out / "configs" / "transmission.json").read_text())
    assert t["role"] == TRANSMISSION and len(t["feeders"]) == 126 and t["run_dir"] == "run"
    names = []
    for node in plan.nodes:
        bundle = json.loads((out / "configs" / f"node_{node.index:03d}.json").read_text())
        assert bundle["role"] == "feeders" and len(bundle["feeders"]) == node.feeders
        assert {str(f["bus"]) for f in bundle["feeders"]} == set(bundle["v0"])
        names += [f["name"] for f in bundle["feeders"]]
    assert names == [f["name"] for f in t["feeders"]]
    assert (out / "boundary_map.txt").read_text().startswith("37,126\n")
    assert (out / "study.toml").read_text() == STUDY.read_text()


def test_node_bundles_equal_a_direct_federate_configs_call():
    study = load_study(STUDY)
    layout = build_layout(study)
    plan = make_plan(study_shape(study, layout.boundary), CLUSTER)
    transmission, bundles = node_configs(layout, plan)
    groups = tuple(layout.feeders[n.first_feeder:n.first_feeder + n.feeders] for n in plan.nodes)
    names = [TRANSMISSION] + [group_name(i) for i in range(len(groups))]
    direct = federate_configs(replace(layout, groups=groups), RUN_PLACEHOLDER, dict.fromkeys(names, ""), plan.network)
    assert transmission == direct[TRANSMISSION]
    assert bundles == [direct[group_name(i)] for i in range(len(groups))]


def _odd_study(tmp_path: Path) -> Path:
    text = STUDY.read_text().replace('name = "activsg200_ieee8500"', f"name = {json.dumps(ODD_NAME)}")
    text = text.replace('"../metadata/', f'"{PROJECT_ROOT}/metadata/')
    path = tmp_path / "odd.toml"
    path.write_text(text)
    return path


def test_a_study_name_with_quotes_spaces_and_command_substitution_is_quoted(tmp_path):
    study = load_study(_odd_study(tmp_path))
    assert study.name == ODD_NAME
    out = tmp_path / "job dir with 'quotes' and $(x)"
    render_job(study, replace(CLUSTER, nodes=1, cores_per_node=8), out)
    script = out / "job.sbatch"
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text()
    header = [line for line in text.splitlines() if line.startswith("#SBATCH --job-name=")]
    assert header == ["#SBATCH --job-name=hpcsim-it_s_odd_touch_pwned_id_name"]
    start = text.index("STUDY=")
    assignment = text[start:text.index("\nJOB_DIR=", start)]
    got = subprocess.run(["bash", "-c", assignment + '\nprintf %s "$STUDY"'], capture_output=True, text=True,
                         check=True).stdout
    assert got == ODD_NAME


def test_render_refuses_a_job_folder_that_has_run(tmp_path):
    (tmp_path / "run").mkdir()
    with pytest.raises(StudyError, match="has run"):
        render_job(load_study(STUDY), CLUSTER, tmp_path)
