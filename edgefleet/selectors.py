"""Labels of edges and the selectors that pick edges by them.

An edge carries labels, ``KEY=VALUE`` pairs its operator chooses (``site=plant-7``,
``tier=canary``). Keys and values follow Kubernetes label syntax, so they read the same to
anyone who knows it:

- a key is ``NAME`` or ``PREFIX/NAME``: NAME is 1-63 letters, digits, ``-``, ``_`` or ``.``,
  starting and ending with a letter or digit; PREFIX a lowercase DNS name of at most 253
  characters (``example.com/zone``);
- a value is empty or 1-63 characters of the same kind as NAME;
- an edge has at most ``MAX_LABELS`` labels.

A selector is a comma list of terms, all of which must hold (AND):

- ``key=value``: the edge has the label with that value;
- ``key!=value``: the edge has no label ``key``, or its value differs (as in Kubernetes);
- ``key``: the edge has the label, whatever its value;
- ``!key``: the edge lacks the label.

Spaces around a term are ignored; anything else outside this syntax (an empty term, ``==``,
a space or a shell character inside a term, more than ``MAX_SELECTOR`` characters) is
refused, naming the term. An empty selector is refused too: a selector that picks every
edge by accident is worse than an error.

Pure: strings and mappings in, a ``Selector`` or a bool out. Every refusal is an
``InvalidInput`` raised before anything is written.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator

from edgefleet.errors import InvalidInput
from edgefleet.errors import shown as _shown

MAX_LABELS = 64
MAX_NAME = 63  # a key's NAME, and a value
MAX_PREFIX = 253
MAX_SELECTOR = 4096
NAME_RE = re.compile(r"^[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?\Z")
DNS_LABEL_RE = re.compile(r"^[a-z0-9](?:[-a-z0-9]*[a-z0-9])?\Z")

KEY_SYNTAX = ("a key is NAME or PREFIX/NAME: NAME is 1-63 letters, digits, '-', '_' or '.', "
              "starting and ending with a letter or digit, PREFIX a lowercase DNS name "
              "(e.g. site, example.com/zone)")
VALUE_SYNTAX = ("a value is empty or up to 63 letters, digits, '-', '_' or '.', starting and "
                "ending with a letter or digit")
SELECTOR_SYNTAX = ("a selector is a comma list of terms that must all hold: key=value, "
                   "key!=value (or no such label), key (has the label), !key (lacks it); "
                   "e.g. 'site=plant-7,tier!=canary,!retired'")


# ---------------------------------------------------------------- keys and values


def _name_problem(name: str, subject: str) -> str | None:
    if len(name) > MAX_NAME:
        return f"{subject} is {len(name)} characters long, more than {MAX_NAME}"
    if NAME_RE.match(name):
        return None
    bad = next((c for c in name if not (c.isascii() and (c.isalnum() or c in "-_."))), None)
    if bad is not None:
        return f"{subject} holds {bad!r}"
    if not name[0].isalnum():
        return f"{subject} starts with {name[0]!r}"
    return f"{subject} ends with {name[-1]!r}"


def key_problem(key: str) -> str | None:
    """What is wrong with ``key`` as a label key, or None when it is one."""
    if not key:
        return "it is empty"
    prefix, slash, name = key.rpartition("/")
    if slash:
        if "/" in prefix:
            return "it has more than one '/'"
        if not prefix:
            return "its prefix before '/' is empty"
        if len(prefix) > MAX_PREFIX:
            return f"its prefix is {len(prefix)} characters long, more than {MAX_PREFIX}"
        if not all(len(p) <= MAX_NAME and DNS_LABEL_RE.match(p) for p in prefix.split(".")):
            return ("its prefix is not a DNS name (lowercase letters, digits and '-', in parts "
                    "of at most 63 joined by '.')")
        if not name:
            return "its name after '/' is empty"
    return _name_problem(name, "its name")


def value_problem(value: str) -> str | None:
    """What is wrong with ``value`` as a label value, or None when it is one."""
    if value == "":
        return None
    return _name_problem(value, "it")


def check_key(key: object) -> str:
    """``key`` if it is a label key, else an ``InvalidInput`` saying why and what a key is."""
    if not isinstance(key, str):
        raise InvalidInput(f"label key {_shown(key)} is not text; {KEY_SYNTAX}")
    problem = key_problem(key)
    if problem:
        raise InvalidInput(f"label key {_shown(key)} is not valid: {problem}; {KEY_SYNTAX}")
    return key


def check_value(key: str, value: object) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"label {key!r}: the value {_shown(value)} is not text "
                           f"(write it as a string, e.g. '3'); {VALUE_SYNTAX}")
    problem = value_problem(value)
    if problem:
        raise InvalidInput(f"label {key!r}: the value {_shown(value)} is not valid: {problem}; "
                           f"{VALUE_SYNTAX}")
    return value


# ---------------------------------------------------------------- labels of an edge


def parse_labels(pairs: Mapping[str, str] | Iterable[str] | str | None) -> dict[str, str]:
    """``["KEY=VALUE", ...]`` (the CLI form, a single string is one entry) or a mapping,
    each key and value checked, sorted by key. A key given twice is refused."""
    if not pairs:
        return {}
    items: list[tuple[object, object]] = []
    if isinstance(pairs, Mapping):
        items = list(pairs.items())
    else:
        for pair in [pairs] if isinstance(pairs, str) else pairs:
            if not isinstance(pair, str) or "=" not in pair:
                raise InvalidInput(
                    f"label {_shown(pair)} is not KEY=VALUE (e.g. site=plant-7; an empty "
                    "value is written KEY=)")
            name, _, text = pair.partition("=")
            items.append((name, text))
    if len(items) > MAX_LABELS:
        raise InvalidInput(f"{len(items)} labels given; an edge has at most {MAX_LABELS}")
    labels: dict[str, str] = {}
    for given, value in items:
        key = check_key(given)
        if key in labels:
            raise InvalidInput(f"label {key!r} is given twice; give each key once")
        labels[key] = check_value(key, value)
    return dict(sorted(labels.items()))


def parse_keys(keys: Iterable[str] | str | None) -> list[str]:
    """Label keys to remove (a single string is one key), each checked: ``site=a`` is
    refused, not read as a key that no edge can have."""
    if not keys:
        return []
    found: list[str] = []
    for key in [keys] if isinstance(keys, str) else keys:
        if isinstance(key, str) and "=" in key:
            raise InvalidInput(f"{_shown(key)} is not a label key: name only the KEY to "
                               f"remove (e.g. {key.partition('=')[0] or 'site'})")
        if check_key(key) not in found:
            found.append(key)
    return found


def relabel(current: Mapping[str, str], *, add: Mapping[str, str], remove: Iterable[str],
            owner: str = "the edge") -> dict[str, str]:
    """``current`` with ``add`` set (added or replaced) and ``remove`` taken away, sorted by
    key. A key both set and removed is refused, and so is a result over ``MAX_LABELS``.
    Removing a key that is not there does nothing (the same command run twice is harmless).
    ``add`` and ``remove`` are checked already (``parse_labels``, ``parse_keys``)."""
    removed = list(remove)
    both = sorted(set(add) & set(removed))
    if both:
        raise InvalidInput(f"label {both[0]!r} is both set and removed; give one of "
                           f"--label {both[0]}=VALUE and --unlabel {both[0]}")
    labels = {**current, **add}
    for key in removed:
        labels.pop(key, None)
    if len(labels) > MAX_LABELS:
        raise InvalidInput(f"{owner} would have {len(labels)} labels, more than {MAX_LABELS}; "
                           "remove some with --unlabel KEY")
    return dict(sorted(labels.items()))


def labels_text(labels: Mapping[str, str]) -> str:
    """``a=1,b=2``: labels as one line, in the syntax a selector matching them uses."""
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))


# ---------------------------------------------------------------- selectors


class Op(StrEnum):
    EQUALS = "="
    NOT_EQUALS = "!="
    HAS = "has"
    LACKS = "lacks"


class Term(BaseModel):
    """One condition on an edge's labels; ``value`` only for ``=`` and ``!=``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str
    op: Op
    value: str | None = None

    @model_validator(mode="after")
    def _well_formed(self) -> Term:
        problem = key_problem(self.key)
        if problem:
            raise ValueError(f"label key {_shown(self.key)} is not valid: {problem}")
        if (self.value is None) != (self.op in (Op.HAS, Op.LACKS)):
            needs = "takes no" if self.value is not None else "needs a"
            raise ValueError(f"a {self.op.value!r} term {needs} value")
        problem = value_problem(self.value) if self.value is not None else None
        if problem:
            raise ValueError(f"label value {_shown(self.value)} is not valid: {problem}")
        return self

    def __str__(self) -> str:
        if self.op is Op.HAS:
            return self.key
        if self.op is Op.LACKS:
            return f"!{self.key}"
        return f"{self.key}{self.op.value}{self.value}"

    def holds(self, labels: Mapping[str, str]) -> bool:
        if self.op is Op.HAS:
            return self.key in labels
        if self.op is Op.LACKS:
            return self.key not in labels
        if self.op is Op.EQUALS:
            return labels.get(self.key) == self.value
        return labels.get(self.key) != self.value


