"""A job step of a resumed job: ``python -m hpcsim.hpc.resume RUN --plan PLAN --configs CONFIGS``.

Run by the job script before any broker starts when the job is resumed (``hpcsim jobs submit DIR --resume``,
or SLURM restarting a requeued job). It finds the last step every federate completed, removes what came after
(:func:`hpcsim.federation.resume.prepare`) and writes ``RUN/configs/resume.json`` — the step to start from and
what each feeder carried out of the step before — which every rank adds to its federate's config
(:func:`carried_for`). One line and exit 2 when the folder cannot be resumed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from hpcsim.errors import HpcsimError, StudyError
from hpcsim.federation.layout import TRANSMISSION, group_name
from hpcsim.federation.resume import prepare, resume_section

RESUME_FILE = "resume.json"


def prepare_job(run: Path, plan_path: Path, configs: Path) -> dict:
    plan = json.loads(plan_path.read_text())
    if plan["study"].get("kind") == "dynamic":
        raise StudyError(f"{run}: a dynamic run cannot be resumed (its TDS state is not in the outputs): "
                         "render the job into a new folder and run it again")
    trans = json.loads((configs / "transmission.json").read_text())
    federates = [TRANSMISSION] + [group_name(r) for r in range(int(plan["ranks"]))]
    feeders = [f["name"] for f in trans["feeders"]]
    k, carried = prepare(run, federates, feeders, len(trans["times_s"]))
    (run / "configs" / "steps.tsv").unlink(missing_ok=True)  # the steps of this attempt are recorded anew
    state = {"from_step": k, **carried}
    (run / "configs" / RESUME_FILE).write_text(json.dumps(state))
    return state


def carried_for(run: Path, cfg: dict) -> dict | None:
    """The ``resume`` section of a federate's config (its feeders' carried states), if the job resumes."""
    try:
        state = json.loads((run / "configs" / RESUME_FILE).read_text())
    except FileNotFoundError:
        return None
    if not state.get("from_step"):
        return None
    return resume_section(cfg, state["from_step"], state)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hpcsim.hpc.resume", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--plan", type=Path, required=True)
    parser.add_argument("--configs", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        state = prepare_job(args.run_dir, args.plan, args.configs)
    except HpcsimError as exc:
        print(f"hpcsim: error: {exc}", file=sys.stderr)
        return 2
    except (OSError, json.JSONDecodeError, KeyError) as exc:
        print(f"hpcsim: error: cannot resume {args.run_dir}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    print(f"hpcsim: resuming {args.run_dir} at step {state['from_step'] + 1}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
