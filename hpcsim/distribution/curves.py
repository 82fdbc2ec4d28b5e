"""What a feeder model draws at its substation as a function of its load multiplier and source voltage
(:class:`FeederCurve`, measured once per model with a :class:`~hpcsim.distribution.engine.FeederEngine` and
cached), and its nominal load."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hpcsim import cache
from hpcsim.cases import FeederModel
from hpcsim.distribution.engine import CloneState, FeederEngine
from hpcsim.errors import CaseError, SolverError

LOADING_MULTIPLIERS = (0.25, 0.5, 1.0)
CURVE_VOLTAGES_PU = (0.97, 1.03)  # the draw is fitted at these source voltages and interpolated between them
CURVE_VERSION = 2  # bump when the solves below change what a cached curve means


@dataclass(frozen=True)
class FeederCurve:
    """What a feeder model draws at its substation, regulators and capacitors acting:

    - ``p_total``: P_total(m) ≈ c0 + c1·m + c2·m² (MW, sum over phases) at 1 pu and load multiplier m, fitted
      exactly through m = 0.25, 0.5 and 1 (c0 ≈ the service transformers' no-load losses, c1 ≈ Σ Load kW,
      c2 ≈ series losses ∝ current²) — what ``clone_load = "bus"`` solves for;
    - ``s_low``, ``s_high``: the positive-sequence S(m), fitted the same way (complex coefficients) at source
      voltages 0.97 and 1.03 pu; :meth:`draw` interpolates linearly in V between them.

    :meth:`draw` is the informed first guess of the coupling (12 solves, cached)."""

    p_total: tuple[float, float, float]
    s_low: tuple[complex, complex, complex]
    s_high: tuple[complex, complex, complex]

    def draw(self, load_mult: float, v_pu: float = 1.0) -> complex:
        """Predicted positive-sequence power (MW + j Mvar) of one clone at ``load_mult`` and source ``v_pu``."""
        lo, hi = CURVE_VOLTAGES_PU
        w = (v_pu - lo) / (hi - lo)
        return (1.0 - w) * _poly(self.s_low, load_mult) + w * _poly(self.s_high, load_mult)


def _poly(c: tuple[complex, complex, complex], m: float) -> complex:
    return c[0] + c[1] * m + c[2] * m * m


def _quadratic(values: list[complex]) -> tuple[complex, complex, complex]:
    c2, c1, c0 = np.polyfit(LOADING_MULTIPLIERS, values, 2)
    return complex(c0), complex(c1), complex(c2)


def _measure_curve(model: FeederModel) -> FeederCurve:
    with FeederEngine(model) as engine:
        p_total = [engine.solve(CloneState("loading", 0, load_mult=m)).p_total_mw for m in LOADING_MULTIPLIERS]
        fits = []
        for v in CURVE_VOLTAGES_PU:
            res = [engine.solve(CloneState("loading", 0, load_mult=m, v_pu=v)) for m in LOADING_MULTIPLIERS]
            fits.append(_quadratic([complex(r.p_mw, r.q_mvar) for r in res]))
    return FeederCurve(tuple(c.real for c in _quadratic(p_total)), fits[0], fits[1])


def feeder_curve(model: FeederModel) -> FeederCurve:
    """:class:`FeederCurve` of a model: computed once (nine OpenDSS solves, ~1–2 s for the IEEE 8500) and cached
    (:mod:`hpcsim.cache`) under a key of the model's files, its solve settings, opendssdirect's version and
    :data:`CURVE_VERSION`."""
    entry = cache.key(files=cache.files_digest(p for p in model.folder.rglob("*") if p.is_file()),
                      entry=model.entry.name, settings=model.solve_settings, source=model.source,
                      versions=cache.package_versions("opendssdirect.py", "dss-python"),
                      multipliers=LOADING_MULTIPLIERS, voltages=CURVE_VOLTAGES_PU, version=CURVE_VERSION)
    hit = cache.load("feeder-curves", entry)
    pair = lambda cs: [[c.real, c.imag] for c in cs]  # noqa: E731
    if hit is not None:
        return FeederCurve(tuple(hit["p_total"]), tuple(complex(*c) for c in hit["s_low"]),
                           tuple(complex(*c) for c in hit["s_high"]))
    try:
        curve = _measure_curve(model)
    except SolverError as exc:  # before any run starts: the model itself is bad input (exit 2)
        raise CaseError(str(exc)) from None
    cache.store("feeder-curves", entry, {"model": model.name, "p_total": list(curve.p_total),
                                         "s_low": pair(curve.s_low), "s_high": pair(curve.s_high)})
    return curve


def loading_curve(model: FeederModel) -> tuple[float, float, float]:
    """(c0, c1, c2) of the feeder's substation power P_total(m) ≈ c0 + c1·m + c2·m² (MW) at 1 pu
    (:class:`FeederCurve`)."""
    return feeder_curve(model).p_total


def nominal_load_mw(model: FeederModel) -> float:
    """Σ Load kW of a feeder model, in MW (10.773 MW for the IEEE 8500-node feeder)."""
    try:
        with FeederEngine(model) as engine:
            return engine.nominal_load_kw() / 1000.0
    except SolverError as exc:
        raise CaseError(str(exc)) from None
