"""Bad input, on the ground floor every layer imports: the one exception, its one message form, and the rule
each config field declares beside its default (`param`), checked by `check_fields`.

    <key>=<value!r> is invalid: it must be <what it must be>
    <key>=<value!r> is unknown: choose one of a, b, c

The launcher prints the message as one line and exits 2.
"""

from __future__ import annotations

import copy
import math
import numbers
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from typing import Any


class UsageError(ValueError):
    """Bad user input (a config value, a missing dataset). The message names the value and what is allowed."""


def invalid(key: str, value: Any, must: str = "", choices: Iterable[Any] = ()) -> UsageError:
    """The one form of a bad value: what it must be, or (choices) the values it may take."""
    choices = [str(c) for c in choices]
    if choices:
        return UsageError(f"{key}={value!r} is unknown: choose one of {', '.join(choices)}")
    return UsageError(f"{key}={value!r} is invalid: it must be {must}")


@dataclass(frozen=True)
class Rule:
    """What a value must be: a test and its wording (what follows "it must be"), or a set of choices."""

    must: str = ""
    test: Callable[[Any], bool] = lambda value: True
    choices: tuple[Any, ...] = ()

    def check(self, key: str, value: Any) -> None:
        if self.choices and value not in self.choices:
            raise invalid(key, value, choices=self.choices)
        if not self.choices and not self.test(value):
            raise invalid(key, value, self.must)


def is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def at_least(low: float, *, integer: bool = False, strict: bool = False, null: bool = False, note: str = "",
             noun: str = "") -> Rule:
    """A number (integer) >= low, or > low when strict; null too when null."""
    kind = is_int if integer else is_number
    text = f"{'null or ' if null else ''}{noun or ('an integer' if integer else 'a number')} {'>' if strict else '>='} {low}"
    return Rule(text + (f" ({note})" if note else ""),
                lambda v: (null and v is None) or (kind(v) and (v > low if strict else v >= low)))


def within(low: int, high: int, *, integer: bool = False, high_open: bool = False, shown_high: str = "") -> Rule:
    """A number (integer) in [low, high], or [low, high) when high_open."""
    kind = is_int if integer else is_number
    text = f"{'an integer' if integer else 'a number'} in [{low}, {shown_high or high}{')' if high_open else ']'}"
    return Rule(text, lambda v: kind(v) and low <= v and (v < high if high_open else v <= high))


def choice(values: Iterable[Any]) -> Rule:
    return Rule(choices=tuple(values))


def optional_text(must: str) -> Rule:
    """null or a string (a path, an address), worded as `must`."""
    return Rule(must, lambda v: v is None or isinstance(v, str))


FLAG = Rule("true or false", lambda v: isinstance(v, bool))
PATH = optional_text("null or a path")
POSITIVE = at_least(0, integer=True, strict=True)


def param(default: Any, rule: Rule = Rule()) -> Any:
    """A config field: its default and its rule (its type is the annotation it is assigned to)."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata={"rule": rule})
    return field(default=default, metadata={"rule": rule})


def rules(spec: Any) -> dict[str, Rule]:
    """The rule of each field of a dataclass (or dataclass type) that declares one, in declaration order."""
    return {f.name: f.metadata["rule"] for f in fields(spec) if "rule" in f.metadata}


def check_fields(spec: Any, section: str = "") -> None:
    """Every field of a dataclass instance against its rule; `section` prefixes the keys in messages."""
    for name, rule in rules(spec).items():
        rule.check(f"{section}.{name}" if section else name, getattr(spec, name))
