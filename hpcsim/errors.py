"""Exception hierarchy. The CLI prints ``str(error)`` as one line and exits with ``error.exit_code``.

Input errors (bad files, bad options) exit 2; run-time failures of a federation exit 3 (a federate died)
or 4 (the coupling did not converge); an answer that fails its independent checks (``hpcsim check``) exits 5.
"""

from __future__ import annotations


def one_line(exc: BaseException | str) -> str:
    """A (solver's) message on one line: its lines joined with "; "."""
    return "; ".join(part.strip() for part in str(exc).splitlines() if part.strip())


class HpcsimError(Exception):
    """Base class: a failure the user can act on, described in one line."""

    exit_code = 2


class CaseError(HpcsimError):
    """A transmission case or feeder model cannot be found or read."""


class MetadataError(HpcsimError):
    """A boundary map (ANL metadata file) is malformed or disagrees with its case."""


class StudyError(HpcsimError):
    """A study file is malformed or inconsistent."""


class PlanError(HpcsimError):
    """A placement plan cannot fit the cluster described."""


class SubmitError(HpcsimError):
    """A scheduler command failed."""


class SolverError(HpcsimError):
    """ANDES or OpenDSS failed to solve."""

    exit_code = 3


class DynamicsError(SolverError):
    """A dynamic study's solvers failed while running: ANDES's power flow or TDS, a feeder with its DERs, the
    headroom LP or the voltage-coordination MILP (bad dynamic input is a :class:`StudyError`)."""


class FederateError(HpcsimError):
    """A federate (or the broker) failed during a run."""

    exit_code = 3


class ConvergenceError(HpcsimError):
    """The iterative T&D coupling did not converge within the allowed iterations."""

    exit_code = 4


class CheckError(HpcsimError):
    """A converged answer fails an independent check (:mod:`hpcsim.checks`)."""

    exit_code = 5


class OutputError(HpcsimError):
    """A run folder's outputs are missing or unreadable, or an aggregate cannot be written."""


class Terminated(KeyboardInterrupt):
    """SIGTERM: a command ends as on Ctrl-C (its children stopped in order) and exits 143 (128 + 15)."""


def raise_terminated(signum, frame) -> None:  # noqa: ARG001 - a signal handler
    raise Terminated
