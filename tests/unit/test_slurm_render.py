"""The rendered job folder: no machine paths, the plan in the script, the site's prologue and directives,
the memory request, visible broker command lines, shell quoting, configs, and re-rendering over an edited
folder. (Byte-for-byte golden files: ``jobs/examples/``, tests/unit/test_job_examples.py.)"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from hpcsim.cases import CASES_DIR, PROJECT_ROOT
from hpcsim.cli import main
from hpcsim.errors import StudyError
from hpcsim.federation.layout import TRANSMISSION, build_layout, group_name, role_configs
from hpcsim.hpc.jobdir import MANIFEST, Site, node_configs, render_job
from hpcsim.hpc.plan import Cluster, broker_ports, make_plan, study_shape
from hpcsim.study import load_study

pytestmark = pytest.mark.unit

CLUSTER = Cluster(nodes=4, cores_per_node=16, mem_per_node_gb=64, walltime="00:30:00", partition="compute",
                  account="hpcsim")
STUDY = CASES_DIR / "activsg200_ieee8500.toml"
PROLOGUE = PROJECT_ROOT / "jobs" / "examples" / "site-prologue.sh"
SITE = Site(prologue=PROLOGUE, directives=("--qos=high", "--mail-type=FAIL"))
ODD_NAME = "it's \"odd\" $(touch pwned) `id` name;\n& *"  # study names cannot hold / or \\


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    out = tmp_path_factory.mktemp("job")
    return out, render_job(load_study(STUDY), CLUSTER, out, site=SITE)


def test_rendering_is_deterministic_and_the_only_machine_path_is_the_default_python(rendered, tmp_path):
    out, _ = rendered
    again = tmp_path / "again"
    render_job(load_study(STUDY), CLUSTER, again, site=SITE)
    files = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert [str(f) for f in files] == sorted(["boundary_map.txt", "configs/node_000.json", "configs/node_001.json",
                                              "configs/node_002.json", "configs/node_003.json",
                                              "configs/transmission.json", "job.sbatch", "plan.json",
                                              MANIFEST, "run.json", "study.toml"])
    script = (out / "job.sbatch").read_text()
    assert f"PYTHON=${{HPCSIM_PYTHON:-{sys.executable}}}\n" in script  # the Python that rendered it
    for rel in files:
        text = (out / rel).read_text()
        assert text == (again / rel).read_text(), rel
        if rel.name == "job.sbatch":
            text = text.replace(sys.executable, "")
        for machine_path in (str(out), str(again), str(PROJECT_ROOT), sys.prefix, str(Path.home())):
            assert not re.search(re.escape(machine_path) + r"(?![\w-])", text), (rel, machine_path)


def test_rendered_script_passes_bash_n_and_follows_the_plan(rendered):
    out, plan = rendered
    subprocess.run(["bash", "-n", str(out / "job.sbatch")], check=True)
    text = (out / "job.sbatch").read_text()
    assert "#SBATCH --nodes=4\n" in text and "#SBATCH --ntasks-per-node=16\n" in text
    assert "#SBATCH --partition=compute\n" in text and "#SBATCH --account=hpcsim\n" in text
    assert "RANKS_PER_NODE=(14 15 15 15)" in text and "RANKS=59\n" in text
    assert "ROOT_FEDERATES=60\n" in text and "SUB_FEDERATES=(15 15 15 15)\n" in text
    assert 'scontrol show hostnames "$SLURM_JOB_NODELIST"' in text and "NodeAddr=" in text
    assert text.count("srun --mpi=pmi2") == 1 and "wait -n" in text
    assert "tcp://127" not in text, "addresses come from SLURM at run time"


def test_broker_command_lines_are_spelled_out_in_the_script(rendered):
    text = (rendered[0] / "job.sbatch").read_text()
    root = text[text.index("ROOT_BROKER=("):text.index("record root_broker")]
    assert '"$HELICS_BROKER" -t zmq -f "$ROOT_FEDERATES" --subbrokers="${#NODES[@]}"' in root
    assert '--port="$ROOT_PORT"' in root and '"$(bind 0)"' in root
    sub = text[text.index("SUB_BROKER=("):text.index('record "sub${i}_broker"')]
    assert '--broker_address="tcp://${ADDRS[0]}:$ROOT_PORT"' in sub and '--localport="$SUB_PORT"' in sub
    assert 'echo "--local_interface=tcp://${ADDRS[$1]}"' in text  # every broker binds its own node's address
    assert "hpcsim.hpc.rank" in text and "root-broker" not in text


def test_the_script_computes_the_ports_the_plan_documents(rendered):
    out, plan = rendered
    text = (out / "job.sbatch").read_text()
    lines = [line for line in text.splitlines() if line.startswith(("ROOT_PORT=", "SUB_PORT="))]
    for job_id in (1, 1999, 2000, 123457):
        for restart in (None, 0, 1, 5):
            env = f"SLURM_JOB_ID={job_id}\n" + ("" if restart is None else f"SLURM_RESTART_COUNT={restart}\n")
            got = subprocess.run(["bash", "-c", env + "\n".join(lines) + '\necho "$ROOT_PORT $SUB_PORT"'],
                                 capture_output=True, text=True, check=True).stdout
            assert tuple(map(int, got.split())) == broker_ports(plan.ports, job_id, restart or 0)
    assert broker_ports(plan.ports, 7, 1) != broker_ports(plan.ports, 7, 0)


def test_site_prologue_and_directives_are_in_the_script_in_order(rendered):
    text = (rendered[0] / "job.sbatch").read_text()
    lines = text.splitlines()
    directives = [line for line in lines if line.startswith("#SBATCH ")]
    assert directives[-2:] == ["#SBATCH --qos=high", "#SBATCH --mail-type=FAIL"]  # after hpcsim's: they win
    start = text.index("# --- site prologue (--prologue site-prologue.sh) ---\n")
    end = text.index("# --- end of the site prologue ---\n")
    assert text[start:end].endswith(PROLOGUE.read_text())
    assert text.index("set -uo pipefail") < start < text.index("STUDY=")


@pytest.mark.parametrize("bad", ["qos=high", "--qos=high\n#SBATCH --x", ""])
def test_a_directive_that_is_not_one_option_is_refused(tmp_path, bad):
    with pytest.raises(StudyError, match="--sbatch"):
        render_job(load_study(STUDY), CLUSTER, tmp_path / "j", site=Site(directives=(bad,)))
    assert not (tmp_path / "j").exists()


def test_an_unreadable_prologue_is_refused_naming_it(tmp_path):
    for path, data in ((tmp_path / "missing.sh", None), (tmp_path / "binary.sh", b"\x00\xff\xfe")):
        if data is not None:
            path.write_bytes(data)
        with pytest.raises(StudyError, match=re.escape(str(path))):
            render_job(load_study(STUDY), CLUSTER, tmp_path / "j", site=Site(prologue=path))
    assert not (tmp_path / "j").exists()


def test_memory_request_is_the_predicted_peak_plus_the_stated_margin(rendered, tmp_path):
    out, plan = rendered
    text = (out / "job.sbatch").read_text()
    peak = max(n.mem_mb for n in plan.nodes)
    assert f"#SBATCH --mem={math.ceil(peak * 1.25)}M\n" in text
    assert f"# memory: predicted peak {peak / 1024:.1f} GB per node + 25% margin\n" in text
    tight = replace(CLUSTER, mem_per_node_gb=5)  # the plan fits (4.1 GB < 90 %), +25 % would not
    render_job(load_study(STUDY), tight, tmp_path / "tight", site=Site(mem_margin=0.25))
    text = (tmp_path / "tight" / "job.sbatch").read_text()
    assert "#SBATCH --mem=5120M\n" in text and "capped at the node's 5 GB" in text


def test_configs_are_role_settings_per_node_pretty_printed_with_names_not_paths(rendered):
    out, plan = rendered
    raw = (out / "configs" / "transmission.json").read_text()
    assert raw.startswith("{\n") and '"case": "ACTIVSg200"' in raw
    t = json.loads(raw)
    assert t["role"] == TRANSMISSION and len(t["feeders"]) == 126 and t["run_dir"] == ".."
    names = []
    for node in plan.nodes:
        bundle = json.loads((out / "configs" / f"node_{node.index:03d}.json").read_text())
        assert bundle["role"] == "feeders" and len(bundle["feeders"]) == node.feeders
        assert bundle["feeder_model"] == "ieee8500"
        assert {str(f["bus"]) for f in bundle["feeders"]} == set(bundle["bus_mult"])
        names += [f["name"] for f in bundle["feeders"]]
    assert names == [f["name"] for f in t["feeders"]]
    assert (out / "boundary_map.txt").read_text().startswith("37,126\n")
    assert (out / "study.toml").read_text() == STUDY.read_text()
    assert json.loads((out / "run.json").read_text())["workers"] == plan.ranks


def test_node_bundles_equal_the_role_configs_of_the_nodes_as_groups():
    study = load_study(STUDY)
    layout = build_layout(study)
    plan = make_plan(study_shape(study, layout.boundary), CLUSTER)
    transmission, bundles = node_configs(layout, plan)
    groups = tuple(layout.feeders[n.first_feeder:n.first_feeder + n.feeders] for n in plan.nodes)
    names = [TRANSMISSION] + [group_name(i) for i in range(len(groups))]
    direct = role_configs(replace(layout, groups=groups))
    assert list(direct) == names
    assert transmission == direct[TRANSMISSION]
    assert bundles == [{**direct[group_name(i)], "name": group_name(i)} for i in range(len(groups))]


def test_rerendering_over_an_edited_folder_is_refused_naming_the_file_unless_forced(tmp_path, capsys):
    out = tmp_path / "job"
    args = ["jobs", "render", str(STUDY), "--nodes", "4", "--cores-per-node", "16", "--mem-per-node-gb", "64",
            "-o", str(out)]
    assert main(["-q", *args]) == 0
    assert main(["-q", *args]) == 0, "re-rendering an unedited folder is allowed"
    script = out / "job.sbatch"
    script.write_text(script.read_text().replace("--time=01:00:00", "--time=02:00:00"))
    capsys.readouterr()
    assert main(["-q", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{script} was edited since it was rendered" in err and "--force" in err
    assert "--time=02:00:00" in script.read_text(), "the edit is kept"
    assert main(["-q", *args, "--force"]) == 0
    assert "--time=01:00:00" in script.read_text()
    (out / "configs" / "node_002.json").unlink()
    assert main(["-q", *args]) == 2
    assert "node_002.json was deleted since it was rendered" in capsys.readouterr().err


def test_a_rerender_with_fewer_nodes_removes_the_stale_bundles(tmp_path):
    out = tmp_path / "job"
    render_job(load_study(STUDY), CLUSTER, out)
    render_job(load_study(STUDY), replace(CLUSTER, nodes=2), out)
    assert sorted(p.name for p in (out / "configs").iterdir()) == ["node_000.json", "node_001.json",
                                                                   "transmission.json"]


def test_a_folder_that_hpcsim_did_not_render_is_not_written_over(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(StudyError, match="not a job folder hpcsim rendered"):
        render_job(load_study(STUDY), CLUSTER, out)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(StudyError, match="exists and is not a folder"):
        render_job(load_study(STUDY), CLUSTER, tmp_path / "file")


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


def test_a_requeueing_job_asks_for_the_signal_and_keeps_every_attempt_in_its_log(tmp_path):
    job = tmp_path / "requeue"
    render_job(load_study(CASES_DIR / "activsg200_ieee8500_bus8.toml"), Cluster(1, 4, 16.0), job,
               site=Site(requeue_before_s=300))
    script = (job / "job.sbatch").read_text()
    for line in ("#SBATCH --requeue", "#SBATCH --signal=B:USR2@300", "#SBATCH --open-mode=append"):
        assert line in script.splitlines() or any(ln.startswith(line) for ln in script.splitlines()), line
    assert "#SBATCH --no-requeue" not in script
    assert "scontrol requeue \"$SLURM_JOB_ID\"" in script and "hpcsim.hpc.resume" in script
    subprocess.run(["bash", "-n", str(job / "job.sbatch")], check=True)
    r = subprocess.run([sys.executable, "-m", "hpcsim.cli", "jobs", "render", str(CASES_DIR / "activsg200_ieee8500_bus8.toml"),
                        "--nodes", "1", "--cores-per-node", "4", "--mem-per-node-gb", "16", "--requeue-before",
                        "-5", "-o", str(tmp_path / "bad")], capture_output=True, text=True, cwd=PROJECT_ROOT)
    assert r.returncode == 2 and "--requeue-before -5 must be from 0 to 65535 s" in r.stderr
