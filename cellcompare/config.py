"""The one configuration loader: YAML or a mapping -> a frozen dataclass, validated once.

Every configuration class of the project (``DatasetConfig``, ``FeatureConfig``,
``ClassicalConfig``, ``DeepConfig``, ``CompareConfig``, ``ReportOptions``, ...) is a frozen
dataclass built by :func:`build`. It

- rejects unknown keys with :class:`UnknownKeyError`, naming the key (dotted, e.g.
  ``dataset.synth.clases``), the keys it expected and, when read from a file, the file;
- builds nested dataclass fields from nested mappings (``augment: {flips: false}``);
- turns YAML lists into tuples where the field is a tuple.

Values are checked by each dataclass's own ``__post_init__``; an error raised there is re-raised
as a :class:`ConfigError` with the file (when known) in front.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

__all__ = ["ConfigError", "UnknownKeyError", "build", "load_yaml", "name_tuple", "read_yaml",
           "to_plain"]

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration value is missing, unknown or out of range; the message names the key."""


class UnknownKeyError(ConfigError):
    """A configuration mapping has a key its dataclass does not define.

    Attributes
    ----------
    key : str
        The dotted key, e.g. ``"models[0].params.lrr"``.
    source : str or None
        The file the mapping came from, when known.
    """

    def __init__(self, key: str, expected: list[str], source: str | Path | None = None) -> None:
        self.key = key
        self.expected = list(expected)
        self.source = None if source is None else str(source)
        where = f"{self.source}: " if self.source else ""
        super().__init__(f"{where}unknown key {key!r}; expected one of {self.expected}")


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _dataclass_in(hint: Any) -> type | None:
    """The dataclass type a field annotation names (``X`` or ``X | None``), else None."""
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return hint
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        found = [a for a in typing.get_args(hint) if dataclasses.is_dataclass(a) and isinstance(a, type)]
        return found[0] if len(found) == 1 else None
    return None


def _is_tuple(hint: Any) -> bool:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return any(_is_tuple(a) for a in typing.get_args(hint))
    return hint is tuple or typing.get_origin(hint) is tuple


def _convert(value: Any, hint: Any, where: str, source: str | Path | None) -> Any:
    nested = _dataclass_in(hint)
    if nested is not None and isinstance(value, Mapping):
        return build(nested, value, where=where, source=source)
    if _is_tuple(hint) and isinstance(value, list):
        return tuple(_convert(v, Any, where, source) for v in value)
    return value


def build(cls: type[T], data: Mapping[str, Any] | None, *, where: str = "",
          source: str | Path | None = None) -> T:
    """Build the frozen dataclass ``cls`` from ``data``, checking every key.

    Parameters
    ----------
    cls : type
        A dataclass.
    data : mapping or None
        Field values; ``None`` means all defaults.
    where : str
        Dotted position of ``data`` in the whole configuration (for messages).
    source : str or Path, optional
        File the data came from (for messages).

    Returns
    -------
    cls instance

    Raises
    ------
    UnknownKeyError
        ``data`` holds a key that is not a field of ``cls``.
    ConfigError
        ``data`` is not a mapping, or ``cls`` rejected a value (its message is kept).

    Examples
    --------
    >>> import dataclasses
    >>> from cellcompare.config import build
    >>> @dataclasses.dataclass(frozen=True)
    ... class Folds:
    ...     n_splits: int = 5
    >>> build(Folds, {"n_splits": 3})
    Folds(n_splits=3)
    >>> build(Folds, {"n_split": 3})
    Traceback (most recent call last):
    ...
    cellcompare.config.UnknownKeyError: ...n_split...
    """
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{_prefix(source)}{where or cls.__name__}: expected a mapping, "
                          f"found {type(data).__name__} {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if key not in fields:
            raise UnknownKeyError(_join(where, str(key)), sorted(fields), source)
    hints = typing.get_type_hints(cls)
    values = {k: _convert(v, hints.get(k, Any), _join(where, k), source) for k, v in data.items()}
    try:
        return cls(**values)
    except ConfigError as exc:
        if source is None or str(exc).startswith(f"{source}:"):
            raise
        raise _with_source(exc, source) from exc
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{_prefix(source)}{where or cls.__name__}: {exc}") from exc


def _with_source(exc: ConfigError, source: str | Path) -> ConfigError:
    """The same error (same class where it can be rebuilt from a message) naming the file."""
    try:
        return type(exc)(f"{source}: {exc}")
    except TypeError:
        return ConfigError(f"{source}: {exc}")


def _prefix(source: str | Path | None) -> str:
    return f"{source}: " if source is not None else ""


def name_tuple(value: Any, key: str) -> tuple[str, ...] | None:
    """A list of names from a configuration value: a lone string is a list of one.

    Returns ``None`` for ``None``; raises :class:`ConfigError` naming ``key`` for anything that
    is not a string, list or tuple.

    Examples
    --------
    >>> from cellcompare.config import name_tuple
    >>> name_tuple("DNA", "dataset.channels"), name_tuple(["a", 1], "export_models")
    (('DNA',), ('a', '1'))
    """
    if value is None:
        return None
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{key}: expected a list of names, found {value!r}")
    return tuple(str(v) for v in value)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML file holding one mapping (an empty file is ``{}``).

    Raises
    ------
    ConfigError
        The file is missing, is not valid YAML, or its top level is not a mapping.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: expected a mapping at the top level, found {type(data).__name__}")
    return dict(data)


def load_yaml(cls: type[T], path: str | Path, *, section: str | None = None) -> T:
    """Build ``cls`` from a YAML file, optionally from its ``section:`` mapping when present.

    Parameters
    ----------
    cls : type
        The dataclass to build; a class with a ``from_dict(data, source=...)`` classmethod uses
        it (for shorthand forms the plain field mapping does not cover).
    path : str or Path
        The YAML file.
    section : str, optional
        Top-level key holding the mapping (``features:`` in a comparison config); when the file
        has no such key its top level is used.
    """
    data = read_yaml(path)
    if section is not None and section in data:
        data = data[section] or {}
    from_dict = getattr(cls, "from_dict", None)
    if from_dict is not None:
        return from_dict(data, source=path)
    return build(cls, data, source=path)


def to_plain(value: Any) -> Any:
    """Plain YAML/JSON form of a dataclass or container: tuples become lists, recursively."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    return value
