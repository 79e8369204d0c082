"""Line-aware, safe YAML loading for the catalog.

:func:`load_yaml_file` turns one file into plain Python data (dicts, lists, str, int, float, bool,
None, dates) plus its YAML node tree, and reports every file-level problem it finds as a
:class:`~modl.errors.Problem` with a 1-based line instead of raising:

- bytes that are not UTF-8 (line of the first bad byte), tab indentation, syntax errors (line of
  the YAML mark), an empty file, more than one document;
- duplicate keys in a mapping (PyYAML silently keeps the last one);
- aliases (``*name``), merge keys (``<<``) and any tag outside the plain JSON-like set, which
  includes ``!!python/object/apply:...``: records are data, so nothing else is ever constructed.

Parsing only composes nodes (PyYAML's safe loader; the libyaml-backed ``CSafeLoader`` when
PyYAML was built with it: same safe constructor and resolver, about 9x faster). Python values are
then built by :func:`_construct` from the node tree, after the tag whitelist, so no constructor
beyond the safe scalar ones ever runs. :func:`line_of` maps a field path such as
``("links", "paper")`` or ``("authors", 2)`` back to the line of that key or item.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from modl.errors import Problem

FILE_FIELD = "(file)"  # the ``field`` of problems that concern the file as a whole


class _PySafeLoader(yaml.SafeLoader):
    """Pure-Python safe loader (fallback when PyYAML has no libyaml)."""


if getattr(yaml, "__with_libyaml__", False):

    class _CSafeLoader(yaml.CSafeLoader):  # type: ignore[misc,name-defined]
        """libyaml parser with PyYAML's SafeConstructor and Resolver."""

    DEFAULT_LOADER: type = _CSafeLoader
else:  # pragma: no cover - depends on how PyYAML was built
    DEFAULT_LOADER = _PySafeLoader

_TAG = "tag:yaml.org,2002:"
_SCALAR_TAGS = {_TAG + t for t in ("str", "int", "float", "bool", "null", "timestamp")}
_STR = _TAG + "str"
_TAB_INDENT = re.compile(r"^[ ]*\t", re.MULTILINE)


@dataclass
class LoadedYaml:
    """A file's data and node tree; ``data`` is None when the file could not be read."""

    path: Path
    rel: str  # path relative to the catalog root, as printed in problems
    data: Any
    node: Node | None
    problems: list[Problem]
    text: str = ""

    def line(self, path: tuple[str | int, ...]) -> int:
        return line_of(self.node, path)


class _Reject(Exception):
    """A node the catalog does not accept (alias, foreign tag, ...); collected as a Problem."""

    def __init__(self, line: int, path: tuple[str | int, ...], reason: str):
        super().__init__(reason)
        self.line, self.path, self.reason = line, path, reason


