"""What a batch log sees: every subcommand run through pipes (no terminal), in a folder whose path is over 200
characters long, as on cluster scratch. Every path printed is whole on one line, no colour codes or markup
reach the log, log lines carry ISO-8601 timestamps, results go to standard output and logs to standard error,
and ``--json`` prints strict JSON. Also: ``helics run`` re-runs a run folder's federation from its runner.json
and ``hpcsim summarize`` gives the same answer."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.helpers import BUS8_STUDY, REPO, hpcsim, wait_gone

pytestmark = pytest.mark.integration

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d (DEBUG|INFO|WARNING|ERROR) [\w.]+: ")
ENV = {"COLUMNS": "80", "TERM": "xterm-256color"}  # what made rich wrap at 80 columns and colour before


def deep_folder(base: Path) -> Path:
    deep = base / ("scratch-" + "a" * 60) / ("project-" + "b" * 60) / ("user-" + "c" * 60)
    assert len(str(deep)) > 200
    deep.mkdir(parents=True)
    return deep


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return hpcsim(*args, timeout=timeout, env={**os.environ, **ENV})


def check_batch_output(r: subprocess.CompletedProcess, deep: Path, must_name: list[Path] = ()) -> None:
    """No escape codes, every stderr line an ISO-timestamped log record (or the one error line), and every
    mention of the deep folder a whole, existing path on one line."""
    text = r.stdout + r.stderr
    assert "\x1b[" not in text, "colour or cursor codes in a batch log"
    for line in r.stderr.splitlines():
        assert ISO.match(line) or line.startswith("hpcsim: error: ") or line.startswith("    "), line
    prefix = str(deep)[:40]
    for line in text.splitlines():
        start = line.find(prefix)
        while start >= 0:
            assert line[start:].startswith(str(deep)), f"a path cut in {line!r}"
            token = re.split(r"[\s,;:()'\"]", line[start:])[0].rstrip("./")
            assert Path(token).exists(), f"{token} (printed) does not exist"
            start = line.find(prefix, start + 1)
    for path in must_name:
        assert any(str(path) in line for line in text.splitlines()), f"{path} not printed whole on a line"


@pytest.fixture(scope="module")
def deep_run(tmp_path_factory):
    deep = deep_folder(tmp_path_factory.mktemp("batch"))
    run = deep / "run"
    r = run_cli("run", str(BUS8_STUDY), "-o", str(run))
    assert r.returncode == 0, r.stderr
    return deep, run, r


def test_run_prints_its_verdict_on_standard_output_and_logs_on_standard_error(deep_run):
    deep, run, r = deep_run
    check_batch_output(r, deep, must_name=[run])
    first = r.stdout.splitlines()[0]
    assert first.startswith("activsg200_ieee8500_bus8: converged, iterative coupling, 1 step(s), iterations 3-3")
    assert first.endswith(str(run))
    assert "bus  K" in r.stdout and "\n  8  3" in r.stdout  # the boundary table as plain columns
    progress = [line for line in r.stderr.splitlines() if "hpcsim.progress" in line]
    assert progress and all("co-simulation:" in line for line in progress)
    assert len(progress) < 20, "progress is a line per change, not a redraw per poll"
    assert not any("Traceback" in line for line in r.stderr.splitlines())


@pytest.mark.parametrize("command, printed", [
    (["summarize", "{run}"], ["{run}"]),
    (["aggregate", "{run}"], ["{run}/aggregate", "{run}/aggregate/voltage_envelope.png"]),
    (["report", "{run}", "--reuse"], ["{run}/report.md"]),
    (["metadata", "generate", "--case", "ACTIVSg200", "--max-buses", "3", "-o", "{deep}/map.txt"], ["{deep}/map.txt"]),
    (["metadata", "check", "{deep}/map.txt", "--case", "ACTIVSg200"], ["{deep}/map.txt"]),
    (["metadata", "show", "{deep}/map.txt", "--case", "ACTIVSg200"], ["{deep}/map.txt"]),
    (["plan", str(BUS8_STUDY), "--nodes", "1", "--cores-per-node", "8", "--mem-per-node-gb", "16"], []),
    (["jobs", "render", str(BUS8_STUDY), "--nodes", "1", "--cores-per-node", "8", "--mem-per-node-gb", "16",
      "-o", "{deep}/job"], ["{deep}/job/job.sbatch"]),
    (["bench", "--check", "{run}"], []),
], ids=lambda c: " ".join(c[:2]) if isinstance(c, list) and c and not str(c[0]).startswith("{") else "")
def test_every_subcommand_prints_whole_paths_and_plain_lines_through_a_pipe(deep_run, command, printed):
    deep, run, _ = deep_run
    r = run_cli(*[a.format(run=run, deep=deep) for a in command])
    assert r.returncode == 0, r.stderr
    check_batch_output(r, deep, must_name=[Path(p.format(run=run, deep=deep)) for p in printed])


def test_jobs_status_of_a_finished_job_folder_is_one_plain_block(deep_run):
    deep, run, _ = deep_run
    job = deep / "status-job"
    (job / "run").mkdir(parents=True)
    shutil.copy(run / "summary.json", job / "run" / "summary.json")
    (job / "job_id").write_text("424242\n")
    r = run_cli("jobs", "status", str(job))  # SLURM does not know the job (or is absent): the run folder tells
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("job 424242: COMPLETED")
    check_batch_output(r, deep, must_name=[job / "run"])


def test_markup_in_data_is_not_interpreted(tmp_path):
    name = "study [bold]x[bold] [outputs] node_voltages = true"
    study = tmp_path / "odd.toml"
    study.write_text(BUS8_STUDY.read_text().replace('name = "activsg200_ieee8500_bus8"', f"name = {json.dumps(name)}")
                     .replace('"../metadata/', f'"{REPO}/metadata/'))
    r = run_cli("plan", str(study), "--nodes", "1", "--cores-per-node", "8", "--mem-per-node-gb", "16")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(name + ":")


JSON_COMMANDS = [
    (["summarize", "{run}", "--json"], lambda d: d["converged"] and d["steps"][0]["iterations"] == 3),
    (["aggregate", "{run}", "--json"], lambda d: d["manifest"]["status"] == "converged" and d["figures"]),
    (["report", "{run}", "--reuse", "--json"], lambda d: d["report"].endswith("report.md") and d["sections"]),
    (["metadata", "check", str(REPO / "metadata" / "activsg200_ieee8500_bus8.txt"), "--json"],
     lambda d: d == {"file": d["file"], "valid": True, "buses": 1, "feeders": 3, "case": None}),
    (["metadata", "show", str(REPO / "metadata" / "activsg200_ieee8500.txt"), "--case", "ACTIVSg200", "--json"],
     lambda d: d["feeders"] == 126 and len(d["rows"]) == 37 and d["rows"][0]["clones"] == 3),
    (["plan", str(BUS8_STUDY), "--nodes", "1", "--cores-per-node", "8", "--mem-per-node-gb", "16", "--json"],
     lambda d: d["ranks"] >= 1),
    (["jobs", "render", str(BUS8_STUDY), "--nodes", "1", "--cores-per-node", "8", "--mem-per-node-gb", "16",
      "-o", "{deep}/jjob", "--json"], lambda d: Path(d["script"]).is_file() and d["plan"]["ranks"] >= 1),
    (["bench", "--check", "{run}", "--json"], lambda d: d["runs"][0]["feeders"] == 3),
]


@pytest.mark.parametrize("command, check", JSON_COMMANDS, ids=[" ".join(c[:2]) for c, _ in JSON_COMMANDS])
def test_json_output_is_strict_json_on_standard_output(deep_run, command, check):
    deep, run, _ = deep_run
    r = run_cli(*[a.format(run=run, deep=deep) for a in command])
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    assert check(data), data


def test_run_json_is_the_summary_with_its_folder(tmp_path):
    run = tmp_path / "run"
    r = run_cli("run", str(BUS8_STUDY), "-o", str(run), "--json", "-q")
    assert r.returncode == 0, r.stderr and r.stderr == ""
    printed = json.loads(r.stdout)
    assert printed.pop("run_dir") == str(run)
    assert printed == json.loads((run / "summary.json").read_text())


def test_helics_run_reruns_the_federation_from_runner_json_to_the_same_answer(deep_run, tmp_path):
    _, run, _ = deep_run
    again = tmp_path / "again"
    shutil.copytree(run, again, ignore=shutil.ignore_patterns("outputs", "summary.json", "aggregate", "report.md",
                                                              "logs", "progress.json"))
    runner = json.loads((again / "runner.json").read_text())
    assert [f["name"] for f in runner["federates"]] == ["root_broker", "transmission", "feeders_000", "feeders_001"]
    assert all(f["directory"] == "." for f in runner["federates"])
    for cfg in (again / "configs").glob("*.json"):  # standard HELICS configs, paths relative to the run folder
        doc = json.loads(cfg.read_text())
        assert {"name", "core_type", "broker_address", "publications", "subscriptions", "hpcsim"} <= set(doc)
        assert doc["hpcsim"]["run_dir"] == ".." and str(run) not in cfg.read_text()
    helics = Path(sys.executable).parent / "helics"
    r = subprocess.run([str(helics), "run", f"--path={again / 'runner.json'}"], capture_output=True, text=True,
                       timeout=180, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    s = run_cli("summarize", str(again), "--json")
    assert s.returncode == 0, s.stderr
    mine, theirs = json.loads(s.stdout), json.loads((run / "summary.json").read_text())
    assert mine["converged"] is True and mine["problems"] == []
    assert mine["steps"] == theirs["steps"]
    assert mine["boundary"] == theirs["boundary"] and mine["feeders"] == theirs["feeders"]
    assert wait_gone(again) == []
