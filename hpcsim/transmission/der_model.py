"""``DERFR``: a distributed PV with two-sided frequency droop, an AGC input and a runtime power limit, for ANDES.

ANDES' own ``PVD1`` (WECC distributed PV) only curtails on over-frequency (its deadband block has a fixed upper
bound of 999 Hz), so it cannot give the under-frequency primary response of the paper's eq. (5). ``DERFR`` is a
small model with exactly the paper's Fig. 4 / eqs. (5), (14) structure::

    Fdev  = f_n (1 - f)                                   (Hz, positive when under-frequency; f from BusFreq)
    P_drp = D_dn / f_n * DB(Fdev; -db_OF, +db_UF)          (eq. 5; D_dn in pu power per pu frequency)
    P_sum = P_ref + P_ext + P_drp                          (P_ext = AGC set point, written at run time)
    P_cmd = min(max(P_sum, 0), p_mx)                       (eq. 14; p_mx = min(P_mppt, P_cap, P_VSM), run time)
    P     = P_cmd / (1 + s T_p)                            (inverter lag)

and injects ``P`` (and the constant ``Q`` of its static generator) at its bus. Like ``PVD1`` it replaces a static
generator (``PV``) after the power flow; ``gammap``/``gammaq`` give its share of that generator. Below ``vlv``
(0.7 pu) the injection is current-limited, ``P_inj = P · V / vlv`` (the same for Q): an inverter at its current
limit; without it a constant-P injection at V → 0 stops the TDS at a bolted fault. Above ``vlv`` the factor is
exactly 1 and its Jacobian entry exactly 0, so every study that stays above 0.7 pu integrates as before.

``PQLV`` is a constant-power load with a break to constant current below ``vb`` (PSS/E's PQBRAK idea)::

    P = p0 (V >= vb),  p0 · V / vb (V < vb);   the same for Q

It replaces a ``PQ`` after the power flow (like ANDES's ``ZIP``) and takes that PQ's power-flow ``Ppf``/``Qpf``;
its ``p0``/``q0`` are written between TDS advances. Used only by studies with a fault
(:mod:`hpcsim.transmission.fidvr`): ANDES's constant-power PQ does not solve through a bolted fault (ANDES's own
``pq2z`` limiter acts in the power flow only).

The model is registered into ANDES at run time (:func:`register`); its generated code lives in a separate
folder inside the environment (:data:`PYCODE_PATH`, a copy of hpcsim's ANDES code plus these models), so the
steady-state engine's code folder is never touched. The folder's name carries a hash of the models' source, so a
changed model gets fresh code and an environment's older folder is left to the processes still using it.
"""

from __future__ import annotations

import fcntl
import hashlib
import inspect
import logging
import shutil
import subprocess
import sys
import types
from pathlib import Path

from hpcsim.errors import DynamicsError
from hpcsim.transmission import andes_system

log = logging.getLogger(__name__)

MODEL = "DERFR"
LOAD_MODEL = "PQLV"
MODELS = (MODEL, LOAD_MODEL)
MODULE = "andes.models.hpcsim_derfr"
LV_LIMIT_PU = 0.7  # DERFR's current limit and PQLV's break: constant current below (FINDINGS, issue #20)


def lv_load_idx(pq_idx) -> str:
    """The idx of the ``PQLV`` that replaces PQ ``pq_idx``."""
    return f"LV_{pq_idx}"


