"""Documentation that must not drift from the code."""

from __future__ import annotations

import re
from pathlib import Path

from click import Group

from helpline.cli import main
from helpline.core.config import Settings, env_name

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_every_setting_is_in_the_readme_configuration_table() -> None:
    table = README.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `(HELPLINE_[A-Z0-9_]+)` \|", table, re.MULTILINE))
    expected = {env_name(name) for name in Settings.model_fields}
    assert expected - documented == set(), "settings missing from the README table"
    assert documented - expected == set(), "README documents settings that do not exist"


def test_every_command_is_in_the_readme() -> None:
    def commands(group: Group, prefix: str) -> list[str]:
        found: list[str] = []
        for name, command in group.commands.items():
            if isinstance(command, Group):
                found += commands(command, f"{prefix}{name} ")
            else:
                found.append(f"{prefix}{name}")
        return found

    for command in commands(main, "helpline "):
        assert f"`{command}" in README, f"{command} is not described in the README"


def test_the_readme_links_point_at_files_that_exist() -> None:
    for target in re.findall(r"\]\(([^)#]+)\)", README):
        if not target.startswith("http"):
            assert (ROOT / target).exists(), f"README links to missing {target}"


def test_the_test_command_is_what_ci_runs() -> None:
    assert "make test" in README
    ci = (ROOT / ".ci" / "run").read_text()
    assert ci.rstrip().splitlines()[-1] == "make test"
