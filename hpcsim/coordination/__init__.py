"""Feeder voltage coordination for a DER study: tap settings that put every node inside the voltage limits.

Neither IEEE test feeder is inside 0.95–1.05 pu as published (IEEE 34: 0.905 pu at bus 890 behind the fixed
24.9/4.16 kV transformer; IEEE 8500: the substation regulator holds 126.5 V = 1.054 pu while secondaries sag to
0.93 pu), and 5 MW of DERs on a 1.8 MW feeder lifts voltages further. Before DERs are connected, a utility
re-coordinates the feeder: regulator set points and transformer no-load taps. :func:`coordinate` does that once,
at the study's operating point (source voltage of the first exchange, DERs at dispatch, load multiplier 1).

Levers (:func:`find_levers`): every transformer a ``RegControl`` drives (its controlled winding, its own tap
range and step), and every other transformer as a no-load tap changer on winding 1 (±2 steps of 2.5 %, the
usual distribution-transformer range).

Zones (:func:`zone_weights`): a tap scales the voltages downstream of it. Walking the network from the source
node by node, each node carries the signed weights of the taps upstream of it (+1 for a winding on the far side,
−1 for the near side); a transformer whose windings mix phases (delta–wye) gives its secondary nodes the mean of
its primary nodes' weights. Network devices (regulators, and taps whose zone is large or holds another tap) get
measured sensitivities — one solve per lever, because the whole feeder responds (constant-power loads, phase
coupling: one substation-regulator step moves the far end of the IEEE 8500 twice as much as its own bus). Small
leaf zones (service transformers) get the zone model ``ΔV_i = w_ik · V_i · step_k / tap_k`` (:func:`sensitivity`).

Choice (:func:`choose_steps`, pure), with S the sensitivities and x the integer steps:

    max t   s.t.   V_min,i + t ≤ V_i + (S x)_i ≤ V_max,i − t,   x_lo ≤ x ≤ x_hi,   t ≤ margin

where the per-node limits are the study's limits tightened by how far node i drifts over the run
(:func:`node_limits`): ``V_min,i = V_min + drop_i``, ``V_max,i = V_max − rise_i``, with drop and rise measured at
the run's extremes (lightest/heaviest load multiplier × lowest/highest source voltage, regulators and capacitors
acting: :func:`drift`) plus half a regulator band for nodes behind a regulator (:func:`band_allowance`). Without
extremes the limits are the study's own (a single operating point).

solved as a MILP (SciPy's HiGHS ``milp``) with the network devices integer and the small zones relaxed; the
small zones then get their exact integer step by enumeration (they are independent once the network steps are
fixed), and network moves that buy no clearance are undone one step at a time (fewest changes). The
linearization is refined by re-solving the feeder and repeating. Regulators finally get ``vreg`` equal to the
voltage they see at the chosen tap, a 1-V band and no line-drop compensation, so their control holds that tap at the
operating point and still acts when the operating point moves. The result is a list of OpenDSS ``Edit``
commands that turn the published feeder into the coordinated one.

Modules: :mod:`~hpcsim.coordination.settings` (the tuning, one frozen :class:`CoordinationSettings`; every
function takes ``settings=DEFAULT``), :mod:`~hpcsim.coordination.milp` (the pure part: numpy/SciPy),
:mod:`~hpcsim.coordination.zones` (levers and the topology walk), :mod:`~hpcsim.coordination.driver` (the rounds on
the OpenDSS circuit) and :mod:`~hpcsim.coordination.cachekey` (what a cached coordination is keyed by).
"""

from __future__ import annotations

from hpcsim.coordination.driver import Coordination, coordinate
from hpcsim.coordination.settings import DEFAULT, CoordinationSettings

__all__ = ["DEFAULT", "Coordination", "CoordinationSettings", "coordinate"]
