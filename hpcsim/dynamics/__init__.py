"""Dynamic T&D frequency co-simulation with DERs: PFR (droop), SFR (AGC) and voltage-sensitivity headroom.

Pure physics lives in :mod:`droop`, :mod:`agc`, :mod:`der` and :mod:`headroom` (numpy/scipy only); the solvers
are the shared adapters: ANDES's TDS with the DER model in :mod:`hpcsim.transmission` (``dynamic``,
``der_model``), the DER feeder in :mod:`hpcsim.distribution.der_feeder`;
the HELICS roles in :mod:`roles` and their loops in :mod:`drivers` (run by the one federate entry point,
:mod:`hpcsim.federation.federate`); the local runner in :mod:`runner`.
"""

from __future__ import annotations

from hpcsim.errors import DynamicsError

__all__ = ["DynamicsError"]
