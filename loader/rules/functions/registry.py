"""What a built-in function is: its call, how many arguments it takes, and what null does to it.

eKuiper checks a built-in's argument count (and literal arguments such as
cast's type name) when the rule is created, and most built-ins return null
when an argument is null without looking further.  ``Builtin`` carries both
so each function body only handles real values.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

#: any null argument makes the result null, the body is not called
NULL_IF_ANY = "any"
#: a null first argument makes the result null
NULL_IF_FIRST = "first"
#: the body handles null itself
NULL_HANDLED = "handled"

#: A literal argument's value, or this marker for an argument that is not a literal.
NOT_LITERAL = object()


@dataclass(frozen=True)
class Builtin:
    name: str
    body: Callable[[list[Any]], Any]
    min_args: int
    max_args: int | None
    nulls: str = NULL_IF_ANY
    #: checks the literal arguments at admission; returns what is wrong, or None
    check_literals: Callable[[list[Any]], str | None] | None = None
    #: ``body`` behind the null rule: what evaluation calls (set from the fields above)
    call: Callable[[list[Any]], Any] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "call", _null_rule(self.body, self.nulls))

    def __call__(self, args: list[Any]) -> Any:
        return self.call(args)

    def admission_error(self, literals: list[Any]) -> str | None:
        """What is wrong with a call with these (literal or NOT_LITERAL) arguments, or None."""
        count = len(literals)
        if count < self.min_args or (self.max_args is not None and count > self.max_args):
            return f"{self.name} takes {_arity(self.min_args, self.max_args)}, got {count}"
        if self.check_literals is not None:
            return self.check_literals(literals)
        return None


def _null_rule(body: Callable[[list[Any]], Any], nulls: str) -> Callable[[list[Any]], Any]:
    """``body`` behind its null rule, as one closure: what a rule calls per record."""
    if nulls == NULL_IF_ANY:
        return lambda args: None if None in args else body(args)
    if nulls == NULL_IF_FIRST:
        return lambda args: None if not args or args[0] is None else body(args)
    return body


@dataclass(frozen=True)
class RuleScoped:
    """A built-in whose value depends on the rule calling it (``rule_id``): bound when the rule compiles."""

    name: str
    bind: Callable[[str], Builtin]

    def for_rule(self, rule_id: str) -> Builtin:
        return self.bind(rule_id)

    def admission_error(self, literals: list[Any]) -> str | None:
        return self.bind("").admission_error(literals)

    def __call__(self, args: list[Any]) -> Any:  # unbound use: an unnamed rule
        return self.bind("")(args)


def _arity(low: int, high: int | None) -> str:
    if high is None:
        return f"at least {low} argument{'s' if low != 1 else ''}"
    if low == high:
        return f"{low} argument{'s' if low != 1 else ''}" if low else "no arguments"
    return f"{low} to {high} arguments"


def table(*builtins: Builtin | RuleScoped, aliases: dict[str, str] | None = None) -> dict[str, Builtin | RuleScoped]:
    """Name -> built-in, with ``aliases`` (alias -> name): the same function under the name the user writes."""
    entries: dict[str, Builtin | RuleScoped] = {b.name: b for b in builtins}
    for alias, name in (aliases or {}).items():
        entries[alias] = replace(entries[name], name=alias)
    return entries