def _define_classes() -> tuple[type, type]:
    from andes.core.block import DeadBand1, Lag
    from andes.core.discrete import Limiter
    from andes.core.model import Model, ModelData
    from andes.core.param import ExtParam, IdxParam, NumParam
    from andes.core.service import ConstService, ExtService
    from andes.core.var import Algeb, ExtAlgeb

    class DERFRData(ModelData):
        def __init__(self):
            super().__init__()
            self.bus = IdxParam(model="Bus", info="interface bus idx", mandatory=True, status_parent=True)
            self.gen = IdxParam(model="StaticGen", info="static generator replaced", mandatory=True, replaces=True)
            self.busf = IdxParam(model="BusFreq", info="frequency measurement", mandatory=True)
            self.Sn = NumParam(default=1.0, info="rated power", unit="MVA", tex_name="S_n")
            self.fn = NumParam(default=60.0, info="nominal frequency", unit="Hz", tex_name="f_n")
            self.gammap = NumParam(default=1.0, info="share of the static gen P", tex_name=r"\gamma_p")
            self.gammaq = NumParam(default=1.0, info="share of the static gen Q", tex_name=r"\gamma_q")
            self.dbuf = NumParam(default=0.017, info="under-frequency deadband", unit="Hz", non_negative=True)
            self.dbof = NumParam(default=0.017, info="over-frequency deadband", unit="Hz", non_negative=True)
            self.ddn = NumParam(default=20.0, info="droop gain, pu power per pu frequency", power=True,
                                non_negative=True, tex_name="D_{dn}")
            self.pmx = NumParam(default=1.0, info="power limit (run time: min of Pmppt, Pcap, PVSM)", power=True,
                                tex_name="p_{mx}")
            self.tp = NumParam(default=0.02, info="inverter power lag", unit="s", non_zero=True, tex_name="T_p")
            self.vlv = NumParam(default=LV_LIMIT_PU, info="current limit: below this voltage P and Q scale with "
                                "V / vlv", unit="p.u.", non_zero=True, tex_name="V_{lv}")

    class DERFRModel(Model):
        def __init__(self, system, config):
            super().__init__(system, config)
            self.flags.tds = True
            self.group = "DG"
            self.a = ExtAlgeb(model="Bus", src="a", indexer=self.bus, tex_name=r"\theta",
                              e_str="-ue * Pout_y * (LV_zi + LV_zu + LV_zl * v / vlv)", ename="P", tex_ename="P")
            self.v = ExtAlgeb(model="Bus", src="v", indexer=self.bus, tex_name="V",
                              e_str="-ue * qref0 * (LV_zi + LV_zu + LV_zl * v / vlv)", ename="Q", tex_ename="Q")
            self.vbig = ConstService(v_str="1e3", tex_name="V_{big}")
            self.LV = Limiter(u=self.v, lower=self.vlv, upper=self.vbig, no_warn=True,
                              info="current limit below vlv")
            self.p0s = ExtService(model="StaticGen", src="p", indexer=self.gen, tex_name="P_{0s}")
            self.q0s = ExtService(model="StaticGen", src="q", indexer=self.gen, tex_name="Q_{0s}")
            self.pref0 = ConstService(v_str="gammap * p0s", tex_name="P_{ref0}")
            self.qref0 = ConstService(v_str="gammaq * q0s", tex_name="Q_{ref0}")
            self.Pext0 = ConstService(v_str="0", tex_name="P_{ext0}", info="AGC set point (run time)")
            self.kdrp = ConstService(v_str="ddn / fn", tex_name="K_{drp}", info="droop, pu power per Hz")
            self.ndbof = ConstService(v_str="-dbof", tex_name="-db_{OF}")
            self.f = ExtAlgeb(model="FreqMeasurement", src="f", indexer=self.busf, export=False,
                              info="bus frequency", unit="p.u.")
            self.Fdev = Algeb(v_str="fn * (1 - f)", e_str="fn * (1 - f) - Fdev", unit="Hz",
                              info="frequency deviation, positive when under-frequency", tex_name="f_{dev}")
            self.DB = DeadBand1(u=self.Fdev, center=0.0, lower=self.ndbof, upper=self.dbuf, gain=self.kdrp,
                                info="eq. (5): droop outside the deadband")
            self.DB.db.no_warn = True
            self.Psum = Algeb(v_str="ue * (pref0 + Pext0 + DB_y)", e_str="ue * (pref0 + Pext0 + DB_y) - Psum",
                              tex_name="P_{sum}")
            self.PHL = Limiter(u=self.Psum, lower=0.0, upper=self.pmx, allow_adjust=False, no_warn=True,
                               info="eq. (14): [0, min(Pmppt, Pcap, PVSM)]")
            self.Pcmd = Algeb(v_str="Psum * PHL_zi + pmx * PHL_zu",
                              e_str="Psum * PHL_zi + pmx * PHL_zu - Pcmd", tex_name="P_{cmd}")
            self.Pout = Lag(u=self.Pcmd, T=self.tp, K=1, info="inverter output")

    class DERFR(DERFRData, DERFRModel):
        """Distributed PV with two-sided droop (eq. 5), AGC input and a run-time limit (eq. 14)."""

        def __init__(self, system, config):
            DERFRData.__init__(self)
            DERFRModel.__init__(self, system, config)

    class PQLVData(ModelData):
        def __init__(self):
            super().__init__()
            self.pq = IdxParam(model="StaticLoad", mandatory=True, info="PQ replaced", replaces=True)
            self.vb = NumParam(default=LV_LIMIT_PU, info="break voltage: constant current below", unit="p.u.",
                               non_zero=True, tex_name="V_b")

    class PQLVModel(Model):
        def __init__(self, system, config):
            super().__init__(system, config)
            self.flags.tds = True
            self.group = "DynLoad"
            self.bus = ExtParam(model="PQ", src="bus", indexer=self.pq, export=False)
            self.p0 = ExtService(model="PQ", src="Ppf", indexer=self.pq, tex_name="P_0", info="P (run time)")
            self.q0 = ExtService(model="PQ", src="Qpf", indexer=self.pq, tex_name="Q_0", info="Q (run time)")
            self.vbig = ConstService(v_str="1e3", tex_name="V_{big}")
            self.a = ExtAlgeb(model="Bus", src="a", indexer=self.bus, tex_name=r"\theta", ename="P",
                              tex_ename="P", e_str="ue * p0 * (LV_zi + LV_zu + LV_zl * v / vb)")
            self.v = ExtAlgeb(model="Bus", src="v", indexer=self.bus, tex_name="V", ename="Q", tex_ename="Q",
                              e_str="ue * q0 * (LV_zi + LV_zu + LV_zl * v / vb)")
            self.LV = Limiter(u=self.v, lower=self.vb, upper=self.vbig, no_warn=True,
                              info="constant current below vb")

    class PQLV(PQLVData, PQLVModel):
        """Constant power, constant current below vb (replaces a PQ in the TDS)."""

        def __init__(self, system, config):
            PQLVData.__init__(self)
            PQLVModel.__init__(self, system, config)

    return DERFR, PQLV


