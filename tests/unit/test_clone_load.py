"""clone_load = "bus": the load multiplier that makes K clones draw their bus's PD."""

from __future__ import annotations

import pytest

from hpcsim.errors import StudyError
from hpcsim.federation.layout import clone_multiplier
from hpcsim.study import load_study

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("pd", "k", "curve"), [(23.74, 3, (0.35, 10.773, 0.9)), (10.8, 2, (0.35, 10.773, 0.9)),
                                                (500.0, 47, (0.35, 10.773, 0.9)), (7.0, 3, (0.0, 3.466, 0.0))])
def test_multiplier_makes_k_clones_draw_the_bus_load(pd, k, curve):
    m = clone_multiplier(pd, k, curve)
    c0, c1, c2 = curve
    assert k * (c0 + c1 * m + c2 * m * m) == pytest.approx(pd, rel=1e-12)
    assert m > 0


def test_a_bus_below_the_no_load_losses_of_its_clones_is_an_error():
    with pytest.raises(StudyError, match="below one clone's no-load losses"):
        clone_multiplier(0.5, 3, (0.35, 10.773, 0.9))


def test_clone_load_is_validated(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('[transmission]\ncase = "ACTIVSg200"\n[distribution]\nclone_load = "peak"\n')
    with pytest.raises(StudyError, match=r"clone_load 'peak' must be 'nominal' or 'bus'"):
        load_study(path)
    path.write_text('[transmission]\ncase = "ACTIVSg200"\n[distribution]\nclone_load = "bus"\n')
    assert load_study(path).clone_load == "bus"


def test_operating_point_keys_default_with_clone_load_and_are_validated(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('[transmission]\ncase = "ACTIVSg200"\n[distribution]\nclone_load = "bus"\n')
    s = load_study(path)
    assert s.keeps_residual and s.generator_voltage == "solution"
    path.write_text('[transmission]\ncase = "ACTIVSg200"\n')
    s = load_study(path)
    assert not s.keeps_residual and s.generator_voltage == "setpoint"
    path.write_text('[transmission]\ncase = "ACTIVSg200"\ngen_voltage = "flat"\n')
    with pytest.raises(StudyError, match=r"gen_voltage 'flat' must be 'setpoint' or 'solution'"):
        load_study(path)
    path.write_text('[transmission]\ncase = "ACTIVSg200"\n[distribution]\nresidual_load = "yes"\n')
    with pytest.raises(StudyError, match=r"residual_load"):
        load_study(path)
    path.write_text('[transmission]\ncase = "ACTIVSg200"\n[distribution]\nclone_load = "bus"\n'
                    '[coupling]\nstart = "predicted"\n')
    with pytest.raises(StudyError, match=r"needs \[coupling\] start = 'solved'"):
        load_study(path)
