"""The distribution side: one OpenDSS feeder engine (:mod:`.engine`: separate or shared, warm starts), the
feeder curves measured with it (:mod:`.curves`) and the DER feeder of the dynamic studies built on it
(:mod:`.der_feeder`). The voltage coordination that re-tunes a DER feeder is :mod:`hpcsim.coordination`."""

from hpcsim.distribution.curves import FeederCurve, feeder_curve, loading_curve, nominal_load_mw
from hpcsim.distribution.engine import (
    COARSE_TOLERANCE,
    FINE_BELOW_DV_PU,
    FINE_TOLERANCE,
    SLOPE_DV_PU,
    CloneState,
    ControlState,
    FeederEngine,
    FeederResult,
    SharedEngine,
    SolvedState,
    WarmStarts,
)

__all__ = ["COARSE_TOLERANCE", "FINE_BELOW_DV_PU", "FINE_TOLERANCE", "SLOPE_DV_PU", "CloneState", "ControlState",
           "FeederCurve", "FeederEngine", "FeederResult", "SharedEngine", "SolvedState", "WarmStarts",
           "feeder_curve", "loading_curve", "nominal_load_mw"]