class Selector(BaseModel):
    """Terms that must all hold (at least one: no selector picks every edge by accident).
    ``str(selector)`` is its canonical text, which ``parse_selector`` reads back to an equal
    selector (how a record keeps one)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    terms: tuple[Term, ...] = Field(min_length=1)

    def __str__(self) -> str:
        return ",".join(str(term) for term in self.terms)


def matches(selector: Selector, labels: Mapping[str, str]) -> bool:
    """Whether every term of ``selector`` holds for ``labels``."""
    return all(term.holds(labels) for term in selector.terms)


def parse_selector(text: str) -> Selector:
    """The selector written as ``text`` (see the module docstring), refused with the bad
    term quoted and the accepted syntax."""
    if not isinstance(text, str):
        raise InvalidInput(f"selector {_shown(text)} is not text; {SELECTOR_SYNTAX}")
    if len(text) > MAX_SELECTOR:
        raise InvalidInput(f"selector {_shown(text, 40)} is {len(text)} characters long, more "
                           f"than {MAX_SELECTOR}; {SELECTOR_SYNTAX}")
    if not text.strip():
        raise InvalidInput(f"selector is empty; {SELECTOR_SYNTAX} (to list every edge, "
                           "leave the selector out)")
    terms = [raw.strip() for raw in text.split(",")]
    if "" in terms:
        raise InvalidInput(f"selector {_shown(text)} has an empty term (two commas in a row, "
                           f"or one at an end); {SELECTOR_SYNTAX}")
    return Selector(terms=tuple(_term(term) for term in terms))


def _term(term: str) -> Term:
    def refuse(why: str) -> InvalidInput:
        return InvalidInput(f"selector term {_shown(term)} is not valid: {why}; "
                            f"{SELECTOR_SYNTAX}")

    if any(c.isspace() for c in term):
        raise refuse("it holds a space (spaces may only surround a term)")
    key, op, value = term, Op.HAS, None
    if "=" in term:
        at = term.index("=")
        negated = term[at - 1:at] == "!"
        op = Op.NOT_EQUALS if negated else Op.EQUALS
        key, value = term[:at - 1] if negated else term[:at], term[at + 1:]
        if value.startswith("="):
            raise refuse(f"'{op.value}=' is not an operator: write key{op.value}value")
        if key.startswith("!"):
            raise refuse("a '!' term names a key only: write !key (the edge lacks the label) "
                         "or key!=value")
        if not key:
            raise refuse(f"there is no key before '{op.value}'")
        if "=" in value:
            raise refuse("it has more than one '='")
    elif term.startswith("!"):
        key, op = term[1:], Op.LACKS
        if not key:
            raise refuse("there is no key after '!'")
    problem = key_problem(key)
    if problem:
        raise refuse(f"key {_shown(key)}: {problem}")
    problem = None if value is None else value_problem(value)
    if problem:
        raise refuse(f"value {_shown(value)}: {problem}")
    return Term(key=key, op=op, value=value)
