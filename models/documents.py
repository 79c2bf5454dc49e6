"""Untrusted files (compose files, stack files, env files) read within limits.

A vendor's file is parsed on the control plane before anything is stored, so a hostile one
must be refused there, fast and in one line: too large, not UTF-8, nested too deep, a
"billion laughs" of nested aliases (a few hundred bytes that expand to 10^9 nodes, or a
cycle that never ends), duplicate keys (YAML keeps the last silently), more services than
any edge should run, more nodes than any compose file needs (a megabyte of ``1,`` is half a
million nodes: seconds of Python to build). Sizes are checked before parsing; depth, aliases,
nodes and the services count while the YAML is composed, so a refusal never waits for the
whole file.

Every refusal is a ``RefusedFile``: an ``InvalidInput`` (the CLI prints it as one line) and a
``ValueError`` (pydantic validators turn it into a validation error).
"""

from __future__ import annotations

import re
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

import humanize
import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.events import AliasEvent, ScalarEvent
from yaml.nodes import MappingNode, Node, ScalarNode
from yaml.resolver import Resolver

from edgefleet.errors import RefusedFile

MIB = 1024 * 1024
MERGE_TAG = "tag:yaml.org,2002:merge"
SHOWN = 160  # characters of a refusal message's detail, so it stays one readable line


@dataclass(frozen=True)
class Limits:
    """What an input file may be; ``from_settings()`` reads the EDGEFLEET_* settings."""

    max_bytes: int = MIB
    max_depth: int = 32  # compose files nest about 6 deep; deep nesting only costs
    alias_budget: int = 10_000  # nodes that aliases may add once expanded
    max_nodes: int = 100_000  # a 1 MiB compose file of long lines has about 20,000
    max_services: int = 200
    max_env_entries: int = 10_000

    @classmethod
    def from_settings(cls) -> Limits:
        from edgefleet.settings import get_settings

        s = get_settings()
        return cls(max_bytes=s.max_file_bytes, max_depth=s.max_yaml_depth,
                   alias_budget=s.yaml_alias_budget, max_nodes=s.max_yaml_nodes,
                   max_services=s.max_services, max_env_entries=s.max_env_entries)


def shown(value: object, width: int = 60) -> str:
    """``repr(value)`` cut to ``width`` characters: a hostile value never floods a message."""
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def refuse(what: str, problem: str) -> RefusedFile:
    """The one-line refusal of file ``what``."""
    problem = " ".join(problem.split())
    if len(problem) > SHOWN * 2:
        problem = problem[: SHOWN * 2 - 3] + "..."
    return RefusedFile(f"{what} refused: {problem}")


def check_size(count: int, *, what: str, limits: Limits, at_least: bool = False) -> None:
    """Refuse ``count`` bytes over the limit (``at_least``: only the first bytes were read)."""
    if count > limits.max_bytes:
        limit = limits.max_bytes
        shown_limit = (humanize.naturalsize(limit, binary=True, format="%.0f")
                       if limit % MIB == 0 else f"{limit:,} bytes")
        size = "" if at_least else f"{_size(count)}, "
        raise refuse(what, f"{size}over the limit of {shown_limit} "
                           "(setting EDGEFLEET_MAX_FILE_BYTES)")


def text_of(data: str | bytes, *, what: str, limits: Limits | None = None) -> str:
    """The file's text, if it is UTF-8 and within the size limit (checked before decoding).

    Reusable for any file edgefleet takes from a user (env files, bundled files).
    """
    limits = limits or Limits.from_settings()
    if isinstance(data, str):
        check_size(len(data), what=what, limits=limits)  # at least a byte per character
        try:
            raw = data.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise refuse(what, f"not UTF-8 text (character {exc.start} is a lone "
                               "surrogate)") from exc
    elif isinstance(data, bytes | bytearray):
        raw = bytes(data)
    else:
        raise refuse(what, f"expected text, got {type(data).__name__}")
    check_size(len(raw), what=what, limits=limits)
    try:
        return raw.decode("utf-8") if not isinstance(data, str) else data
    except UnicodeDecodeError as exc:
        raise refuse(what, f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset "
                           f"{exc.start})") from exc


