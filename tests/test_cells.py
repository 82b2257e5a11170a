"""Cell identity (``robustbench_seg.results.cells``): every name the run files hold reads back
as itself, with the meaning the package gave it before cells were a type."""

from __future__ import annotations

import numpy as np
import pytest

from corruptions import make_protocol
from corruptions.registry import CORRUPTIONS
from robustbench_seg import stats
from robustbench_seg.data.datasets import DATASETS
from robustbench_seg.errors import RobustSegError
from robustbench_seg.results.cells import Cell, cell_name, corruption_condition, severity_groups

# The category of each corruption as results.csv has written it (corruptions.registry, the
# Cityscapes-C grouping of the four validation corruptions).
CATEGORY = {
    "gaussian_noise": "noise", "shot_noise": "noise", "impulse_noise": "noise",
    "defocus_blur": "blur", "glass_blur": "blur", "motion_blur": "blur", "zoom_blur": "blur",
    "snow": "weather", "frost": "weather", "fog": "weather", "brightness": "digital",
    "contrast": "digital", "elastic_transform": "digital", "pixelate": "digital",
    "jpeg_compression": "digital", "speckle_noise": "noise", "gaussian_blur": "blur",
    "spatter": "weather", "saturate": "digital",
}  # fmt: skip

# The natural cells the datasets name, with (figure, severity) as results.csv writes them.
NATURAL = {
    "foggy-cityscapes:fog-1": ("foggy-cityscapes:fog", 1),
    "foggy-cityscapes:fog-2": ("foggy-cityscapes:fog", 2),
    "foggy-cityscapes:fog-3": ("foggy-cityscapes:fog", 3),
    "acdc:fog": ("acdc:fog", 0),
    "acdc:night": ("acdc:night", 0),
    "acdc:rain": ("acdc:rain", 0),
    "acdc:snow": ("acdc:snow", 0),
    "dark-zurich:night": ("dark-zurich:night", 0),
}


# The helpers the package split names with before this module (runs.py, stats.py), verbatim:
# the new type must give the same answers on every name written so far.
def _old_natural_parts(cell: str) -> tuple[str, int]:
    head, sep, last = cell.rpartition("-")
    return (head, int(last)) if sep and last.isdigit() and ":" in head else (cell, 0)


def _old_columns(cell: str) -> tuple[str, str, int]:
    """``results_frame``'s corruption, category and severity of a cell."""
    if cell == "clean":
        return "clean", "clean", 0
    if ":" in cell:
        return (*_old_natural_parts(cell)[:1], "natural", _old_natural_parts(cell)[1])
    corruption, _, sev = cell.rpartition("-")
    return corruption, CORRUPTIONS[corruption].category, int(sev)


def _old_severity_groups(cells):
    groups = {}
    for cell in cells:
        if cell != "clean":
            groups.setdefault(cell.rpartition("-")[0], []).append(cell)
    return groups


def _protocol_cells() -> list[str]:
    out = []
    for corruptions in ("benchmark", "all", "extra"):
        for severities in ("protocol", "all"):
            for c, s in make_protocol(corruptions, severities).variants():
                if cell_name(c, s) not in out:
                    out.append(cell_name(c, s))
    return out


ALL_CORRUPTION_CELLS = [f"{c}-{s}" for c in CORRUPTIONS for s in range(1, 6)]


def test_the_grid_is_every_corruption_and_severity():
    assert len(CORRUPTIONS) == 19 and len(ALL_CORRUPTION_CELLS) == 95
    assert sorted(_protocol_cells()) == sorted(ALL_CORRUPTION_CELLS)
    assert len(make_protocol("benchmark", "protocol").variants()) == 72  # 4 noises x 3 + 12 x 5


@pytest.mark.parametrize("name", ["clean", *ALL_CORRUPTION_CELLS, *NATURAL])
def test_names_round_trip_with_todays_columns(name):
    cell = Cell.parse(name)
    assert cell.name == name and str(cell) == name
    assert Cell.parse(cell.name) == cell
    assert (cell.figure, cell.category, cell.severity) == _old_columns(name)


def test_corruption_cells():
    for c, category in CATEGORY.items():
        for s in range(1, 6):
            cell = Cell.parse(f"{c}-{s}")
            assert (cell.kind, cell.corruption, cell.severity) == ("corruption", c, s)
            assert cell.category == category and cell.in_mpc
            assert cell == Cell.of_corruption(c, s)
    assert Cell.parse("jpeg_compression-2").label() == "JPEG compression 2"
    assert Cell.parse("zoom_blur-1").in_mpc  # an extra corruption, when evaluated, enters mPC


