"""The README documents every setting and every command."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer

from leadflow.config.docs import BEGIN, END, replace_table, settings_table
from leadflow.config.settings import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_settings_table_is_the_generated_one() -> None:
    text = README.read_text(encoding="utf-8")
    assert replace_table(text) == text, "run `python -m leadflow.config.docs --write README.md`"


def test_every_setting_has_a_row_and_a_description() -> None:
    table = settings_table()
    for name, field in Settings.model_fields.items():
        assert f"`LEADFLOW_{name.upper()}`" in table
        assert field.description, f"setting {name} has no description"


def test_secret_defaults_never_print_a_secret_value() -> None:
    assert "unset" in settings_table()


@pytest.mark.parametrize("text", ["no markers here", f"{BEGIN} only the start", f"only the end {END}"])
def test_a_readme_without_both_markers_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="markers"):
        replace_table(text)


def test_replace_table_rewrites_only_between_the_markers() -> None:
    text = f"before\n{BEGIN}\nstale\n{END}\nafter"
    out = replace_table(text)
    assert out.startswith("before\n") and out.endswith("\nafter")
    assert "stale" not in out and settings_table() in out


def _command_paths(command: Any, prefix: tuple[str, ...] = ()) -> list[str]:
    # Typer vendors its own click, so groups are recognised by their sub-commands, not by click.Group.
    if getattr(command, "commands", None):
        paths: list[str] = []
        for name, sub in command.commands.items():
            paths += _command_paths(sub, (*prefix, name))
        return paths
    return [" ".join(prefix)]


def test_every_command_is_in_the_readme_command_table() -> None:
    from deployments.cli import app

    text = README.read_text(encoding="utf-8")
    section = text[text.index("## The `leadflow` command"):text.index("## Configuration")]
    table = "\n".join(line for line in section.splitlines() if line.startswith("| `leadflow"))
    paths = _command_paths(typer.main.get_command(app))
    assert len(paths) > 10 and "db upgrade" in paths, paths
    missing = [p for p in paths if f"leadflow {p}" not in table]
    assert not missing, f"commands missing from the README's command table: {missing}"