def load_yaml(data: str | bytes, *, what: str, limits: Limits | None = None) -> Any:
    """One YAML document, safely constructed, within ``limits``; RefusedFile otherwise."""
    limits = limits or Limits.from_settings()
    text = text_of(data, what=what, limits=limits)
    loader = _LimitedLoader(text, what=what, limits=limits)
    try:
        return loader.get_single_data()
    except RefusedFile:
        raise
    except yaml.MarkedYAMLError as exc:
        raise refuse(what, f"not valid YAML: {_yaml_problem(exc)}") from exc
    except yaml.YAMLError as exc:
        raise refuse(what, f"not valid YAML: {exc}") from exc
    except Exception as exc:
        # PyYAML's safe constructors fail in many ways on a tagged scalar that does not
        # build: ValueError (!!int x), IndexError (!!int ''), AttributeError (!!timestamp '')
        raise refuse(what, f"not valid YAML: {type(exc).__name__}: {exc}") from exc
    finally:
        loader.dispose()


_ENV_LINE = re.compile(r"\s*(?:export\s+)?(?P<key>[^=:\s#][^=:\s]*)\s*(?P<sep>[=:]?)\s*"
                       r"(?P<value>.*)", re.DOTALL)


def env_file_keys(data: str | bytes, *, what: str = "env file",
                  limits: Limits | None = None) -> list[str]:
    """The variable names of an env file read the way compose reads it (``KEY=VALUE`` or
    ``KEY: VALUE``, ``export``, a bare ``KEY``, a quoted value over several lines), refused
    over the limits: size, UTF-8, a NUL, a name set twice (compose keeps the last silently),
    more than ``max_env_entries``. Its syntax is compose's to judge (``compose config``)."""
    limits = limits or Limits.from_settings()
    text = text_of(data, what=what, limits=limits)
    if "\x00" in text:
        raise refuse(what, "contains a NUL character")
    lines = [line.removesuffix("\r") for line in text.split("\n")]  # compose's line ends
    keys: dict[str, int] = {}
    number = 0
    while number < len(lines):
        line = lines[number]
        number += 1
        match = _ENV_LINE.match(line)
        if not match or not line.strip() or line.lstrip().startswith("#"):
            continue
        key = match["key"]
        if key in keys:
            raise refuse(what, f"line {number}: {shown(key, 40)} is set twice (first on line "
                               f"{keys[key]})")
        keys[key] = number
        if len(keys) > limits.max_env_entries:
            raise refuse(what, f"more than {limits.max_env_entries} variables "
                               "(setting EDGEFLEET_MAX_ENV_ENTRIES)")
        value = match["value"]
        quote = value[:1]
        if match["sep"] and quote in ("'", '"'):  # the lines up to its closing quote
            rest = value[1:]
            while not _closes(rest, quote) and number < len(lines):
                rest = lines[number]
                number += 1
    return list(keys)


def _closes(text: str, quote: str) -> bool:
    """``text`` holds the closing ``quote`` (in double quotes, ``\\"`` is no close)."""
    if quote == "'":
        return "'" in text
    escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            return True
    return False


def _size(count: int) -> str:
    shown = f"{count:,} bytes"
    return f"{humanize.naturalsize(count, binary=True)} ({shown})" if count >= MIB else shown


def _yaml_problem(exc: yaml.MarkedYAMLError) -> str:
    mark = exc.problem_mark or exc.context_mark
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
    problem = ", ".join(p for p in (exc.context, exc.problem) if p) or "error"
    return f"{problem}{where}"


try:  # libyaml's parser when PyYAML has it (about 5x faster); composing stays ours
    from yaml._yaml import CParser as _CParser

    _PARSER: type = _CParser
except ImportError:  # pragma: no cover - PyYAML without libyaml
    from yaml.parser import Parser
    from yaml.reader import Reader
    from yaml.scanner import Scanner

    class _PyParser(Reader, Scanner, Parser):
        def __init__(self, stream: str) -> None:
            Reader.__init__(self, stream)
            Scanner.__init__(self)
            Parser.__init__(self)

    _PARSER = _PyParser


