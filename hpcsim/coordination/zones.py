"""The feeder's levers and zones, read from the compiled OpenDSS circuit: which taps can move (:func:`find_levers`)
and which taps each node sits behind, with what sign (:func:`zone_weights`: the topology walk)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, replace

import numpy as np

from hpcsim.coordination.settings import DEFAULT, CoordinationSettings


@dataclass(frozen=True)
class Lever:
    """One tap: a winding of a transformer, its current tap, step and the integer steps it may move."""

    transformer: str
    winding: int
    tap: float
    step: float
    lo_steps: int
    hi_steps: int
    regcontrol: str = ""  # the RegControl driving it ("" for a fixed no-load tap)

    def moved(self, steps: int) -> Lever:
        return replace(self, tap=self.tap + steps * self.step)


def find_levers(dss, settings: CoordinationSettings = DEFAULT) -> list[Lever]:
    """Regulated windings (from each RegControl, with its own tap range and step) and winding 1 of every other
    transformer, as a no-load tap changer of ``settings.fixed_tap_steps`` steps of ``fixed_tap_step`` either way."""
    levers: list[Lever] = []
    regulated = set()
    tx = dss.Transformers
    for rc in dss.RegControls.AllNames():
        dss.RegControls.Name(rc)
        name, wdg = dss.RegControls.Transformer().lower(), int(dss.RegControls.Winding())
        tx.Name(name)
        tx.Wdg(wdg)
        step = (tx.MaxTap() - tx.MinTap()) / max(tx.NumTaps(), 1)
        tap = tx.Tap()
        levers.append(Lever(name, wdg, tap, step, int(np.ceil((tx.MinTap() - tap) / step - 1e-9)),
                            int(np.floor((tx.MaxTap() - tap) / step + 1e-9)), rc.lower()))
        regulated.add(name)
    for name in tx.AllNames():
        if name.lower() in regulated:
            continue
        tx.Name(name)
        tx.Wdg(1)
        levers.append(Lever(name.lower(), 1, tx.Tap(), settings.fixed_tap_step, -settings.fixed_tap_steps,
                            settings.fixed_tap_steps))
    return levers


def _terminals(dss) -> list[list[str]]:
    """The active element's node names per terminal (ground conductors dropped)."""
    buses = [b.split(".")[0].lower() for b in dss.CktElement.BusNames()]
    order = dss.CktElement.NodeOrder()
    nc = dss.CktElement.NumConductors()
    return [[f"{bus}.{n}" for n in order[t * nc:(t + 1) * nc] if n > 0] for t, bus in enumerate(buses)]


def zone_weights(dss, source: str, levers: list[Lever]) -> list[dict[int, float]]:
    """For every node of ``Circuit.AllNodeNames()``: {lever index: signed weight} of the taps upstream of it."""
    lever_of = {(lv.transformer, lv.winding): k for k, lv in enumerate(levers)}
    elements: list[tuple[str, list[list[str]]]] = []
    by_bus: dict[str, list[int]] = {}
    pd = dss.PDElements
    ok = pd.First()
    while ok:
        name = pd.Name().lower()
        if dss.CktElement.Enabled() and not any(dss.CktElement.IsOpen(t + 1, 0)
                                                 for t in range(dss.CktElement.NumTerminals())):
            terms = _terminals(dss)
            if len(terms) >= 2:
                idx = len(elements)
                elements.append((name, terms))
                for t in terms:
                    for bus in {n.split(".")[0] for n in t}:
                        by_bus.setdefault(bus, []).append(idx)
        ok = pd.Next()
    dss.Circuit.SetActiveElement(source)
    src_nodes = _terminals(dss)[0]
    weights: dict[str, dict[int, float]] = {n: {} for n in src_nodes}
    seen_bus = {n.split(".")[0] for n in src_nodes}
    queue = deque(seen_bus)
    done = set()
    while queue:
        bus = queue.popleft()
        for idx in by_bus.get(bus, []):
            if idx in done:
                continue
            done.add(idx)
            name, terms = elements[idx]
            near = next(t for t, nodes in enumerate(terms) if any(n.split(".")[0] == bus for n in nodes))
            src = [weights.get(n, {}) for n in terms[near]]
            for t, nodes in enumerate(terms):
                if t == near:
                    continue
                own: dict[int, float] = {}
                if name.startswith("transformer."):
                    tname = name.split(".", 1)[1]
                    for w, sign in ((t + 1, 1.0), (near + 1, -1.0)):
                        if (tname, w) in lever_of:
                            own[lever_of[(tname, w)]] = sign
                pairwise = len(nodes) == len(terms[near]) and (not name.startswith("transformer.")
                                                                or len(nodes) == 1 or _same_conn(dss, name))
                mean = _mean(src)
                for j, node in enumerate(nodes):
                    if node in weights:
                        continue
                    base = src[j] if pairwise else mean
                    w = dict(base)
                    for k, sign in own.items():
                        w[k] = w.get(k, 0.0) + sign
                    weights[node] = w
                for b in {n.split(".")[0] for n in nodes}:
                    if b not in seen_bus:
                        seen_bus.add(b)
                        queue.append(b)
    return [weights.get(n.lower(), {}) for n in dss.Circuit.AllNodeNames()]


def _same_conn(dss, element: str) -> bool:
    """A transformer whose windings are all wye or all delta maps phase to phase (no 30° mixing)."""
    tx = dss.Transformers
    tx.Name(element.split(".", 1)[1])
    conns = set()
    for w in range(1, tx.NumWindings() + 1):
        tx.Wdg(w)
        conns.add(tx.IsDelta())
    return len(conns) == 1


def _mean(ws: list[dict[int, float]]) -> dict[int, float]:
    if not ws:
        return {}
    out: dict[int, float] = {}
    for w in ws:
        for k, v in w.items():
            out[k] = out.get(k, 0.0) + v / len(ws)
    return out