def test_clean_cell():
    cell = Cell.parse("clean")
    assert cell == Cell.clean() and cell_name(None, None) == "clean"
    assert (cell.kind, cell.category, cell.figure, cell.severity, cell.in_mpc) == (
        "clean", "clean", "clean", 0, False,
    )  # fmt: skip


def test_natural_cells_of_every_dataset():
    named = {
        Cell.of_natural(d.name, c).name: (d.name, c)
        for d in DATASETS.values()
        for c in d.conditions
    }
    assert set(named) == set(NATURAL)
    for name, (dataset, condition) in named.items():
        cell = Cell.parse(name)
        assert (cell.kind, cell.dataset, cell.condition) == ("natural", dataset, condition)
        assert (cell.figure, cell.severity) == NATURAL[name] == _old_natural_parts(name)
        assert cell.category == "natural" and not cell.in_mpc
    titles = {d.name: d.title for d in DATASETS.values()}
    assert Cell.parse("acdc:night").label(titles) == "ACDC night"
    assert Cell.parse("foggy-cityscapes:fog").label(titles) == "Foggy Cityscapes fog"


def test_groups_as_the_statistics_grouped_them():
    cells = ["clean", *_protocol_cells()]
    assert severity_groups(cells) == _old_severity_groups(cells)
    assert list(severity_groups(cells)["gaussian_noise"]) == [
        f"gaussian_noise-{s}" for s in range(1, 6)
    ]
    # Natural cells never entered mPC (summary_frame left them out): they stay out.
    assert severity_groups(["clean", "fog-1", "acdc:fog", "foggy-cityscapes:fog-2"]) == {
        "fog": ["fog-1"]
    }


def test_an_attack_is_not_grouped_as_a_corruption():
    cell = Cell.parse("segpgd-linf-4")
    assert (cell.kind, cell.attack, cell.norm, cell.epsilon) == ("adversarial", "segpgd", "linf", 4)
    assert cell.category == "adversarial" and not cell.in_mpc
    assert Cell.of_attack("pgd", "l2", 0.5).name == "pgd-l2-0.5"
    assert severity_groups(["clean", "fog-1", "segpgd-linf-4"]) == {"fog": ["fog-1"]}
    miou = np.array([[0.5, 0.25, 0.1]])
    figures = stats.table5_figures(["clean", "fog-1", "segpgd-linf-4"], miou)
    assert sorted(figures) == ["clean", "fog", "mPC", "rPC"]
    assert figures["mPC"][0] == pytest.approx(25.0)


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("Clean", "not a cell name"),
        ("", "not a cell name"),
        ("fog", "not a cell name"),
        ("fog-1-2", "not a cell name"),
        ("fog_3", "not a cell name"),
        ("acdc:", "not a cell name"),
        (":night", "not a cell name"),
        ("acdc:fog:1", "not a cell name"),
        ("gaussian noise-3", "not a cell name"),
        ("pgd-linf-", "not a cell name"),
        ("pgd-linf-x", "not a cell name"),
        ("fgo-2", "unknown corruption 'fgo'"),
        ("segpgd-4", "unknown corruption 'segpgd'"),
        ("fog-0", "severity is written 1..5"),
        ("fog-6", "severity is written 1..5"),
        ("fog-03", "severity is written 1..5"),
        ("pgd-linf-4.0", "written as '4'"),
        ("pgd-linf-0", "positive"),
    ],
)
def test_unknown_shapes_are_refused_in_one_line(name, words):
    with pytest.raises(RobustSegError) as err:
        Cell.parse(name)
    message = str(err.value)
    assert words in message and "\n" not in message


def test_fields_that_have_no_name_are_refused():
    for bad in (
        lambda: Cell.of_corruption("fog", 9),
        lambda: Cell.of_corruption("fgo", 1),
        lambda: Cell("weather"),
        lambda: Cell("corruption", corruption="fog", severity=2, dataset="acdc"),
        lambda: Cell.of_natural("ACDC", "fog"),
        lambda: Cell("natural", dataset="acdc", condition="fog", severity=2),
        lambda: Cell.of_attack("pgd", "l7", 4),
    ):
        with pytest.raises(RobustSegError) as err:
            bad()
        assert "\n" not in str(err.value)


def test_a_condition_as_a_user_writes_it():
    assert corruption_condition("fog-2", 3) == ("fog", "2")
    assert corruption_condition("motion_blur:5", 3) == ("motion_blur", "5")
    assert corruption_condition(" snow ", 3) == ("snow", "3")
