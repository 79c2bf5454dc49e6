"""Parameters of a version: found in its file, refined by declarations, checked at deploy.

Pure rules. Compose's interpolation grammar, as far as it names variables: ``$$`` is a
literal ``$``; ``$VAR`` and ``${VAR}`` are optional; ``${VAR:-default}`` / ``${VAR-default}``
carry a default; ``${VAR:?message}`` / ``${VAR?message}`` are required; ``${VAR:+alt}`` /
``${VAR+alt}`` are optional. A default, message or alternative may nest further
expressions (``${A:-${B:-x}}`` names A and B). Only YAML strings are scanned (keys and
values, never comments); an expression compose would reject (``${1X}``, an unclosed
``${``) is left for compose's own validation, which words the refusal.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from edgefleet.errors import InvalidInput
from edgefleet.models.documents import load_yaml
from edgefleet.models.parameters import (
    MASK,
    MAX_DEFAULT,
    MAX_PARAMETERS,
    MAX_TEXT,
    Parameter,
    ParameterDeclaration,
)

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OPERATORS = (":-", ":?", ":+", "-", "?", "+")
PLACEHOLDER = "edgefleet-placeholder"  # a required parameter's value when compose validates


@dataclass(frozen=True)
class Use:
    """One ``${...}`` of a file: the name, its operator ('' for none) and the text after it."""

    name: str
    operator: str = ""
    argument: str = ""

    @property
    def required(self) -> bool:
        return self.operator in (":?", "?")

    @property
    def default(self) -> str | None:
        return self.argument if self.operator in (":-", "-") else None


def uses_in(text: str) -> Iterator[Use]:
    """Every variable ``text`` interpolates, nested ones included, in order."""
    i, n = 0, len(text)
    while i < n:
        i = text.find("$", i)
        if i < 0 or i + 1 >= n:
            return
        nxt = text[i + 1]
        if nxt == "$":  # an escaped dollar
            i += 2
            continue
        if nxt == "{":
            end = _closing_brace(text, i + 2)
            if end < 0:
                return  # unclosed: compose refuses the file, in its own words
            yield from _braced(text[i + 2:end])
            i = end + 1
            continue
        match = _NAME.match(text, i + 1)
        if match:
            yield Use(match.group())
            i = match.end()
        else:
            i += 1


def _closing_brace(text: str, start: int) -> int:
    """Index of the ``}`` closing a ``${`` whose body starts at ``start`` (-1: none)."""
    depth, j, n = 1, start, len(text)
    while j < n:
        char = text[j]
        if char == "$" and j + 1 < n and text[j + 1] in "${":
            depth += text[j + 1] == "{"
            j += 2
            continue
        if char == "}":
            depth -= 1
            if depth == 0:
                return j
        j += 1
    return -1


def _braced(body: str) -> Iterator[Use]:
    match = _NAME.match(body)
    if not match:
        return  # ${1X}, ${} ...: not a variable; compose's validation refuses it
    rest = body[match.end():]
    if not rest:
        yield Use(match.group())
        return
    for op in _OPERATORS:
        if rest.startswith(op):
            argument = rest[len(op):]
            yield Use(match.group(), op, argument)
            yield from uses_in(argument)
            return
    # ${A.B}, ${A B}: not compose syntax either; nothing to discover


def strings_of(data: Any, *, limit: int = 1_000_000) -> Iterator[str]:
    """Every string of a parsed YAML document (mapping keys too), iteratively."""
    stack = [data]
    seen = 0
    while stack:
        item = stack.pop()
        seen += 1
        if seen > limit:
            return
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            for key, value in reversed(item.items()):  # popped in the file's order
                stack.append(value)
                stack.append(key)
        elif isinstance(item, list | tuple):
            stack.extend(reversed(item))


def discover(data: Any) -> list[Parameter]:
    """The parameters a parsed compose/stack file interpolates, in order of first use.

    A name used several times is required if any use is (compose fails on that one), with
    the first message; otherwise its default is the first one given.
    """
    found: dict[str, dict[str, Any]] = {}
    for text in strings_of(data):
        if "$" not in text:
            continue
        for use in uses_in(text):
            entry = found.get(use.name)
            if entry is None:
                if len(found) >= MAX_PARAMETERS:
                    raise InvalidInput(f"the file interpolates more than {MAX_PARAMETERS} "
                                       "variables; a version's parameters are its interface")
                entry = found[use.name] = {"name": use.name, "discovered": True}
            if use.required and not entry.get("required"):
                entry["required"] = True
                entry["message"] = _cut(use.argument, MAX_TEXT) or None
            elif use.default is not None and "default" not in entry:
                entry["default"] = _cut(use.default, MAX_DEFAULT)
    params = []
    for entry in found.values():
        if entry.get("required"):
            entry.pop("default", None)
        params.append(Parameter(**entry))
    return params


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def merge(discovered: Iterable[Parameter], declared: Iterable[ParameterDeclaration]
          ) -> list[Parameter]:
    """The version's parameters: discovered ones refined by declarations, then declared-only
    ones. A declared default makes a required one optional (the default satisfies it);
    ``--required`` makes it required."""
    merged: dict[str, Parameter] = {p.name: p for p in discovered}
    for decl in declared:
        base = merged.get(decl.name)
        fields = decl.model_dump(exclude_unset=True)
        if base is None:
            merged[decl.name] = Parameter(**fields)
            continue
        data = base.model_dump()
        if fields.get("default") is not None:
            data["default"], data["required"] = fields["default"], False
        if fields.get("required"):
            data["required"], data["default"] = True, None
        for key in ("description", "sensitive"):
            if key in fields and fields[key] not in (None, False):
                data[key] = fields[key]
        merged[decl.name] = Parameter(**data)
    return list(merged.values())


def of_version(stored: list[dict[str, Any]], *, kind: str, text: str | None) -> list[Parameter]:
    """A version's parameters as recorded; a compose or stack version recorded before
    parameters were (an empty list) has those its file interpolates."""
    if stored or kind == "image" or not text:
        return [Parameter.model_validate(p) for p in stored]
    try:
        return discover(load_yaml(text, what="file"))
    except (InvalidInput, ValueError):
        return []


def defaults(params: Iterable[Parameter]) -> dict[str, str]:
    """What a deploy's environment starts from: every parameter's default (the version's
    environment and the operator's ``--env`` come on top). A file's own default is what
    compose would use anyway; a declared one overrides it."""
    return {p.name: p.default for p in params if p.default is not None}


def validation_env(params: Iterable[Parameter], version_env: dict[str, str]) -> dict[str, str]:
    """The environment compose validates a file with at ``app create``: defaults, the
    version's own environment, and a placeholder for each required parameter."""
    env = {p.name: PLACEHOLDER for p in params if p.required}
    env.update({p.name: p.default for p in params if p.default is not None})
    env.update(version_env)
    return env


def missing_required(params: Iterable[Parameter], *, version_env: dict[str, str],
                     env: dict[str, str]) -> list[Parameter]:
    """The required parameters neither the version's environment nor ``env`` sets."""
    have = {**version_env, **env}
    return [p for p in params if p.required and p.name not in have]


def check_environment(params: list[Parameter], *, kind: str, version_env: dict[str, str],
                      env: dict[str, str], label: str) -> None:
    """Refuse a deploy's ``env`` (``--env``) before anything is recorded: each missing
    required parameter with its message, each unknown key with the closest known name.

    An image version without declared parameters takes any key (an image's environment
    cannot be discovered); every other version knows its names.
    """
    problems: list[str] = []
    missing = missing_required(params, version_env=version_env, env=env)
    for p in missing:
        said = f" ({p.message})" if p.message else ""
        text = f": {p.description}" if p.description and not p.message else ""
        problems.append(f"required parameter {p.name} is not set{said}{text}")
    if params or kind != "image":
        known = sorted({p.name for p in params} | set(version_env))
        for key in env:
            if key in known:
                continue
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
            if not close:
                close = [k for k in known if k.lower() == key.lower()][:1]
            hint = f"; did you mean {close[0]}?" if close else (
                f"; its parameters are {', '.join(known[:12])}" if known else
                "; it has no parameters")
            problems.append(f"{label} does not know --env {key}{hint}")
    if problems:
        fix = (" (set them with --env NAME=VALUE)" if missing else "")
        raise InvalidInput(f"{label}: " + "; ".join(problems) + fix +
                           "; nothing was deployed")


def sensitive_names(params: Iterable[Parameter]) -> set[str]:
    return {p.name for p in params if p.sensitive}


# Sensitive values: a deployment's record keeps, for each, the name of the Prefect Secret
# block holding it. The name is derived from the deployment and the parameter, so a value
# is a reference exactly when it equals that name (an operator's value never does).
_REFERENCE = re.compile(r"^edgefleet-param-(?P<deployment>[0-9a-f]{32})-(?P<key>[0-9a-f]{12})\Z")


def secret_block_name(deployment_id: str, name: str) -> str:
    """The Secret block holding deployment ``deployment_id``'s value of parameter ``name``."""
    key = hashlib.sha256(name.encode()).hexdigest()[:12]
    return f"edgefleet-param-{deployment_id}-{key}"


def is_reference(name: str, value: str) -> bool:
    """``value`` is the Secret block reference of parameter ``name`` (of some deployment)."""
    found = _REFERENCE.match(value)
    return found is not None and secret_block_name(found.group("deployment"), name) == value


def references(env: dict[str, str]) -> dict[str, str]:
    """The entries of ``env`` that are Secret block references (name -> block)."""
    return {k: v for k, v in env.items() if is_reference(k, v)}


def owned_references(env: dict[str, str], owner: str) -> dict[str, str]:
    """The references of ``env`` to blocks made for ``owner`` (a deployment's or a group's
    id): a group's members refer to the group's blocks, which only the group deletes."""
    return {k: v for k, v in references(env).items() if v == secret_block_name(owner, k)}


def masked(env: dict[str, str]) -> dict[str, str]:
    """``env`` as shown anywhere: a sensitive value (a reference) masked."""
    return {k: MASK if is_reference(k, v) else v for k, v in env.items()}


def with_placeholders(text: str, env: dict[str, str]) -> str:
    """A file rendered by compose with references in place of sensitive values, each turned
    back into ``${NAME}``: compose interpolates the value only when it applies the file."""
    for name, block in references(env).items():
        text = text.replace(block, "${" + name + "}")
    return text
