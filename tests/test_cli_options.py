"""One meaning per option: every option of every command explains itself and shows its default;
shared options read the same everywhere; the recipe defaults --help shows are the recipes'."""

from __future__ import annotations

import click
import pytest

from robustbench_seg.cli import SIZE, TRAIN_DEFAULTS, cli
from robustbench_seg.engine.recipes import RECIPES
from robustbench_seg.sizes import format_size, parse_size

COMMANDS = sorted(cli.commands)


@pytest.mark.parametrize("name", COMMANDS)
def test_every_option_has_help_and_a_default(name):
    command = cli.commands[name]
    assert command.help and command.help.strip()
    for param in command.params:
        if not isinstance(param, click.Option) or param.hidden:
            continue
        assert param.help and len(param.help) > 10, (name, param.name)
        if param.is_flag and not param.secondary_opts:
            continue  # a flag is off unless given
        shown = param.show_default or param.required or "Default" in param.help
        assert shown, (name, param.name, "shows no default")


def test_shared_options_mean_the_same_everywhere():
    seen: dict[str, set[tuple]] = {}
    for name in COMMANDS:
        for param in cli.commands[name].params:
            if param.name in ("device", "workers"):
                key = (param.default, param.help if param.name == "device" else str(param.type))
                seen.setdefault(param.name, set()).add(key)
            if param.name in ("crop", "stride", "size", "scale"):
                assert param.type is SIZE, (name, param.name)
    assert len(seen["device"]) == 1 and next(iter(seen["device"]))[0] == "auto"
    assert len(seen["workers"]) == 1 and next(iter(seen["workers"]))[0] is None
    assert {c for c in COMMANDS if any(p.name == "workers" for p in cli.commands[c].params)} == {
        "demo",
        "evaluate",
        "make-cityscapes-c",
        "make-corrupted",
        "make-synthetic-city",
        "train",
    }


def test_sizes_are_widthxheight():
    assert parse_size("1024x512") == (512, 1024) and parse_size("768") == (768, 768)
    assert format_size((512, 1024)) == "1024x512" and format_size(32) == "32x32"
    for bad in ("512,1024", "x512", "0x3", "1024x512x3", "", "wide"):
        with pytest.raises(ValueError, match="WIDTHxHEIGHT"):
            parse_size(bad)


def test_train_help_shows_the_recipes_defaults():
    families = ("segformer", "deeplabv3plus")
    for field, shown in TRAIN_DEFAULTS.items():
        for family, value in zip(families, shown, strict=True):
            actual = getattr(RECIPES[family], field)
            if field in ("crop", "scale"):
                actual = format_size(actual) if field == "crop" else f"{actual[0]}x{actual[1]}"
            elif field == "ratio_range":
                actual = ",".join(map(str, actual))
            elif isinstance(actual, bool):
                actual = "on" if actual else "off"
            elif actual is None:
                actual = "none"
            assert actual == value, (field, family, actual, value)
