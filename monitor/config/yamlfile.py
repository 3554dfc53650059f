"""Safe YAML loading that remembers where every value came from.

Config and rule files are edited by hand, so errors must point at file:line:column.
The loader is PyYAML's SafeLoader (no ``!!python/...`` tags) with four changes:

* mappings load as :class:`YamlMap` and sequences as :class:`YamlList`, which keep the
  line and column of each key / item;
* duplicate keys are an error (PyYAML silently keeps the last one);
* only ``true``/``false`` are booleans: YAML 1.1's ``yes``/``no``/``on``/``off`` stay
  strings, so a rule term ``NO`` (Norway) is not silently turned into ``False``;
* aliases that would add more than :data:`MAX_EXPANDED_NODES` values are refused
  (a "billion laughs" alias bomb); ordinary anchors and merges still work.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from monitor.errors import ConfigError

MAX_EXPANDED_NODES = 10_000


class YamlMap(dict[str, Any]):
    """A mapping that knows the (line, column) of itself and of each key, 1-based."""

    line: int = 0
    column: int = 0
    key_pos: dict[str, tuple[int, int]]
    #: (line, column, style) of each value; style is None for plain scalars, '"' or "'"
    #: for quoted ones, '|' or '>' for block scalars, '[' or '{' for collections.
    value_pos: dict[str, tuple[int, int, str | None]]

    @classmethod
    def at(cls, pos: tuple[int, int], items: dict[str, Any] | None = None) -> YamlMap:
        """A map built in code (a default), located at ``pos`` for error messages."""
        out = cls(items or {})
        out.line, out.column = pos
        out.key_pos, out.value_pos = {}, {}
        return out

    def pos(self, key: str) -> tuple[int, int]:
        return self.key_pos.get(key, (self.line, self.column))

    def where(self, key: str) -> tuple[int, int, str | None]:
        line, col = self.pos(key)
        return self.value_pos.get(key, (line, col, None))


class YamlList(list[Any]):
    """A sequence that knows the (line, column) of itself and of each item, 1-based."""

    line: int = 0
    column: int = 0
    item_pos: list[tuple[int, int]]
    item_style: list[str | None]

    @classmethod
    def at(cls, pos: tuple[int, int], items: list[Any] | None = None) -> YamlList:
        """A list built in code (one value written where a list was expected, say)."""
        out = cls(items or [])
        out.line, out.column = pos
        out.item_pos = [pos] * len(out)
        out.item_style = [None] * len(out)
        return out

    def pos(self, index: int) -> tuple[int, int]:
        if 0 <= index < len(self.item_pos):
            return self.item_pos[index]
        return (self.line, self.column)

    def where(self, index: int) -> tuple[int, int, str | None]:
        line, col = self.pos(index)
        style = self.item_style[index] if 0 <= index < len(self.item_style) else None
        return (line, col, style)


def _pos(node: yaml.Node) -> tuple[int, int]:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


def _style(node: yaml.Node) -> str | None:
    if isinstance(node, yaml.ScalarNode):
        return node.style
    return "{" if isinstance(node, yaml.MappingNode) else "["


def offset_position(where: tuple[int, int, str | None], text: str, offset: int) -> tuple[int, int]:
    """File (line, column) of character ``offset`` inside a scalar that starts at ``where``.

    Exact for plain and single-line quoted scalars; for block scalars (| and >) the line is
    exact and the column counts from the start of the text on that line.
    """
    line, col, style = where
    if style in ("|", ">"):
        before = text[:offset]
        return line + 1 + before.count("\n"), offset - (before.rfind("\n") + 1) + 1
    return line, col + offset + (1 if style in ('"', "'") else 0)


# libyaml's parser when PyYAML was built with it (2-3x faster on large rule files); the
# constructors below are ours either way.
_Base: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_Base):  # type: ignore[misc]
    def __init__(self, stream: bytes, path: str) -> None:
        super().__init__(stream)
        self.path = path

    def construct_yaml_map(self, node: yaml.MappingNode) -> Any:
        data = YamlMap()
        data.line, data.column = _pos(node)
        data.key_pos = {}
        data.value_pos = {}
        yield data
        self.flatten_mapping(node)
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                key = str(key)
            if key in data:
                line, col = _pos(key_node)
                first = data.key_pos[key][0]
                raise ConfigError(
                    f"duplicate key {key!r} (first defined on line {first}); remove one of them",
                    self.path,
                    line,
                    col,
                )
            data.key_pos[key] = _pos(key_node)
            data.value_pos[key] = (*_pos(value_node), _style(value_node))
            data[key] = self.construct_object(value_node, deep=True)

    def construct_yaml_seq(self, node: yaml.SequenceNode) -> Any:
        data = YamlList()
        data.line, data.column = _pos(node)
        data.item_pos = [_pos(child) for child in node.value]
        data.item_style = [_style(child) for child in node.value]
        yield data
        data.extend(self.construct_object(child, deep=True) for child in node.value)


def _check_expansion(root: yaml.Node, path: str) -> None:
    """Refuse documents whose aliases add more than MAX_EXPANDED_NODES values.

    An alias re-uses a node by reference, but anything that walks the result (validation,
    hashing) pays for the full expansion: a few lines can stand for a billion values.
    """
    sizes: dict[int, int] = {}

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key not in sizes:
            sizes[key] = 1  # guards against recursive anchors
            if isinstance(node, yaml.SequenceNode):
                total = 1 + sum(size(child) for child in node.value)
            elif isinstance(node, yaml.MappingNode):
                total = 1 + sum(size(k) + size(v) for k, v in node.value)
            else:
                total = 1
            sizes[key] = total
        return sizes[key]

    # Only what aliases add counts: a large file written out in full is fine.
    if size(root) - len(sizes) <= MAX_EXPANDED_NODES:
        return
    # Point at the innermost node that is too big: where the repetition starts to explode.
    node = root
    while True:
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        big = [c for c in children if sizes.get(id(c), 0) > MAX_EXPANDED_NODES]
        if not big:
            break
        node = big[0]
    line, col = _pos(node)
    raise ConfigError(
        f"YAML aliases (*name) here expand to more than {MAX_EXPANDED_NODES:,} extra values; "
        "refusing a possible alias bomb. Write the values out instead of repeating anchors.",
        path,
        line,
        col,
    )


_Loader.add_constructor("tag:yaml.org,2002:map", _Loader.construct_yaml_map)
_Loader.add_constructor("tag:yaml.org,2002:seq", _Loader.construct_yaml_seq)
# YAML 1.2 booleans only: drop the 1.1 resolver (yes/no/on/off/y/n) and add a strict one.
_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def load_yaml(path: Path) -> Any:
    """Load one YAML document from ``path``; raise :class:`ConfigError` with its location.

    An empty file loads as ``None``. Several documents in one file are an error.
    UTF-8 (with or without BOM) and UTF-16/32 with a BOM are accepted.
    """
    name = str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read file: {exc.strerror}", name) from exc
    loader = _Loader(raw, name)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node, name)
        return loader.construct_document(node)
    except ConfigError:
        raise
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = f"invalid YAML: {exc.problem or 'syntax error'}"
        if "expected a single document" in str(exc):
            problem = (
                "invalid YAML: several YAML documents ('---') in one file; "
                "keep one document per file"
            )
        elif "maximum nesting depth" in problem:  # PyYAML >= 6.0.4 bounds nesting itself
            problem = "YAML nested too deeply; flatten the lists"
        elif "could not determine a constructor" in problem:
            problem = f"{problem}; tags like !!python/... are not allowed, write plain values"
        raise ConfigError(
            problem,
            name,
            mark.line + 1 if mark else None,
            mark.column + 1 if mark else None,
        ) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", name) from exc
    except RecursionError as exc:
        raise ConfigError("YAML nested too deeply; flatten the lists", name) from exc
    finally:
        loader.dispose()


def located(value: Any, pos: tuple[int, int] = (1, 1)) -> Any:
    """Plain dicts and lists (from JSON, say) as YamlMap / YamlList, all located at ``pos``."""
    if isinstance(value, dict):
        return YamlMap.at(pos, {str(k): located(v, pos) for k, v in value.items()})
    if isinstance(value, list):
        return YamlList.at(pos, [located(v, pos) for v in value])
    return value
