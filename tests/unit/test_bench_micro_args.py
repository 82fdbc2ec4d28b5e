"""Argument checks and the least-squares fit of the benchmark micro-measurements (no process is started)."""

from __future__ import annotations

import pytest

from hpcsim.bench.exchange import echo_share, fit_exchange, measure_exchange
from hpcsim.bench.memory import measure_clone_memory

pytestmark = pytest.mark.unit


def test_exchange_arguments_are_validated_and_values_shared_contiguously():
    with pytest.raises(ValueError, match="echo_federates"):
        measure_exchange(1, echo_federates=2)
    with pytest.raises(ValueError, match="sub_brokers"):
        measure_exchange(10, sub_brokers=4, echo_federates=2)
    shares = [echo_share(10, 3, k) for k in range(3)]
    assert [len(s) for s in shares] in ([3, 4, 3], [4, 3, 3], [3, 3, 4])
    assert [j for s in shares for j in s] == list(range(10))


def test_fit_exchange_recovers_a_known_line():
    latency_s, per_value_s = 4e-4, 2.5e-6
    points = [{"n_values": n, "median_s": latency_s + n * per_value_s} for n in (10, 100, 1000, 5000)]
    fit = fit_exchange(points)
    assert fit == pytest.approx((latency_s, per_value_s), rel=1e-9)
    # a negative intercept is clipped at zero
    assert fit_exchange([{"n_values": n, "median_s": -1e-3 + n * 1e-5} for n in (100, 200)])[0] == 0.0
    with pytest.raises(ValueError, match="distinct"):
        fit_exchange([{"n_values": 10, "median_s": 1e-3}, {"n_values": 10, "median_s": 2e-3}])


def test_clone_memory_arguments_are_validated():
    with pytest.raises(ValueError, match="mode"):
        measure_clone_memory("ieee13", 4, "pooled")
    with pytest.raises(ValueError, match="clones"):
        measure_clone_memory("ieee13", 1, "shared")
