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


# --- docs/operations.md, docs/threat-model.md, deploy/README.md -------------------------------

OPERATIONS = ROOT / "docs" / "operations.md"
THREAT_MODEL = ROOT / "docs" / "threat-model.md"
DEPLOY_README = ROOT / "deploy" / "README.md"
GUIDES = [OPERATIONS, THREAT_MODEL, DEPLOY_README]


def code_of(markdown: str) -> list[str]:
    """The fenced code blocks and inline code spans of a Markdown text."""
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", markdown, re.MULTILINE | re.DOTALL)
    prose = re.sub(r"^```[^\n]*\n.*?^```", "", markdown, flags=re.MULTILINE | re.DOTALL)
    return blocks + re.findall(r"`([^`\n]+)`", prose)


def helpline_invocations(markdown: str) -> list[list[str]]:
    """The words after each `helpline` that is a command in the code of `markdown` (not a
    user or database name after an option like `-U helpline`, not `helpline:local`)."""
    found = []
    for code in code_of(markdown):
        # shell comments are prose: "# point the helpline command at the copy"
        tokens = re.sub(r"(^|\s)#[^\n]*", " ", code).split()
        for i, token in enumerate(tokens):
            after_option = i and tokens[i - 1].startswith("-") and tokens[i - 1] != "--"
            placeholder = tokens[i + 1 : i + 2] in (["COMMAND"], ["--help"])
            if token != "helpline" or after_option or placeholder:
                continue
            words = []
            for word in tokens[i + 1 : i + 3]:
                if not re.fullmatch(r"[a-z][a-z-]*", word):
                    break
                words.append(word)
            found.append(words)
    return found


def command_exists(words: list[str]) -> bool:
    command: object = main
    for word in words:
        if not isinstance(command, Group):
            return True  # the rest are arguments
        if word not in command.commands:
            return False
        command = command.commands[word]
    return not isinstance(command, Group) or not words  # a group alone is not a command


def test_the_guides_are_linked_from_the_readme() -> None:
    operations = README.split("## Operations", 1)[1].split("\n## ", 1)[0]
    assert "(docs/operations.md)" in operations
    assert "(docs/threat-model.md)" in operations


def test_every_helpline_command_in_the_guides_exists() -> None:
    checked = 0
    for path in GUIDES:
        for words in helpline_invocations(path.read_text()):
            assert words, f"{path.name}: `helpline` without a command"
            assert command_exists(words), (
                f"{path.name}: `helpline {' '.join(words)}` does not exist"
            )
            checked += 1
    assert checked >= 20  # the extraction still finds them


def test_the_command_finder_catches_a_wrong_command() -> None:
    assert helpline_invocations("run `helpline keys rotate --retire` and `helpline keys spin`") == [
        ["keys", "rotate"],
        ["keys", "spin"],
    ]
    assert not command_exists(["keys", "spin"])
    assert not command_exists(["backup"])
    assert helpline_invocations("```\npg_dump -U helpline -d helpline > x\n```") == []
    assert helpline_invocations("`kubectl exec -it deploy/x -- helpline keys rotate`") == [
        ["keys", "rotate"]
    ]


def test_every_path_in_the_threat_model_exists() -> None:
    text = THREAT_MODEL.read_text()
    paths = set(re.findall(r"`((?:helpline|deploy|frontend|tests|docs)/[^`\s]*)`", text))
    assert len([p for p in paths if p.startswith("helpline/")]) >= 20
    missing = sorted(p for p in paths if not (ROOT / p).exists())
    assert not missing, f"docs/threat-model.md names paths that do not exist: {missing}"


def test_the_guides_name_only_settings_that_exist_and_link_files_that_exist() -> None:
    for path in GUIDES:
        text = path.read_text()
        # `HELPLINE_SMTP_OUT_*` names a family: some setting must start with it
        names = set(re.findall(r"(?<![A-Za-z0-9_])HELPLINE_[A-Z0-9_]+", text))
        fields = {f"HELPLINE_{name.upper()}" for name in Settings.model_fields}
        unknown = sorted(
            n
            for n in names
            if not (any(f.startswith(n) for f in fields) if n.endswith("_") else n in fields)
        )
        assert not unknown, f"{path.name} names settings that do not exist: {unknown}"
        for target in re.findall(r"\]\(([^)#]+)\)", text):
            if not target.startswith("http"):
                assert (path.parent / target).exists(), f"{path.name} links to missing {target}"
