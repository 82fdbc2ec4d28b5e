"""The one ANDES adapter: everything hpcsim does to an ANDES ``System`` that the power flow
(:mod:`~hpcsim.transmission.power_flow`) and the time-domain simulation (:mod:`~hpcsim.transmission.dynamic`)
share — finding a case, loading it with hpcsim's options and constant-power loads, the quiet logger, the
generated model code, and which of the case's loads carry each feeder bus.

ANDES generates code into a cache folder; hpcsim keeps it inside the Python environment
(``<prefix>/share/hpcsim/andes-pycode``, and ``andes-pycode-dynamics`` with the DER model of
:mod:`~hpcsim.transmission.der_model`), never in ``~/.andes``. ``hpcsim prepare`` fills both once. ANDES imports
that code as the module ``pycode`` once per process, so one process serves one of the two (:func:`check_model_code`).
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path

import numpy as np

from hpcsim import cache
from hpcsim.cases import case_file
from hpcsim.errors import CaseError, DynamicsError

log = logging.getLogger(__name__)

PYCODE_PATH = Path(sys.prefix) / "share" / "hpcsim" / "andes-pycode"
JSON_CASES = "andes-cases"  # the cache folder of cases converted to ANDES JSON (hpcsim.cache.cache_dir)

# ANDES's power flow stops at a largest mismatch of 1e-6 pu by default; on ACTIVSg70k that leaves a uniform
# ~1e-8 rad angle wobble between solves, which the coupling's 2-norm ΔV over 19,678 buses sums to 1.5e-6 — above
# the coupling tolerance. One more Newton iteration (quadratic convergence) takes it to 1e-9. The dynamic studies
# keep ANDES's default (their initial power flow is the TDS's starting point; their pinned answers were taken
# with it).
PF_TOLERANCE_PU = 1e-9


def andes_options(pycode_path: Path = PYCODE_PATH) -> dict:
    return {"pycode_path": str(pycode_path), "default_config": True, "no_output": True}


def quiet_andes():
    """The ``andes`` module, with its logging kept to errors (its import is deferred: ~1 s, solvers only)."""
    import andes

    # file=False: no DEBUG log file. log_path given: otherwise ANDES mkdtemp()s an unused <tmp>/andes-XXXXXXXX
    # folder on every call (and, with file=True, a log in it), never removed.
    andes.config_logger(stream_level=logging.ERROR, file=False, log_path=tempfile.gettempdir())
    # and nothing below a warning through hpcsim's own handlers either (a power flow logs ~10 lines per solve,
    # and its debug calls cost ~5 % of a TDS step)
    logging.getLogger("andes").setLevel(logging.WARNING)
    return andes


def prepare(force: bool = False) -> Path:
    """Generate ANDES' model code once per environment."""
    andes = quiet_andes()
    if force or not (PYCODE_PATH / "__init__.py").is_file():
        PYCODE_PATH.mkdir(parents=True, exist_ok=True)
        andes.prepare(quick=True, pycode_path=str(PYCODE_PATH), nomp=True)
    return PYCODE_PATH


def check_model_code(pycode_path: Path) -> None:
    """Fail with one line if this process already imported ANDES's generated code from another folder: a process
    that loaded the steady-state code (no DER model) would build a dynamic case with Jacobians missing (a
    ``KeyError`` deep in ANDES). Each federate, and ``hpcsim run``/``jobs render``, is its own process."""
    loaded = getattr(sys.modules.get("pycode"), "__file__", None)
    if loaded and Path(loaded).resolve().parent != Path(pycode_path).resolve():
        raise DynamicsError(f"this process has ANDES's model code from {Path(loaded).parent} loaded; a dynamic "
                            f"case needs {pycode_path}: compute the dynamic plan in a process of its own")


def load(case: str | Path, *, pycode_path: Path = PYCODE_PATH, setup: bool = True, constant_power: bool = True,
         pf_tolerance_pu: float | None = PF_TOLERANCE_PU):
    """``andes.load`` of a case (a shipped name, a case bundled with ANDES or a path: :func:`hpcsim.cases.case_file`)
    with hpcsim's options.

    ``constant_power``: every PQ load holds its power at any voltage (``p2p = q2q = 1``, ``p2z = q2z = 0``) with no
    silent switch to constant impedance below ``PQ.vmin`` either (ANDES's ``pq2z``, on by default; it must be off
    before the models are built: their limiter takes it at construction) — a feeder bus carries exactly what its
    feeders draw, or the power flow fails. ``pf_tolerance_pu``: the power flow's mismatch tolerance (``None``:
    ANDES's default)."""
    andes = quiet_andes()
    path = case_file(case)
    config = (["PQ.pq2z=0"] if constant_power else []) + (
        [f"PFlow.tol={pf_tolerance_pu}"] if pf_tolerance_pu is not None else [])
    try:
        ss = andes.load(str(path), setup=False, **({"config_option": config} if config else {}),
                        **andes_options(pycode_path))
    except Exception as exc:  # noqa: BLE001 - ANDES raises plain exceptions for unreadable files
        raise CaseError(f"ANDES cannot read case {case}: {exc}") from None
    if ss is None:
        raise CaseError(f"ANDES cannot read case {case}")
    if constant_power:
        ss.PQ.config.p2p, ss.PQ.config.q2q, ss.PQ.config.p2z, ss.PQ.config.q2z = 1.0, 1.0, 0.0, 0.0
    if setup:
        ss.setup()
    return ss


