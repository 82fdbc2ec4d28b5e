"""Typed role configs: a config file's role settings round-trip through their dataclass, and a key the role does not
declare (or a declared key that is missing) is one line naming it — the plan and the federate of one version
agree on every key."""

from __future__ import annotations

import dataclasses
import json

import pytest

from hpcsim.dynamics.configs import CONFIGS, AgcConfig, DerFeederConfig, Governor, TdsConfig, TdsFeeder
from hpcsim.errors import FederateError
from hpcsim.federation.role_config import from_dict, to_dict

pytestmark = pytest.mark.unit

COMMON = {"study": "s", "run_dir": "..", "control_s": 0.5, "ticks": 4, "exchange_s": 1.0, "exchange_ticks": 2,
          "agc_ticks": 8, "headroom_ticks": 20, "flush_ticks": 20, "der_kva": 900.0, "der_kw": 500.0,
          "headroom": True, "f0_hz": 50.0, "governors": [{"idx": "TG1", "syn": 1, "r_pu": 0.05, "sn_mva": 100.0}],
          "load_mult": [1.0, 0.98, 1.01]}
AGC = {**COMMON, "role": "agc", "agc": True, "agc_s": 4.0, "agc_kp": 0.1, "agc_ki": 0.1, "agc_deadband_hz": 0.005,
       "agc_limit_mw": 100, "der_agc_share": 0.1, "n_der": 20}


def test_a_config_round_trips_through_json_with_its_nested_types():
    tds = {**COMMON, "role": "tds", "case": "ieee14/ieee14_full.xlsx", "tds_step_s": 0.04, "droop_gain_pu": 20.0,
           "pfr_deadband_hz": 0.017, "balance_gen": "5", "trip_gen": "", "trip_s": 5.0, "bias_mw_per_01hz": 8.0,
           "mppt_mw": [[0.8, 0.81], [0.79, 0.8]], "feeder_of_bus": {"4": "ieee34"},
           "feeders": [{"bus": 4, "der_names": ["DER_4_01", "DER_4_02"], "scale": 25.0, "p0_mw": 47.8,
                        "q0_mvar": 4.9}]}
    cfg = from_dict(TdsConfig, json.loads(json.dumps(tds)))
    assert cfg.governors == (Governor("TG1", 1, 0.05, 100.0),)
    assert cfg.feeders == (TdsFeeder(4, ("DER_4_01", "DER_4_02"), 25.0, 47.8, 4.9),)
    assert cfg.mppt_mw == ((0.8, 0.81), (0.79, 0.8)) and cfg.load_mult == (1.0, 0.98, 1.01)
    assert to_dict(cfg) == tds  # same keys, same order, same values
    assert list(to_dict(cfg)) == list(tds)


def test_an_integer_given_for_a_float_becomes_a_float_and_nothing_else_is_coerced():
    cfg = from_dict(AgcConfig, AGC)
    assert cfg.agc_limit_mw == 100.0 and isinstance(cfg.agc_limit_mw, float)
    assert cfg.n_der == 20 and isinstance(cfg.n_der, int) and cfg.agc is True


def test_an_undeclared_key_is_one_line_naming_it_and_the_role():
    with pytest.raises(FederateError, match=r"agc1: unknown key 'agc_gain'"):
        from_dict(AgcConfig, {**AGC, "agc_gain": 2.0}, "agc1")


def test_a_missing_key_is_one_line_naming_it():
    cfg = {k: v for k, v in AGC.items() if k != "agc_kp"}
    with pytest.raises(FederateError, match=r"missing key 'agc_kp'"):
        from_dict(AgcConfig, cfg)


def test_a_nested_table_is_checked_too():
    bad = {**COMMON, "governors": [{"idx": "TG1", "syn": 1, "r_pu": 0.05}]}
    with pytest.raises(FederateError, match=r"governors\[0\]: missing key 'sn_mva'"):
        from_dict(AgcConfig, {**AGC, **bad})


def test_every_dynamic_role_has_a_config_and_every_config_declares_its_role():
    assert set(CONFIGS) == {"tds", "dfeeder", "agc"}
    for cls in (TdsConfig, DerFeederConfig, AgcConfig):
        assert "role" in {f.name for f in dataclasses.fields(cls)}
