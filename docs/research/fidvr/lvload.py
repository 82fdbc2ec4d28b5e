"""``PQLV``: constant-power load with a low-voltage break to constant current (PSS/E's PQBRAK idea), for ANDES.

P = p0 (V >= vb), p0 * V / vb (V < vb); the same for Q. Replaces a PQ after the power flow (like ANDES's ZIP),
taking that PQ's ``Ppf``/``Qpf``. ``p0``/``q0`` are writable between TDS advances (co-simulation).

The code is generated into ./pycode (beside this file): a copy of hpcsim's dynamics code folder (DERFR) plus
this model, so nothing in the package or its venv is written.
"""
import shutil
import subprocess
import sys
import types
from pathlib import Path

HERE = Path(__file__).resolve().parent  # outputs and generated code stay in this folder
from hpcsim.transmission import der_model  # noqa: E402

PYCODE = HERE / "pycode"
MODULE = "andes.models.research_pqlv"


def _define():
    from andes.core.discrete import Limiter
    from andes.core.model import Model, ModelData
    from andes.core.param import IdxParam, NumParam, ExtParam
    from andes.core.service import ExtService, ConstService
    from andes.core.var import ExtAlgeb

    class PQLVData(ModelData):
        def __init__(self):
            super().__init__()
            self.pq = IdxParam(model="StaticLoad", mandatory=True, info="PQ to replace", replaces=True)
            self.vb = NumParam(default=0.7, info="break voltage: constant current below", non_zero=True)

    class PQLVModel(Model):
        def __init__(self, system, config):
            super().__init__(system, config)
            self.flags.tds = True
            self.group = "DynLoad"
            self.bus = ExtParam(model="PQ", src="bus", indexer=self.pq, export=False)
            self.p0 = ExtService(model="PQ", src="Ppf", indexer=self.pq, tex_name="P_0")
            self.q0 = ExtService(model="PQ", src="Qpf", indexer=self.pq, tex_name="Q_0")
            self.vbig = ConstService(v_str="1e3")
            self.a = ExtAlgeb(model="Bus", src="a", indexer=self.bus, tex_name=r"\theta", ename="P",
                              tex_ename="P", e_str="ue * p0 * (LV_zi + LV_zu + LV_zl * v / vb)")
            self.v = ExtAlgeb(model="Bus", src="v", indexer=self.bus, tex_name="V", ename="Q", tex_ename="Q",
                              e_str="ue * q0 * (LV_zi + LV_zu + LV_zl * v / vb)")
            self.LV = Limiter(u=self.v, lower=self.vb, upper=self.vbig, no_warn=True)

    class PQLV(PQLVData, PQLVModel):
        """Constant P/Q with a break to constant current below vb."""

        def __init__(self, system, config):
            PQLVData.__init__(self)
            PQLVModel.__init__(self, system, config)

    from andes.models.motor.motor3 import Motor3

    class Motor3AC(Motor3):
        """ANDES Motor3 with a running-motor initial guess for the power flow (slip 0.02 instead of 1.0, which
        makes the PF Newton diverge with several motors)."""

        def __init__(self, system, config):
            super().__init__(system, config)
            self.slip.v_str = "0.02 * u"
            self.Id.v_str = "0.5 * u"
            self.Iq.v_str = "0.2 * u"

    return PQLV, Motor3AC


def register():
    import andes.models

    der_model.register()
    if MODULE in sys.modules:
        return
    m = types.ModuleType(MODULE)
    m.PQLV, m.Motor3AC = _define()
    sys.modules[MODULE] = m
    andes.models.file_classes.append((MODULE.rsplit(".", 1)[1], ["PQLV", "Motor3AC"]))


def prepare():
    register()
    if (PYCODE / "Motor3AC.py").is_file():
        return PYCODE
    r = subprocess.run([sys.executable, "-c", "import lvload; lvload._generate()"], cwd=str(Path(__file__).parent),
                       capture_output=True, text=True)
    if r.returncode or not (PYCODE / "PQLV.py").is_file():
        raise RuntimeError(r.stderr[-2000:])
    return PYCODE


def _generate():
    import andes

    register()
    tmp = PYCODE.with_name("pycode.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(der_model.PYCODE_PATH, tmp, ignore=shutil.ignore_patterns("__pycache__"))
    andes.config_logger(stream_level=40, file=False, log_path="/tmp")
    s = andes.System(options={"pycode_path": str(tmp), "default_config": True, "no_output": True}, no_undill=True)
    s.prepare(quick=True, incremental=True, nomp=True)
    shutil.rmtree(PYCODE, ignore_errors=True)
    tmp.rename(PYCODE)
