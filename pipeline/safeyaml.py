"""Read a user's YAML file without letting the file decide how much work that is.

Every YAML file an operator edits (feed registries, ``config/entities.yaml``,
``config/alert_rules.yaml``) goes through :func:`load_file`:

- the file is capped in size before it is parsed (``MAX_FILE_BYTES``);
- aliases (``*name``) are refused: they are how a 754-byte "billion laughs"
  file becomes gigabytes, and no finsent file needs them;
- a key given twice in one mapping is an error (PyYAML keeps the last one and
  drops the first silently: a second ``routing:`` would erase the risk team's
  routes);
- any one scalar is capped (``MAX_SCALAR_CHARS``) and the whole document in
  nodes (``MAX_NODES``).

Error messages quote values through :func:`short`, never ``repr()`` of the whole
value.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode

MAX_FILE_BYTES = 2 * 1024 * 1024
MAX_SCALAR_CHARS = 64 * 1024
MAX_NODES = 200_000
_SHORT = 60


class YamlFileError(ValueError):
    """The file cannot be read as a finsent YAML file; the message names the file and the place."""


def short(value: object, limit: int = _SHORT) -> str:
    """A printable quote of at most ``limit`` characters of a value, for error messages."""
    if isinstance(value, str):
        text = value
    elif isinstance(value, dict | list | tuple | set):
        text = f"<{type(value).__name__} of {len(value)}>"
    else:
        text = str(value)
    text = text if len(text) <= limit else text[:limit] + f"… ({len(text)} chars)"
    return repr(text) if isinstance(value, str) else text


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses aliases, duplicate keys, huge scalars and huge documents."""

    def __init__(self, stream) -> None:
        super().__init__(stream)
        self._nodes = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise ConstructorError(
                None, None, "aliases (*name) are not allowed in finsent files; write the value out", event.start_mark
            )
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise ConstructorError(
                None, None, f"more than {MAX_NODES:,} values in one file", self.peek_event().start_mark
            )
        if self.check_event(yaml.ScalarEvent):
            event = self.peek_event()
            if len(event.value) > MAX_SCALAR_CHARS:
                raise ConstructorError(
                    None, None, f"a value longer than {MAX_SCALAR_CHARS:,} characters", event.start_mark
                )
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        if isinstance(node, MappingNode):
            seen: set = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    dup = key in seen
                except TypeError:  # an unhashable key: let PyYAML say so
                    break
                if dup:
                    raise ConstructorError(
                        "while reading a mapping",
                        node.start_mark,
                        f"the key {short(key)} is given twice (only one is allowed)",
                        key_node.start_mark,
                    )
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _StrictLoader.construct_mapping)


def loads(text: str, name: str = "<text>"):
    """Parse one YAML document strictly; YamlFileError names the line and column."""
    if len(text) > MAX_FILE_BYTES:
        raise YamlFileError(f"{name}: larger than {MAX_FILE_BYTES:,} bytes")
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as exc:
        raise YamlFileError(f"{name}: not valid YAML: {_describe(exc)}") from None
    except RecursionError:
        raise YamlFileError(f"{name}: nested too deeply") from None


def load_file(path: str | Path):
    """Read and parse a user's YAML file within the caps above."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise YamlFileError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise YamlFileError(f"{path}: larger than {MAX_FILE_BYTES:,} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise YamlFileError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    return loads(text, str(path))


def _describe(exc: yaml.YAMLError) -> str:
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    mark = getattr(exc, "problem_mark", None)
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    return short(str(problem), 160).strip("'\"") + where
