"""The tuning of the voltage coordination, in one place: :class:`CoordinationSettings` and its :data:`DEFAULT`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CoordinationSettings:
    """How the coordination searches (every field changes its answer, so all of them are in its cache key)."""

    fixed_tap_step: float = 0.025
    """pu of winding voltage per step of a transformer no RegControl drives (a no-load tap changer)."""

    fixed_tap_steps: int = 2
    """Steps either way a no-load tap may move (±2 × 2.5 %, the usual distribution-transformer range)."""

    rounds: int = 4
    """Linearize–MILP–apply rounds per pass (the linearization is refined by re-solving the feeder)."""

    passes: int = 3
    """Passes at most: a pass is repeated while switching the controls back on moves a capacitor or a regulator."""

    reg_band_v: float = 1.0
    """Regulator band after coordination, V on the 120-V base (above the 0.75-V tap step, so no hunting)."""

    refine_steps: int = 3
    """Steps either way a network device may move in a refining round (the first round of a pass is unbounded)."""

    local_band_pu: float = 0.03
    """pu: a small-zone tap gets a variable when its zone's clearance is within this of the target clearance."""

    measure_zone_nodes: int = 50
    """Nodes: a tap whose zone holds more is a network device (its sensitivity is measured, one solve per lever)."""

    milp_node_limit: int = 25
    """Branch-and-bound nodes per MILP. The search is bounded by nodes, not seconds: a wall-time limit (5 s, as it
    was) made the chosen taps depend on how busy the machine was (the IEEE 8500's MILPs stopped after 0–15 nodes),
    and with them the run. A node limit gives the same answer on any machine."""

    milp_time_limit_s: float = 120.0
    """s of wall time per MILP: only a safety net (:attr:`milp_node_limit` is the bound that acts)."""

    milp_gap: float = 0.02
    """Relative MIP gap at which HiGHS stops (many tap combinations tie)."""

    exact_milp_columns: int = 60
    """Taps: up to this many, the MILP is solved with all of them integer (no relaxed small zones)."""

    trim_tolerance_pu: float = 0.0002
    """pu of clearance a network move must buy to be kept (and a round to be accepted)."""


DEFAULT = CoordinationSettings()