def format_path(path: tuple[str | int, ...] | list[str | int]) -> str:
    """``("links", "paper")`` -> ``links.paper``; ``("authors", 2)`` -> ``authors[2]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or FILE_FIELD


def line_of(node: Node | None, path: tuple[str | int, ...] | list[str | int]) -> int:
    """1-based line of the key (mapping) or item (sequence) at ``path``.

    When the path leaves the tree (a missing field), the line of the deepest existing ancestor's
    key is returned, i.e. the place where the missing field belongs; the top level maps to line 1.
    """
    line = 1
    for part in path:
        if isinstance(node, MappingNode):
            for key, value in node.value:
                if isinstance(key, ScalarNode) and key.value == str(part):
                    line, node = key.start_mark.line + 1, value
                    break
            else:
                return line
        elif isinstance(node, SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def _mark_line(error: yaml.YAMLError, text: str) -> int:
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    if mark is not None:
        return mark.line + 1
    position = getattr(error, "position", None)  # ReaderError: offset of a forbidden character
    if isinstance(position, int):
        return text.count("\n", 0, position) + 1
    return 1


def _yaml_reason(error: yaml.YAMLError) -> str:
    """One line from a PyYAML error: 'while parsing ...: expected ..., but found ...'."""
    if isinstance(error, yaml.MarkedYAMLError):
        parts = [p for p in (error.context, error.problem) if p]
        reason = "; ".join(parts) or "invalid YAML"
    else:
        reason = str(error).splitlines()[0] if str(error) else "invalid YAML"
    return "YAML syntax error: " + " ".join(reason.split())


def _construct(loader: Any, node: Node, path: tuple[str | int, ...], line: int, problems: list[_Reject], seen: set[int]) -> Any:
    """Build plain Python data from ``node`` (found at ``line``); rejected nodes go to ``problems``."""
    # An alias makes the composer hand back the very node object of its anchor: a node met twice.
    # Its marks are the anchor's, hence the ``line`` of the place that refers to it.
    if id(node) in seen:
        raise _Reject(line, path, "uses a YAML alias (*name); write the value out instead")
    seen.add(id(node))
    line = node.start_mark.line + 1

    def tag_error() -> _Reject:
        return _Reject(line, path, f"YAML tag {node.tag.replace(_TAG, '!!')!r} is not allowed; records hold plain data")

    if isinstance(node, ScalarNode):
        if node.tag == _STR:
            return node.value  # what SafeConstructor.construct_yaml_str returns; the common case, kept fast
        if node.tag not in _SCALAR_TAGS:
            raise tag_error()
        try:
            # Only the safe scalar constructors (str/int/float/bool/null/timestamp) are reachable here.
            return loader.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, OverflowError) as error:
            raise _Reject(line, path, f"cannot read {node.value!r} as {node.tag.replace(_TAG, '')}: {error}") from None
    if isinstance(node, SequenceNode):
        if node.tag != _TAG + "seq":
            raise tag_error()
        out_list = []
        for index, item in enumerate(node.value):
            # For an aliased item, the best line we have is just after the previous item.
            item_line = node.value[index - 1].end_mark.line + 1 if index else line
            if id(item) not in seen:
                item_line = item.start_mark.line + 1
            try:
                out_list.append(_construct(loader, item, path + (index,), item_line, problems, seen))
            except _Reject as reject:
                problems.append(reject)
                out_list.append(None)
        return out_list
    assert isinstance(node, MappingNode)
    if node.tag != _TAG + "map":
        raise tag_error()
    out: dict[Any, Any] = {}
    first_line: dict[Any, int] = {}
    for key_node, value_node in node.value:
        key_line = key_node.start_mark.line + 1
        if key_node.tag == _TAG + "merge":
            problems.append(_Reject(key_line, path, "merge keys (<<) are not allowed; write the fields out"))
            continue
        if not isinstance(key_node, ScalarNode):
            problems.append(_Reject(key_line, path, "a mapping key must be a plain name, not a list or mapping"))
            continue
        try:
            key = _construct(loader, key_node, path, key_line, problems, seen)
        except _Reject as reject:
            problems.append(reject)
            continue
        key_path = path + (str(key),)
        if key in first_line:
            problems.append(_Reject(key_line, key_path, f"duplicate key {str(key)!r} (first at line {first_line[key]})"))
            continue
        first_line[key] = key_line
        try:
            out[key] = _construct(loader, value_node, key_path, key_line, problems, seen)
        except _Reject as reject:
            problems.append(reject)
            out[key] = None
    return out


def load_yaml_file(path: Path, root: Path, loader_class: type | None = None) -> LoadedYaml:
    """Read and parse one catalog file, collecting file-level problems instead of raising."""
    try:
        rel = path.relative_to(root).as_posix()
    except ValueError:
        rel = path.as_posix()
    result = LoadedYaml(path=path, rel=rel, data=None, node=None, problems=[])

    def problem(line: int, reason: str, field: str = FILE_FIELD) -> LoadedYaml:
        result.problems.append(Problem(rel, line, field, reason))
        return result

    try:
        raw = path.read_bytes()
    except OSError as error:
        return problem(1, f"cannot read file: {error.strerror or error}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        return problem(line, f"is not valid UTF-8 (byte 0x{raw[error.start]:02x} at offset {error.start}); save the file as UTF-8")
    result.text = text
    if text.startswith("\ufeff"):
        text = text[1:]  # a UTF-8 byte-order mark is harmless; libyaml would reject it in a str

    # YAML forbids tabs in indentation; say so plainly instead of "cannot start any token".
    tab_lines = [text.count("\n", 0, m.start()) + 1 for m in _TAB_INDENT.finditer(text)]
    if tab_lines:
        for line in tab_lines:
            problem(line, "indentation uses a tab character; YAML needs spaces")
        return result

    try:
        # The pure-Python reader checks for forbidden characters already in the constructor.
        loader = (loader_class or DEFAULT_LOADER)(text)
    except yaml.YAMLError as error:
        return problem(_mark_line(error, text), _yaml_reason(error))
    try:
        try:
            node = loader.get_single_node()
        except yaml.YAMLError as error:
            return problem(_mark_line(error, text), _yaml_reason(error))
        if node is None:
            return problem(1, "file is empty; expected a mapping of fields")
        result.node = node
        rejects: list[_Reject] = []
        try:
            data = _construct(loader, node, (), node.start_mark.line + 1, rejects, set())
        except _Reject as reject:
            rejects.append(reject)
            data = None
        for reject in rejects:
            problem(reject.line, reject.reason, format_path(reject.path) if reject.path else FILE_FIELD)
        if rejects:
            return result
        if not isinstance(data, dict):
            kind = {list: "a list", str: "a single string", type(None): "an empty value"}.get(type(data), f"a {type(data).__name__}")
            return problem(node.start_mark.line + 1, f"top level must be a mapping of fields, not {kind}")
        result.data = data
        return result
    finally:
        loader.dispose()
