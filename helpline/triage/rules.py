"""The priority rule table (`priority.toml`): loaded once, checked against the vocabulary.

A case's priority is the most urgent priority implied by its category and its risk flags; a
case that matches no rule gets the table's default.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from helpline.triage.vocabulary import CATEGORIES, FLAGS, Priority

RULES_FILE = "priority.toml"


class RuleTableError(ValueError):
    """The rule table names a code or priority that does not exist."""


def _priority(name: object, where: str) -> Priority:
    if not isinstance(name, str) or name not in Priority.__members__:
        names = ", ".join(Priority.__members__)
        raise RuleTableError(f"{where}: {name!r} is not a priority ({names})")
    return Priority[name]


def _rules(table: object, known: Iterable[str], where: str) -> dict[str, Priority]:
    if not isinstance(table, Mapping):
        raise RuleTableError(f"[{where}] must be a table of code = priority")
    known = set(known)
    rules: dict[str, Priority] = {}
    for code, name in table.items():
        if code not in known:
            raise RuleTableError(f"[{where}] {code}: not a known code")
        rules[code] = _priority(name, f"[{where}] {code}")
    return rules


@dataclass(frozen=True)
class RuleTable:
    default: Priority
    categories: Mapping[str, Priority]
    flags: Mapping[str, Priority]

    @classmethod
    def parse(cls, text: str) -> RuleTable:
        try:
            data: dict[str, Any] = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise RuleTableError(f"not valid TOML: {exc}") from None
        unknown = set(data) - {"default", "categories", "flags"}
        if unknown:
            raise RuleTableError(f"unknown key(s): {', '.join(sorted(unknown))}")
        return cls(
            default=_priority(data.get("default", "normal"), "default"),
            categories=_rules(data.get("categories", {}), CATEGORIES, "categories"),
            flags=_rules(data.get("flags", {}), FLAGS, "flags"),
        )

    def priority(self, category: str | None, flags: Iterable[str]) -> Priority:
        """The most urgent priority any rule gives this category and these flags."""
        implied = [self.flags[f] for f in flags if f in self.flags]
        if category is not None and category in self.categories:
            implied.append(self.categories[category])
        return min(implied, default=self.default)


@cache
def rule_table() -> RuleTable:
    """The packaged rule table, read and checked on first use."""
    text = resources.files("helpline.triage").joinpath(RULES_FILE).read_text(encoding="utf-8")
    return RuleTable.parse(text)


def compute_priority(category: str | None, flags: Iterable[str]) -> Priority:
    return rule_table().priority(category, flags)
