"""Cell identity: what one evaluation cell is, parsed from and named as in the run files.

A run evaluates cells; each is named in ``run.json``, ``cells/<cell>.npz`` and ``results.csv``:

| kind | name | fields |
|---|---|---|
| ``clean`` | ``clean`` | — |
| ``corruption`` | ``<corruption>-<severity>`` (``gaussian_noise-3``; Cityscapes-C, Kamann & Rother 2020) | corruption (a name of ``corruptions.registry``: underscores, no hyphen), severity 1..5 |
| ``natural`` | ``<dataset>:<condition>`` (``acdc:night``, ``foggy-cityscapes:fog-2``) | dataset, condition; a condition ending in ``-<digits>`` is a density of its base condition |
| ``adversarial`` | ``<attack>-<norm>-<epsilon>`` (``pgd-linf-4``), reserved for the adversarial issue | attack, norm (``linf``, ``l2``, ``l1``), epsilon |

This module is the one place that splits a cell name; everything else asks a :class:`Cell`.
Every name written so far reads back unchanged (``Cell.parse(name).name == name``), and a name
of no kind's shape is refused in one line rather than grouped under a guess.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields

from corruptions.registry import CORRUPTIONS
from robustbench_seg.errors import RobustSegError

__all__ = [
    "ADVERSARIAL",
    "CLEAN",
    "CORRUPTION",
    "KINDS",
    "NATURAL",
    "NORMS",
    "Cell",
    "cell_name",
    "corruption_title",
    "corruption_condition",
    "severity_groups",
]

CLEAN = "clean"  # the kind, the category and the name of the clean cell
CORRUPTION = "corruption"
NATURAL = "natural"  # the kind and the category of natural-shift cells (``acdc:fog``)
ADVERSARIAL = "adversarial"
KINDS = (CLEAN, CORRUPTION, NATURAL, ADVERSARIAL)
NORMS = ("linf", "l2", "l1")

# Names: lower-case words of letters, digits and underscores; hyphens only where the shape has
# them. A corruption name has no hyphen, so ``segpgd-linf-4`` can never read as a corruption.
_WORD = r"[a-z0-9_]+"
_CORRUPTION = re.compile(rf"({_WORD})-([0-9]+)")
_NATURAL = re.compile(rf"({_WORD}(?:-{_WORD})*):({_WORD}(?:-{_WORD})*)")
_ADVERSARIAL = re.compile(rf"({_WORD})-({'|'.join(NORMS)})-([0-9]+(?:\.[0-9]+)?)")
_SHAPES = (
    "clean, <corruption>-<severity> (gaussian_noise-3), <dataset>:<condition> (acdc:night, "
    "foggy-cityscapes:fog-2) or <attack>-<norm>-<epsilon> (pgd-linf-4)"
)


def _epsilon_text(epsilon: float) -> str:
    return str(int(epsilon)) if float(epsilon).is_integer() else repr(float(epsilon))


def _density(condition: str) -> tuple[str, int]:
    """``fog-2`` -> (``fog``, 2): a condition ending in ``-<digits>`` is a density (the rule
    runs written so far follow); ``night`` -> (``night``, 0)."""
    base, sep, last = condition.rpartition("-")
    return (base, int(last)) if sep and last.isdigit() else (condition, 0)


@dataclass(frozen=True)
class Cell:
    """One evaluation cell. Build it with :meth:`parse`, :meth:`clean`, :meth:`of_corruption`,
    :meth:`of_natural` or :meth:`of_attack`; every field is checked, so that its :attr:`name`
    parses back to it.

    Attributes:
        kind: One of :data:`KINDS`.
        corruption: A corruption cell's corruption (``gaussian_noise``).
        severity: A corruption cell's severity (1..5); a natural cell's density, derived from
            its condition (``fog-2`` -> 2; 0 without); 0 for the other kinds.
        dataset: A natural cell's dataset (``foggy-cityscapes``).
        condition: A natural cell's condition as named (``fog-2``, ``night``).
        attack: An adversarial cell's attack (``pgd``); reserved.
        norm: An adversarial cell's norm (:data:`NORMS`); reserved.
        epsilon: An adversarial cell's budget, the number its name writes (4 in
            ``pgd-linf-4``); reserved: its unit is the adversarial issue's to define.
    """

    kind: str
    corruption: str | None = None
    severity: int = 0
    dataset: str | None = None
    condition: str | None = None
    attack: str | None = None
    norm: str | None = None
    epsilon: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise RobustSegError(f"unknown cell kind {self.kind!r}; kinds: {', '.join(KINDS)}")
        if self.kind == NATURAL and not self.severity and isinstance(self.condition, str):
            object.__setattr__(self, "severity", _density(self.condition)[1])  # derived
        if _split(self._name()) != self._fields():
            raise RobustSegError(f"{self!r} has no cell name that reads back as it")

    def _fields(self) -> dict[str, object]:
        return {k: v for k, v in vars(self).items() if v != _DEFAULTS[k]}

    # ----------------------------------------------------------------------------- building

    @classmethod
    def clean(cls) -> Cell:
        """The clean cell."""
        return cls(CLEAN)

    @classmethod
    def of_corruption(cls, corruption: str, severity: int) -> Cell:
        """``gaussian_noise``, 3 -> the cell ``gaussian_noise-3``."""
        return cls(CORRUPTION, corruption=corruption, severity=int(severity))

    @classmethod
    def of_natural(cls, dataset: str, condition: str) -> Cell:
        """``acdc``, ``night`` -> the cell ``acdc:night``."""
        return cls(NATURAL, dataset=dataset, condition=condition)

    @classmethod
    def of_attack(cls, attack: str, norm: str, epsilon: float) -> Cell:
        """``pgd``, ``linf``, 4 -> the cell ``pgd-linf-4`` (reserved for the adversarial issue)."""
        return cls(ADVERSARIAL, attack=attack, norm=norm, epsilon=float(epsilon))

    @classmethod
    def parse(cls, name: str) -> Cell:
        """The cell a name denotes.

        Raises:
            RobustSegError: A name of no cell's shape, an unknown corruption, a severity out
                of 1..5, or a name that is not the one its cell writes (``fog-03``), in one
                line.
        """
        fields = _split(name) if isinstance(name, str) else None
        if fields is None:
            raise RobustSegError(f"not a cell name: {name!r}; cells are named {_SHAPES}")
        return cls(**fields)

    # ----------------------------------------------------------------------------- reading

    @property
    def name(self) -> str:
        """The name the run files use (``clean``, ``gaussian_noise-3``, ``acdc:night``)."""
        return self._name()

    def _name(self) -> str:
        if self.kind == CORRUPTION:
            return f"{self.corruption}-{self.severity}"
        if self.kind == NATURAL:
            return f"{self.dataset}:{self.condition}"
        if self.kind == ADVERSARIAL:
            eps = "?" if self.epsilon is None else _epsilon_text(self.epsilon)
            return f"{self.attack}-{self.norm}-{eps}"
        return CLEAN

    def __str__(self) -> str:
        return self.name

    @property
    def figure(self) -> str:
        """The figure of the results the cell counts towards (``results.csv``'s ``corruption``
        column): a corruption cell its corruption (the mean over its severities); a natural
        cell its condition, a density its base condition (``foggy-cityscapes:fog-2`` ->
        ``foggy-cityscapes:fog``); clean and an adversarial cell themselves."""
        if self.kind == CORRUPTION:
            return str(self.corruption)
        if self.kind == NATURAL:
            return f"{self.dataset}:{_density(str(self.condition))[0]}"
        return self.name

    @property
    def category(self) -> str:
        """``clean``, the corruption's category (``corruptions.registry.CATEGORIES``),
        ``natural`` or ``adversarial``."""
        if self.kind == CORRUPTION:
            return CORRUPTIONS[str(self.corruption)].category
        return self.kind

    @property
    def in_mpc(self) -> bool:
        """Whether the cell enters mPC, rPC and CD: every corruption cell a run holds (the 16
        of the benchmark protocol, and the extra ones such as ``zoom_blur`` when evaluated);
        never clean, natural or adversarial cells."""
        return self.kind == CORRUPTION

    def label(self, titles: Mapping[str, str] | None = None) -> str:
        """For display: ``clean``, ``Gaussian noise 3``, ``ACDC night`` (a natural cell's
        dataset by its title in ``titles``, else its name), ``pgd linf 4``."""
        if self.kind == CORRUPTION:
            return f"{corruption_title(str(self.corruption))} {self.severity}"
        if self.kind == NATURAL:
            title = (titles or {}).get(str(self.dataset), str(self.dataset))
            return f"{title} {self.condition}".strip()
        if self.kind == ADVERSARIAL:
            return self.name.replace("-", " ")
        return CLEAN


def _split(name: str) -> dict[str, object] | None:
    """The fields of the cell ``name`` denotes (those that differ from their default), or
    ``None`` for a name of no cell's shape.

    Raises:
        RobustSegError: The shape of a corruption or adversarial cell with an unknown
            corruption, a severity out of 1..5, or a number not written as its cell writes it.
    """
    if name == CLEAN:
        return {"kind": CLEAN}
    if m := _NATURAL.fullmatch(name):
        fields = {"kind": NATURAL, "dataset": m[1], "condition": m[2]}
        density = _density(m[2])[1]
        return {**fields, "severity": density} if density else fields
    if m := _CORRUPTION.fullmatch(name):
        if m[1] not in CORRUPTIONS:
            raise RobustSegError(
                f"cell {name!r}: unknown corruption {m[1]!r}; corruptions: {', '.join(CORRUPTIONS)}"
            )
        severity = int(m[2])
        if str(severity) != m[2] or not 1 <= severity <= 5:
            raise RobustSegError(f"cell {name!r}: a severity is written 1..5")
        return {"kind": CORRUPTION, "corruption": m[1], "severity": severity}
    if m := _ADVERSARIAL.fullmatch(name):
        epsilon = float(m[3])
        if epsilon <= 0 or _epsilon_text(epsilon) != m[3]:
            raise RobustSegError(
                f"cell {name!r}: a budget is a positive number written as {_epsilon_text(epsilon)!r}"
            )
        return {"kind": ADVERSARIAL, "attack": m[1], "norm": m[2], "epsilon": epsilon}
    return None


_DEFAULTS = {f.name: f.default for f in fields(Cell)}


def cell_name(corruption: str | None, severity: int | None) -> str:
    """``clean`` (no corruption) or ``<corruption>-<severity>``: the name of the cell of one
    view of the images (:meth:`Cell.of_corruption`, checked)."""
    return CLEAN if corruption is None else Cell.of_corruption(corruption, int(severity or 0)).name


def corruption_title(corruption: str) -> str:
    """A corruption for display: ``gaussian_noise`` -> ``Gaussian noise``, ``jpeg_compression``
    -> ``JPEG compression``."""
    return corruption.replace("_", " ").capitalize().replace("Jpeg", "JPEG")


def severity_groups(cells: Iterable[str]) -> dict[str, list[str]]:
    """The cells that enter mPC, rPC and CD (:attr:`Cell.in_mpc`) grouped by corruption, each
    corruption and its cells in the order given; the other cells are left out.

    Raises:
        RobustSegError: A name that is not a cell's (:meth:`Cell.parse`).
    """
    groups: dict[str, list[str]] = {}
    for name in cells:
        cell = Cell.parse(name)
        if cell.in_mpc:
            groups.setdefault(cell.figure, []).append(name)
    return groups


def corruption_condition(spec: str, default_severity: int) -> tuple[str, str]:
    """A corruption condition as a user writes it: ``fog-3`` (a cell name), ``fog:3`` or
    ``fog`` (``default_severity``) -> (``fog``, ``"3"``); neither the name nor the severity
    checked (the caller's message says what was asked)."""
    name = str(spec).strip()
    for sep in (":", "-"):
        head, s, tail = name.rpartition(sep)
        if s and tail.isdigit():
            return head, tail
    return name, str(default_severity)
