"""Dynamic T&D frequency co-simulation with DERs: PFR (droop), SFR (AGC) and voltage-sensitivity headroom.

Pure physics lives in :mod:`droop`, :mod:`agc`, :mod:`der` and :mod:`headroom` (numpy/scipy only); the ANDES side
in :mod:`andes_der` (the DER model) and :mod:`tds` (the time-domain wrapper); the OpenDSS side in :mod:`feeder`;
the HELICS roles in :mod:`roles` and their loops in :mod:`drivers` (run by the one federate entry point,
:mod:`hpcsim.federation.federate`); the local runner in :mod:`runner`.
"""

from __future__ import annotations

from hpcsim.errors import DynamicsError

__all__ = ["DynamicsError"]
