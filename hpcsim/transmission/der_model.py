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
generator (``PV``) after the power flow; ``gammap``/``gammaq`` give its share of that generator.

The model is registered into ANDES at run time (:func:`register`); its generated code lives in a separate
folder inside the environment (:data:`PYCODE_PATH`, a copy of hpcsim's ANDES code plus this model), so the
steady-state engine's code folder is never touched.
"""

from __future__ import annotations

import fcntl
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
MODULE = "andes.models.hpcsim_derfr"
PYCODE_PATH = andes_system.PYCODE_PATH.parent / "andes-pycode-dynamics"


def _define_classes() -> type:
    from andes.core.block import DeadBand1, Lag
    from andes.core.discrete import Limiter
    from andes.core.model import Model, ModelData
    from andes.core.param import IdxParam, NumParam
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

    class DERFRModel(Model):
        def __init__(self, system, config):
            super().__init__(system, config)
            self.flags.tds = True
            self.group = "DG"
            self.a = ExtAlgeb(model="Bus", src="a", indexer=self.bus, tex_name=r"\theta",
                              e_str="-ue * Pout_y", ename="P", tex_ename="P")
            self.v = ExtAlgeb(model="Bus", src="v", indexer=self.bus, tex_name="V",
                              e_str="-ue * qref0", ename="Q", tex_ename="Q")
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

    return DERFR


def register() -> None:
    """Make ``DERFR`` an ANDES model (idempotent): a module ``andes.models.hpcsim_derfr`` and a ``file_classes``
    entry, so every ``andes.System`` created afterwards in this process has it."""
    import andes.models

    if MODULE in sys.modules:
        return
    module = types.ModuleType(MODULE)
    module.DERFR = _define_classes()
    sys.modules[MODULE] = module
    andes.models.file_classes.append((MODULE.rsplit(".", 1)[1], [MODEL]))


def prepare(force: bool = False) -> Path:
    """Once per environment: copy hpcsim's generated ANDES code and generate ``DERFR`` next to it.

    ``hpcsim prepare`` does it at install time. Called lazily from a run, the generation happens in a child
    process: the generating process imports ANDES's ``pycode`` package from a temporary folder that is then
    renamed into place, which would leave that process with a stale module. Safe when several processes call it
    at once (a lock file next to the folder).
    """
    register()
    if not force and (PYCODE_PATH / f"{MODEL}.py").is_file():
        return PYCODE_PATH
    code = f"from hpcsim.transmission.der_model import _generate; _generate(force={bool(force)})"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    if result.returncode != 0 or not (PYCODE_PATH / f"{MODEL}.py").is_file():
        tail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise DynamicsError(f"generating ANDES code for {MODEL} in {PYCODE_PATH} failed: {tail}")
    return PYCODE_PATH


def _generate(force: bool = False) -> Path:
    """The generation itself (run in its own process by :func:`prepare`)."""
    register()
    PYCODE_PATH.parent.mkdir(parents=True, exist_ok=True)
    with open(PYCODE_PATH.parent / "andes-pycode-dynamics.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if force or not (PYCODE_PATH / f"{MODEL}.py").is_file():
            source = andes_system.prepare()
            tmp = PYCODE_PATH.with_name(PYCODE_PATH.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.copytree(source, tmp, ignore=shutil.ignore_patterns("__pycache__"))
            andes = andes_system.quiet_andes()
            system = andes.System(options=andes_system.andes_options(tmp), no_undill=True)
            system.prepare(quick=True, incremental=True, nomp=True)
            if not (tmp / f"{MODEL}.py").is_file():
                raise DynamicsError(f"ANDES did not generate code for {MODEL} in {tmp}")
            shutil.rmtree(PYCODE_PATH, ignore_errors=True)
            tmp.rename(PYCODE_PATH)
            log.info("generated ANDES code for %s in %s", MODEL, PYCODE_PATH)
    return PYCODE_PATH