def json_case(case: str | Path, pycode_path: Path = PYCODE_PATH) -> Path:
    """The case as ANDES JSON, converted once and kept in a cache folder of its own (reading a bundled .xlsx
    costs about a second more than JSON in every process that loads it). Keyed by the file's path, size and
    modification time, and the ANDES version that wrote it."""
    path = case_file(case)
    if path.suffix.lower() == ".json":
        return path
    st = path.stat()
    entry = cache.key(path=str(path), mtime_ns=st.st_mtime_ns, size=st.st_size,
                      versions=cache.package_versions("andes"))[:12]
    cached = cache.cache_dir(JSON_CASES) / f"{path.stem}-{entry}.json"
    if not cached.is_file():
        cached.parent.mkdir(parents=True, exist_ok=True)
        ss = load(path, pycode_path=pycode_path, setup=False, pf_tolerance_pu=None)
        tmp = cached.with_suffix(f".{os.getpid()}.tmp")
        quiet_andes().io.dump(ss, "json", str(tmp), overwrite=True)
        os.replace(tmp, cached)
        log.info("converted %s to %s", path, cached)
    return cached


class BusLoads:
    """Which of a case's PQ loads carry each feeder bus: the first PQ at the bus carries the bus's whole load, the
    others at the bus are zeroed; every other PQ keeps the case's load times a multiplier.

    Written through ``PQ.set`` into the power flow's ``p0``/``q0`` or the TDS's ``Ppf``/``Qpf`` (per unit on the
    system base)."""

    def __init__(self, ss, buses: Sequence[int], where: str, label: str = "boundary bus",
                 exclude: Collection = ()):
        self.ss = ss
        self.buses = [int(b) for b in buses]
        self._model, self._idx_of, self._fields = "PQ", None, {}
        idx = list(ss.PQ.idx.v)
        at_bus: dict[int, list[int]] = {}
        for i, pb in enumerate(ss.PQ.bus.v):
            if idx[i] not in exclude:  # PQs that are not the case's loads (a FIDVR study's motor blocks)
                at_bus.setdefault(int(pb), []).append(i)
        missing = [b for b in self.buses if b not in at_bus]
        if missing:
            raise CaseError(f"{label} {missing[0]} has no load (PQ) in {where}")
        p0 = np.asarray(ss.PQ.p0.v, dtype=float).copy()
        q0 = np.asarray(ss.PQ.q0.v, dtype=float).copy()
        self.case_p_pu = np.array([p0[at_bus[b]].sum() for b in self.buses])
        self.case_q_pu = np.array([q0[at_bus[b]].sum() for b in self.buses])
        self._first = [idx[at_bus[b][0]] for b in self.buses]
        self._rest = [idx[i] for b in self.buses for i in at_bus[b][1:]]
        carrying = {i for b in self.buses for i in at_bus[b]}
        other = [i for i in range(len(idx)) if i not in carrying and idx[i] not in exclude]
        self._other, self._other_p0, self._other_q0 = [idx[i] for i in other], p0[other], q0[other]

    def retarget(self, model: str, idx_of: Callable, fields: Mapping[str, str]) -> None:
        """Write into the devices of ``model`` that replaced the PQs in the TDS from now on: PQ ``i`` is
        ``idx_of(i)``, a PQ field ``f`` is ``fields[f]`` (a FIDVR study's ``PQLV``: ``Ppf`` -> ``p0``)."""
        self._model, self._idx_of, self._fields = model, idx_of, dict(fields)

    def _set(self, src: str, idx: list, value: np.ndarray) -> None:
        if self._idx_of is None:
            self.ss.PQ.set(src=src, idx=idx, attr="v", value=value)
        else:
            getattr(self.ss, self._model).set(src=self._fields.get(src, src), idx=[self._idx_of(i) for i in idx],
                                              attr="v", value=value)

    def write(self, p_pu: Sequence[float] | np.ndarray, q_pu: Sequence[float] | np.ndarray,
              fields: tuple[str, str] = ("p0", "q0")) -> None:
        """Each bus's total load (in ``buses`` order) into its first PQ, zero into the others at the bus."""
        p_src, q_src = fields
        self._set(p_src, self._first, np.asarray(p_pu, dtype=float))
        self._set(q_src, self._first, np.asarray(q_pu, dtype=float))
        if self._rest:
            zeros = np.zeros(len(self._rest))
            self._set(p_src, self._rest, zeros)
            self._set(q_src, self._rest, zeros)

    def write_mw(self, loads_mw: Mapping[int, tuple[float, float]], s_base_mva: float,
                 fields: tuple[str, str] = ("p0", "q0")) -> None:
        """:meth:`write` from (P MW, Q Mvar) per bus (every bus given)."""
        self.write([loads_mw[b][0] / s_base_mva for b in self.buses],
                   [loads_mw[b][1] / s_base_mva for b in self.buses], fields)

    def scale_others(self, mult: float, fields: tuple[str, str] = ("p0", "q0")) -> None:
        """Every PQ that carries no feeder bus at ``mult`` times the case's load (a load profile)."""
        if self._other:
            self._set(fields[0], self._other, self._other_p0 * mult)
            self._set(fields[1], self._other, self._other_q0 * mult)


def drop_history(ss) -> None:
    """Empty ANDES's in-memory TDS history (``dae.ts``).

    ANDES re-packs its whole history into arrays at the end of every ``TDS.run()``, so a run advanced interval by
    interval costs more each interval unless the history is dropped once read. ANDES's public way,
    ``TimeSeries.reset()``, also builds pandas frames of everything (~20 % of a TDS interval); its
    ``limit_store`` option drops history at a step count, not when it has been read. No public call empties the
    stores alone, so this function — the only place hpcsim touches ANDES's private attributes — clears them."""
    ts = ss.dae.ts
    for store in (ts._xs, ts._ys, ts._zs, ts._fs, ts._hs, ts._is, ts._bs):
        store.clear()
