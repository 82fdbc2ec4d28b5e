"""The transmission side: one ANDES adapter (:mod:`.andes_system`) under the power flow of the steady-state
studies (:mod:`.power_flow`) and the time-domain simulation of the dynamic ones (:mod:`.dynamic`, with the DER
frequency model of :mod:`.der_model`)."""

from hpcsim.transmission.andes_system import PF_TOLERANCE_PU, PYCODE_PATH, load, prepare
from hpcsim.transmission.power_flow import (
    CONTINUATION_STEPS,
    EQUIVALENT_PREFIX,
    PowerFlowError,
    TransmissionNetwork,
)

__all__ = ["CONTINUATION_STEPS", "EQUIVALENT_PREFIX", "PF_TOLERANCE_PU", "PYCODE_PATH", "PowerFlowError",
           "TransmissionNetwork", "load", "prepare"]