class _LimitedLoader(_PARSER, Composer, SafeConstructor, Resolver):  # type: ignore[misc,valid-type]
    """SafeLoader's composer and constructor, counting as it composes.

    Depth, the nodes written, the nodes that aliases add once expanded (an alias costs its
    anchor's full size, so nested aliases cannot hide their product) and the top-level
    ``services`` entries are checked as each node is composed; an alias to an anchor still
    being composed (a cycle) and a key given twice in one mapping are refused.
    """

    # the composer's entry points, not libyaml's own composer
    get_single_node = Composer.get_single_node
    compose_document = Composer.compose_document
    check_node = Composer.check_node
    get_node = Composer.get_node

    def __init__(self, text: str, *, what: str, limits: Limits) -> None:
        _PARSER.__init__(self, text)  # type: ignore[misc]
        Composer.__init__(self)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)
        self.what = what
        self.limits = limits
        # the mapping key of each node being composed, root first (None: not a mapping value)
        self.path: list[str | None] = []
        self.deepest = 0
        self.expanded = 0
        self.services = 0
        self.open_anchors: set[str] = set()
        self.sizes: dict[str, tuple[int, int]] = {}  # anchor -> (nodes, height)
        self.nodes = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        depth = len(self.path) + 1
        if index is None and self.path == [None, "services"]:
            self.services += 1  # a key of the top-level services mapping
            if self.services > self.limits.max_services:
                raise self._refusal(f"more than {self.limits.max_services} services "
                                    "(setting EDGEFLEET_MAX_SERVICES)")
        if self.check_event(AliasEvent):
            anchor = self.peek_event().anchor
            if anchor in self.open_anchors:
                raise self._refusal(f"alias *{shown(anchor, 40)[1:-1]} refers to a node "
                                    "that contains it (a cycle)")
            nodes, height = self.sizes.get(anchor, (1, 0))
            self.expanded += nodes
            if self.expanded > self.limits.alias_budget:
                raise self._refusal(f"aliases expand to more than {self.limits.alias_budget} "
                                    "nodes (setting EDGEFLEET_YAML_ALIAS_BUDGET)")
            self._deeper(depth + height)
            return super().compose_node(parent, index)
        self._deeper(depth)
        self.nodes += 1
        if self.nodes > self.limits.max_nodes:
            raise self._refusal(f"more than {self.limits.max_nodes} YAML nodes "
                                "(setting EDGEFLEET_MAX_YAML_NODES)")
        event = self.peek_event()
        anchor = event.anchor
        if anchor is None and self.check_event(ScalarEvent):
            # a plain leaf, the bulk of any file: built here as the composer would (SafeLoader
            # has no path resolvers) in about half the time its dispatch takes
            self.get_event()
            tag = event.tag
            if tag is None or tag == "!":
                tag = self.resolve(ScalarNode, event.value, event.implicit)
            return ScalarNode(tag, event.value, event.start_mark, event.end_mark,
                              style=event.style)
        if anchor is not None:
            self.open_anchors.add(anchor)
        nodes_before, deepest_before = self.nodes - 1 + self.expanded, self.deepest
        self.deepest = depth
        self.path.append(index.value if isinstance(index, ScalarNode) else None)
        try:
            node = super().compose_node(parent, index)
        finally:
            self.path.pop()
        if anchor is not None:
            self.open_anchors.discard(anchor)
            self.sizes[anchor] = (self.nodes + self.expanded - nodes_before, self.deepest - depth)
        self.deepest = max(self.deepest, deepest_before)
        return node

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, MappingNode):
            seen: set[Any] = set()
            for key_node, _value in node.value:
                if not isinstance(key_node, ScalarNode) or key_node.tag == MERGE_TAG:
                    continue  # merged keys may be overridden; that is what a merge is for
                key = self.construct_object(key_node)
                if not isinstance(key, Hashable):
                    continue  # the constructor refuses it below
                if key in seen:
                    line = key_node.start_mark.line + 1
                    raise self._refusal(f"key {shown(key, 40)} appears twice in one mapping "
                                        f"(line {line})")
                seen.add(key)
        return super().construct_mapping(node, deep=deep)

    def _deeper(self, depth: int) -> None:
        if depth > self.limits.max_depth:
            raise self._refusal(f"nested deeper than {self.limits.max_depth} levels "
                                "(setting EDGEFLEET_MAX_YAML_DEPTH)")
        self.deepest = max(self.deepest, depth)

    def _refusal(self, problem: str) -> RefusedFile:
        try:
            mark = self.peek_event().start_mark if self.check_event() else None
        except yaml.YAMLError:
            mark = None
        where = f" at line {mark.line + 1}" if mark is not None and "line" not in problem else ""
        return refuse(self.what, problem + where)
