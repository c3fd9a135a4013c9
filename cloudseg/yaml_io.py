"""Reading a YAML file a person wrote (run configs, study specs): every way it can be wrong is a
ConfigError naming the file, never a UnicodeDecodeError, and a key given twice is an error
instead of the last one silently winning.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from cloudseg.errors import ConfigError


class _DuplicateKey(Exception):
    def __init__(self, key: Any, first: int, again: int) -> None:
        self.key, self.first, self.again = key, first, again


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a mapping holding the same key twice (merge keys `<<` aside)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                try:
                    if key in seen:
                        raise _DuplicateKey(key, seen[key], line)
                    seen[key] = line
                except TypeError:  # an unhashable key: SafeLoader says so itself
                    continue
        return super().construct_mapping(node, deep)


def read_yaml(path: str | Path, what: str = "YAML file") -> Any:
    """The parsed content of `path`; ConfigError (naming the file) when it cannot be."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder, not a {what}") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read {what}: {err.strerror}") from None
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"{path}: not a text file (byte {err.start} is not UTF-8); a {what} is YAML text"
        ) from None
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except _DuplicateKey as dup:
        raise ConfigError(
            f"{path}: duplicate key {dup.key!r} (line {dup.first} and again line {dup.again}); "
            "YAML would keep only the last one, so say it once"
        ) from None
    except yaml.YAMLError as err:
        text = " ".join(line.strip() for line in str(err).splitlines() if line.strip())
        raise ConfigError(f"{path}: not valid YAML: {text}") from None
