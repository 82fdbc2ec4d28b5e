"""The HELICS interfaces of a dynamic study's federates: keys, types and units, declared once per role.

:func:`wiring` gives each role's publications and subscriptions by label; the plan writes them into each
federate's HELICS config (:mod:`hpcsim.federation.helics_config`) and the role takes the handles HELICS
registered by the same labels (``Role.register``).

T → feeder: bus voltage (complex, pu) and the DER powers ANDES computes (vector, MW); feeder → T: the feeder's
gross load (complex, MVA) and, every headroom interval, its DERs' VSM limits (vector, MW); T → AGC: frequency
(Hz), ACE (MW), unit status (vector); AGC → T: thermal and DER set points (vectors, MW).
"""

from __future__ import annotations

from collections.abc import Mapping

from hpcsim.federation.helics_config import Interface

DYNAMIC_ROLES = ("tds", "dfeeder", "agc")  # a dynamic study's federates: transmission (TDS), feeders, AGC

F_KEY, ACE_KEY, ONLINE_KEY = "hpcsim/dyn/f_hz", "hpcsim/dyn/ace_mw", "hpcsim/dyn/online"
AGC_THERMAL_KEY, AGC_DER_KEY = "hpcsim/dyn/agc/thermal_mw", "hpcsim/dyn/agc/der_mw"


def v_key(bus: int) -> str:
    return f"hpcsim/dyn/bus_{bus}/v_pu"


def der_key(bus: int) -> str:
    return f"hpcsim/dyn/bus_{bus}/der_p_mw"


def load_key(bus: int) -> str:
    return f"hpcsim/dyn/feeder_{bus}/s_gross_mva"


def vsm_key(bus: int) -> str:
    return f"hpcsim/dyn/feeder_{bus}/p_vsm_mw"


F = Interface(F_KEY, "double", "Hz")
ACE = Interface(ACE_KEY, "double", "MW")
ONLINE = Interface(ONLINE_KEY, "vector", "")
AGC_THERMAL = Interface(AGC_THERMAL_KEY, "vector", "MW")
AGC_DER = Interface(AGC_DER_KEY, "vector", "MW")


def _voltage(bus: int) -> Interface:
    return Interface(v_key(bus), "complex", "pu")


def _ders(bus: int) -> Interface:
    return Interface(der_key(bus), "vector", "MW")


def _load(bus: int) -> Interface:
    return Interface(load_key(bus), "complex", "MVA")


def _vsm(bus: int) -> Interface:
    return Interface(vsm_key(bus), "vector", "MW")


Wiring = tuple[dict, dict, bool]  # (publications by label, subscriptions by label, uninterruptible)


def wiring(role: Mapping) -> Wiring:
    """Publications and subscriptions of a dynamic federate by label, from its role settings; the TDS
    federate is uninterruptible (each interval is granted once every other federate has answered)."""
    kind = role["role"]
    if kind == "tds":
        pubs: dict = {"f": F, "ace": ACE, "online": ONLINE}
        subs: dict = {"thermal": AGC_THERMAL}
        n_der = 0
        for f in role["feeders"]:
            b = int(f["bus"])
            pubs[("v", b)], pubs[("der", b)] = _voltage(b), _ders(b)
            subs[("load", b)] = _load(b)
            if f["der_names"] and role["headroom"]:
                subs[("vsm", b)] = _vsm(b)
            n_der += len(f["der_names"])
        if n_der:
            subs["der"] = AGC_DER
        return pubs, subs, True
    if kind == "dfeeder":
        b = int(role["bus"])
        pubs = {"load": _load(b)}
        if role["der_names"] and role["headroom"]:
            pubs["vsm"] = _vsm(b)
        return pubs, {"v": _voltage(b), "der": _ders(b)}, False
    if kind == "agc":
        pubs = {"thermal": AGC_THERMAL} | ({"der": AGC_DER} if role["n_der"] else {})
        return pubs, {"f": F, "ace": ACE, "online": ONLINE}, False
    raise ValueError(f"unknown dynamic federate role {kind!r}")


def handles(role: Mapping, pubs: Mapping, subs: Mapping) -> tuple[dict, dict]:
    """The role's handles by label, from the handles by key that HELICS registered."""
    p, s, _ = wiring(role)
    return {k: pubs[i.key] for k, i in p.items()}, {k: subs[i.key] for k, i in s.items()}
