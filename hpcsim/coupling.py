"""The coupling methods: how the transmission side turns the feeders' answers into its boundary loads.

Pure functions on numpy arrays (no HELICS, no solver), used by the transmission federate
(:mod:`hpcsim.federation.roles`) and tested alone.

- ``gauss-seidel`` (the ANL scheme, the reference): each boundary bus carries the feeders' last power as a
  constant-power load; the transmission solves, publishes voltages, the feeders answer, repeat. A linear fixed
  point: each iteration cuts the mismatch by the product of the network's and the feeders' voltage
  sensitivities (≈ 0.15 per iteration on ACTIVSg200 + 126 IEEE 8500 feeders).
- ``newton``: the feeders also report dS/d|V| (controls held, :meth:`hpcsim.distribution.FeederEngine.
  power_slope`), and each boundary bus carries S(V) = A + B·V², constant power plus constant impedance matched to
  the feeders' power and slope at the voltage they were solved at (:func:`zip_split`). The transmission power
  flow then already sees how the feeders will answer a voltage change, so the exchange converges in a few
  iterations; at the fixed point V equals that voltage and the bus draws exactly the feeders' power — the same
  answer as Gauss–Seidel.
"""

from __future__ import annotations

import numpy as np

METHODS = ("gauss-seidel", "newton")
ACCELERATIONS = ("none", "anderson")
ANDERSON_DEPTH = 3  # differences kept: a few — the map changes when a tap moves, and old history misleads


def bus_sums(bus_pos: np.ndarray, weights: np.ndarray, values: np.ndarray, n_buses: int) -> np.ndarray:
    """Σ weight × value over the feeders of each boundary bus (complex), feeders mapped by ``bus_pos``."""
    w = weights * values
    return np.bincount(bus_pos, weights=w.real, minlength=n_buses) + \
        1j * np.bincount(bus_pos, weights=w.imag, minlength=n_buses)


def zip_split(s0: np.ndarray, slope: np.ndarray, v0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(A, B) of S(V) = A + B·V² with S(V0) = S0 and dS/dV(V0) = J, per bus (complex: P and Q parts apart):
    B = J / (2·V0), A = S0 − J·V0 / 2."""
    v0 = np.asarray(v0, dtype=float)
    b = np.asarray(slope) / (2.0 * v0)
    return np.asarray(s0) - b * v0 * v0, b


def carried(a: np.ndarray, b: np.ndarray, v: np.ndarray) -> np.ndarray:
    """The load the equivalent A + B·V² carries at voltage magnitude V."""
    v = np.asarray(v, dtype=float)
    return np.asarray(a) + np.asarray(b) * v * v


class Anderson:
    """Anderson acceleration (type II, depth ``m``) of the boundary-voltage fixed point x = g(x).

    x is what the transmission side publishes (the voltages the feeders solve at), g(x) the voltages its next
    power flow gives after the feeders answered x. Plain iteration publishes g(x_k); Anderson publishes
    x_{k+1} = g_k − ΔG·γ with γ = argmin ‖f_k − ΔF·γ‖₂ over the last ``m`` differences of the residuals
    f = g(x) − x (Walker & Ni 2011, eq. 2.3). Complex voltages are handled as real pairs. ``reset`` starts a
    new history (each time step).
    """

    def __init__(self, m: int = 3):
        self.m = m
        self.reset()

    def reset(self) -> None:
        self._x: list[np.ndarray] = []
        self._g: list[np.ndarray] = []

    def step(self, x: np.ndarray, g: np.ndarray) -> np.ndarray:
        """The next x to publish, given the x last published and the g it produced."""
        xr = np.concatenate([np.real(x), np.imag(x)])
        gr = np.concatenate([np.real(g), np.imag(g)])
        self._x.append(xr)
        self._g.append(gr)
        if len(self._x) > self.m + 1:
            self._x.pop(0)
            self._g.pop(0)
        if len(self._x) < 2:
            out = gr
        else:
            f = np.array(self._g) - np.array(self._x)  # residuals, oldest first
            d_f = np.diff(f, axis=0).T
            d_g = np.diff(np.array(self._g), axis=0).T
            gamma, *_ = np.linalg.lstsq(d_f, f[-1], rcond=None)
            out = gr - d_g @ gamma
        n = len(x)
        return out[:n] + 1j * out[n:]