# the generated code's folder, named by the models' source (a changed model never meets code generated for another)
PYCODE_PATH = andes_system.PYCODE_PATH.parent / (
    "andes-pycode-dynamics-" + hashlib.sha256(inspect.getsource(_define_classes).encode()).hexdigest()[:10])


def register() -> None:
    """Make ``DERFR`` and ``PQLV`` ANDES models (idempotent): a module ``andes.models.hpcsim_derfr`` and a
    ``file_classes`` entry, so every ``andes.System`` created afterwards in this process has them."""
    import andes.models

    if MODULE in sys.modules:
        return
    module = types.ModuleType(MODULE)
    module.DERFR, module.PQLV = _define_classes()
    sys.modules[MODULE] = module
    andes.models.file_classes.append((MODULE.rsplit(".", 1)[1], list(MODELS)))


def _generated() -> bool:
    return all((PYCODE_PATH / f"{m}.py").is_file() for m in MODELS)


def prepare(force: bool = False) -> Path:
    """Once per environment: copy hpcsim's generated ANDES code and generate ``DERFR`` and ``PQLV`` next to it.

    ``hpcsim prepare`` does it at install time. Called lazily from a run, the generation happens in a child
    process: the generating process imports ANDES's ``pycode`` package from a temporary folder that is then
    renamed into place, which would leave that process with a stale module. Safe when several processes call it
    at once (a lock file next to the folder).
    """
    register()
    if not force and _generated():
        return PYCODE_PATH
    code = f"from hpcsim.transmission.der_model import _generate; _generate(force={bool(force)})"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    if result.returncode != 0 or not _generated():
        tail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise DynamicsError(f"generating ANDES code for {', '.join(MODELS)} in {PYCODE_PATH} failed: {tail}")
    return PYCODE_PATH


def _generate(force: bool = False) -> Path:
    """The generation itself (run in its own process by :func:`prepare`)."""
    register()
    PYCODE_PATH.parent.mkdir(parents=True, exist_ok=True)
    with open(PYCODE_PATH.parent / "andes-pycode-dynamics.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if force or not _generated():
            source = andes_system.prepare()
            tmp = PYCODE_PATH.with_name(PYCODE_PATH.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.copytree(source, tmp, ignore=shutil.ignore_patterns("__pycache__"))
            andes = andes_system.quiet_andes()
            system = andes.System(options=andes_system.andes_options(tmp), no_undill=True)
            system.prepare(quick=True, incremental=True, nomp=True)
            if not all((tmp / f"{m}.py").is_file() for m in MODELS):
                raise DynamicsError(f"ANDES did not generate code for {', '.join(MODELS)} in {tmp}")
            shutil.rmtree(PYCODE_PATH, ignore_errors=True)
            tmp.rename(PYCODE_PATH)
            log.info("generated ANDES code for %s in %s", ", ".join(MODELS), PYCODE_PATH)
    return PYCODE_PATH
