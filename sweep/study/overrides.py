"""`--set KEY=VALUE`: change a study spec's fields from the command line before it is validated.

A key is a dotted path into the spec as its YAML holds it (`budget.epochs`, `confirm`,
`fixed.train.num_workers`); the value is read as a YAML scalar or flow collection (`2`, `0.5`,
`null`, `true`, `[8, 16]`, `{top: 2, repeats: 1}`). The result is validated like any spec, so
a misspelt key or a bad value fails with the field's name, and the spec stored with the study
is the one that ran.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from sweep.errors import SpecError


def parse_override(text: str) -> tuple[str, Any]:
    """`"budget.epochs=2"` → `("budget.epochs", 2)`; a malformed one is a SpecError."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise SpecError(f"--set {text!r}: expected KEY=VALUE with a dotted KEY, e.g. "
                        "budget.epochs=2")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as err:
        reason = str(err).splitlines()[0]
        raise SpecError(f"--set {key}: the value {raw!r} is not YAML ({reason})") from None
    return key, value


def apply_overrides(data: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """A deep copy of the spec mapping `data` with each `KEY=VALUE` set (missing sections are
    created; a section given a scalar is replaced whole).
    """
    out = copy.deepcopy(dict(data))
    for text in overrides:
        key, value = parse_override(text)
        node = out
        *parents, leaf = key.split(".")
        for i, part in enumerate(parents):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                where = ".".join(parents[: i + 1])
                raise SpecError(f"--set {key}: {where} is not a section (it holds {child!r})")
            node = child
        node[leaf] = value
    return out


def describe_overrides(overrides: Iterable[str]) -> str:
    """The suffix error messages name the spec with: ` (with --set a=1 --set b=2)`."""
    shown = " ".join(f"--set {o}" for o in overrides)
    return f" (with {shown})" if shown else ""
