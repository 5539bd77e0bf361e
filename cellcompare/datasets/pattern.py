"""Reader of file-name patterns: one file per channel, the name tells plate, well, site, channel.

In the style of CellProfiler's NamesAndTypes: a regular expression with named groups
(``plate``, ``well``, ``site``, ``channel``, optional ``class``) is matched against each file
name (without its extension), or a template such as ``{plate}_{well}f{site}d{channel}``, or a
preset of a microscope's naming (:data:`PRESETS`).
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .base import Entry, ImageDataset
from .errors import DatasetError, LayoutError, MissingChannelError
from .imageio import IMAGE_SUFFIXES
from .platemeta import PLATE_FIELDS, PlateMap, plate_metadata

__all__ = ["PRESETS", "PatternDataset", "compile_pattern", "detect_preset", "parse_name"]

logger = logging.getLogger(__name__)

#: Named patterns of common instruments' file names (matched against the name without extension).
PRESETS: dict[str, str] = {
    # Molecular Devices ImageXpress: A01_s1_w1.tif, optionally a plate prefix and a UUID suffix
    "imagexpress": r"(?:(?P<plate>.+)_)?(?P<well>[A-Za-z]{1,2}\d{1,3})_s(?P<site>\d+)"
                   r"_(?P<channel>w\d+)(?:[-_]?[0-9A-Fa-f]{8}-[0-9A-Fa-f-]{27})?",
    # PerkinElmer Opera / Operetta (Harmony export): r01c01f01p01-ch1sk1fk1fl1.tiff
    "opera": r"r(?P<row>\d+)c(?P<col>\d+)f(?P<field>\d+)p(?P<plane>\d+)-(?P<channel>ch\d+)"
             r"(?:sk\d+fk\d+fl\d+)?",
    # CellProfiler's example naming: AS_09125_050116030001_D03f00d0.tif
    "cellprofiler": r"(?P<plate>.+)_(?P<well>[A-Za-z]{1,2}\d{1,3})f(?P<site>\d+)(?P<channel>d\d+)",
}
PRESETS["operetta"] = PRESETS["opera"]

#: Regular expression of each template field (``{well}`` ...); others match ``[^_]+?``.
_FIELD_REGEX = {
    "plate": r".+?", "well": r"[A-Za-z]{1,2}\d{1,3}", "site": r"\d+", "field": r"\d+",
    "row": r"\d+", "col": r"\d+", "plane": r"\d+", "channel": r"[A-Za-z0-9]+",
    "class": r"[^_]+", "experiment": r"[^_]+",
}
_TEMPLATE_FIELD = re.compile(r"\{(\w+)\}")
#: Pattern groups that name the sample's label or channel, not its identity.
_NOT_IDENTITY = ("channel", "class")


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """A preset name, a ``{field}`` template or a regular expression, as a compiled regex.

    Parameters
    ----------
    pattern : str
        A key of :data:`PRESETS`, a template (``{well}_s{site}_w{channel}``; literal text is
        escaped) or a regular expression with named groups.

    Returns
    -------
    re.Pattern
        Matched in full against a file name without its extension. Without a ``channel``
        group each file is one sample whose channels are the file's own (RGB, multi-page or
        multi-sample TIFF).

    Raises
    ------
    LayoutError
        The expression does not compile or has no named group.
    """
    text = PRESETS.get(pattern.lower(), pattern)
    if "(?P<" not in text and _TEMPLATE_FIELD.search(text):
        parts, last = [], 0
        for match in _TEMPLATE_FIELD.finditer(text):
            parts.append(re.escape(text[last:match.start()]))
            name = match[1]
            parts.append(f"(?P<{name}>{_FIELD_REGEX.get(name, r'[^_]+?')})")
            last = match.end()
        parts.append(re.escape(text[last:]))
        text = "".join(parts)
    try:
        regex = re.compile(text)
    except re.error as exc:
        raise LayoutError(f"file-name pattern {pattern!r} is not a valid regular expression: {exc}") from exc
    if not regex.groupindex:
        raise LayoutError(f"file-name pattern {pattern!r} has no named group; expected e.g. "
                          f"'{{well}}_s{{site}}_w{{channel}}' or r'(?P<well>...)_(?P<channel>...)'")
    return regex


def _well(row: str, col: str) -> str:
    """Opera's numeric row/column as a well name: row 1, column 3 -> ``A03``."""
    r = int(row)
    if not 1 <= r <= 52:
        raise ValueError(f"row {row} is not a plate row (1..52)")
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    name = letters[r - 1] if r <= 26 else "A" + letters[r - 27]
    return f"{name}{int(col):02d}"


def parse_name(regex: re.Pattern[str], stem: str) -> dict[str, str] | None:
    """Fields of one file name, or None when it does not match.

    ``row``/``col`` become ``well`` and ``field`` becomes ``site`` when the pattern lacks them.

    Examples
    --------
    >>> from cellcompare.datasets.pattern import compile_pattern, parse_name
    >>> parse_name(compile_pattern("cellprofiler"), "AS_09125_050116030001_D03f00d0")
    {'plate': 'AS_09125_050116030001', 'well': 'D03', 'site': '00', 'channel': 'd0'}
    """
    match = regex.fullmatch(stem)
    if match is None:
        return None
    fields = {k: v for k, v in match.groupdict().items() if v is not None}
    if "well" not in fields and "row" in fields and "col" in fields:
        fields["well"] = _well(fields.pop("row"), fields.pop("col"))
    if "site" not in fields and "field" in fields:
        fields["site"] = fields.pop("field")
    return fields


def detect_preset(files: Sequence[Path]) -> str | None:
    """The preset every one of ``files`` matches with two or more channels, else None."""
    stems = [Path(f).stem for f in files]
    for name in ("cellprofiler", "imagexpress", "opera"):
        regex = compile_pattern(name)
        fields = [parse_name(regex, s) for s in stems]
        if stems and all(fields) and len({f["channel"] for f in fields}) >= 2:
            return name
    return None


class PatternDataset(ImageDataset):
    """One multi-channel sample per (plate, well, site, ...) found by a file-name pattern.

    Files are searched recursively under ``root``. Without a ``plate`` group, the folder
    holding a file (relative to ``root``) is its plate. Every group except ``channel`` and
    ``class`` identifies the sample; the ``class`` group, when present, is its label. Without
    a ``channel`` group each file is a sample and its channels are the file's own (an RGB
    JPEG or PNG, a multi-page or multi-sample TIFF: ``C1..Cn`` unless ``channel_names``).

    Parameters
    ----------
    root : str or Path
        Folder holding the images (any depth).
    pattern : str
        Preset (``imagexpress``, ``opera``/``operetta``, ``cellprofiler``), template or regex;
        see :func:`compile_pattern`.
    channel_names : mapping or sequence of str, optional
        ``{raw: name}`` (``{"d0": "DNA", "d1": "ER"}``) chooses, orders and names channels
        (channels not in it are left out, logged); a sequence names the sorted raw channels.
    group_by : str
        Field used as the sample's group (fold grouping); default ``plate``.
    platemap : str, optional
        CSV (relative to ``root``, or absolute) giving each well's label and well type
        (:class:`~cellcompare.datasets.platemeta.PlateMap`); wells it does not list are
        unlabelled. Not with a ``class`` group.
    label_column : str
        The plate map's label column.
    **kwargs
        ``include_classes``, ``exclude_classes``, ``on_error``, ``check_headers``, ...
    """

    layout = "pattern"

    def __init__(self, root: str | Path, *, pattern: str = "cellprofiler",
                 channel_names: Mapping[str, str] | Sequence[str] | None = None,
                 group_by: str = "plate", platemap: str | None = None, label_column: str = "label",
                 **kwargs: Any) -> None:
        self.pattern = pattern
        self.regex = compile_pattern(pattern)
        if platemap is not None and "class" in self.regex.groupindex:
            raise LayoutError(f"pattern {pattern!r} has a 'class' group and a platemap is given; "
                              f"labels come from one of them")
        path = Path(root) / platemap if platemap and not Path(platemap).is_absolute() else platemap
        self.platemap = PlateMap(path, label_column) if path else None
        fields = set(self.regex.groupindex) | {"plate"}
        fields |= {"well"} if {"row", "col"} <= fields else set()
        fields |= {"site"} if "field" in fields else set()
        if group_by not in fields - set(_NOT_IDENTITY):
            raise LayoutError(f"group_by={group_by!r} is not a field of the pattern {pattern!r}; "
                              f"fields: {sorted(fields - set(_NOT_IDENTITY))}")
        self.group_by = group_by
        self._fields: dict[tuple, dict[str, str]] = {}
        self._mapping = dict(channel_names) if isinstance(channel_names, Mapping) else None
        self._names = tuple(channel_names) if channel_names and self._mapping is None else None
        self.raw_channels: tuple[str, ...] = ()
        self._seen_labels: set[str] = set()
        super().__init__(root, **kwargs)

    def _known_filtered_classes(self) -> set[str]:
        return self._seen_labels

    def _files(self) -> list[Path]:
        found, stack = [], [self.root]
        while stack:
            for path in self._visible(stack.pop().iterdir()):
                if path.is_dir():
                    stack.append(path)
                elif path.suffix.lower() in IMAGE_SUFFIXES:
                    found.append(path)
        return sorted(found)

    def _parse(self, files: list[Path]) -> dict[tuple, dict[str, Path]]:
        """``{(identity fields): {raw channel: path}}``; unmatched files are logged."""
        sites: dict[tuple, dict[str, Path]] = defaultdict(dict)
        self._fields: dict[tuple, dict[str, str]] = {}
        unmatched = []
        for path in files:
            fields = parse_name(self.regex, path.stem)
            if fields is None:
                unmatched.append(path.name)
                continue
            if "plate" not in fields and path.parent != self.root:
                fields["plate"] = path.parent.relative_to(self.root).as_posix()
            channel = fields.pop("channel", "")  # "": the file holds all channels
            key = tuple(sorted((k, v) for k, v in fields.items()))
            if channel in sites[key]:
                raise DatasetError(f"files {sites[key][channel]} and {path} both match channel "
                                   f"{channel!r} of {dict(key)} with pattern {self.pattern!r}")
            sites[key][channel] = path
            self._fields[key] = fields
        if not sites:
            example = unmatched[0] if unmatched else "(no image files)"
            raise LayoutError(f"no file under {self.root} matches the pattern {self.pattern!r} "
                              f"({self.regex.pattern}); e.g. {example}")
        if unmatched:
            logger.warning("%d image files under %s do not match the pattern %r and are not used: %s",
                           len(unmatched), self.root, self.pattern, ", ".join(unmatched[:5]))
        return sites

    def _choose_channels(self, sites: dict[tuple, dict[str, Path]]) -> tuple[str, ...]:
        raw = sorted({c for chans in sites.values() for c in chans},
                     key=lambda c: (len(c), c))  # w2 before w10
        if raw == [""] and self._mapping is not None:
            raise LayoutError(f"channel_names maps file-name channels, but the pattern "
                              f"{self.pattern!r} has no 'channel' group; give a list of names")
        if self._mapping is None:
            return tuple(raw)
        unknown = [c for c in self._mapping if c not in raw]
        if unknown:
            raise LayoutError(f"channel_names maps channels {unknown} that no file under "
                              f"{self.root} has; the files' channels are {raw}")
        ignored = [c for c in raw if c not in self._mapping]
        if ignored:
            logger.info("channels %s of %s are not in channel_names and are not used", ignored, self.root)
        return tuple(self._mapping)

    def _scan(self) -> list[Entry]:
        sites = self._parse(self._files())
        self.raw_channels = self._choose_channels(sites)
        entries = []
        for key, chans in sorted(sites.items(), key=lambda item: self._order(self._fields[item[0]])):
            fields = self._fields[key]
            label, extra = fields.get("class"), {}
            if self.platemap is not None:
                hit = self.platemap.lookup(fields.get("plate"), fields.get("well"))
                label, extra = (hit["label"], hit["metadata"]) if hit else (None, {})
            self._seen_labels.add(str(label))
            if not self._wanted(label):
                continue
            absent = [c for c in self.raw_channels if c not in chans]
            if absent:
                present = ", ".join(p.name for p in chans.values())
                self._fail(MissingChannelError(
                    f"site {dict(key)} under {self.root} lacks channels {absent} (found {present}; "
                    f"channels {list(self.raw_channels)})"), next(iter(chans.values())))
                continue
            entry = self._entry(fields, label, chans)
            entry.metadata.update(extra)
            entries.append(entry)
        return entries

    @staticmethod
    def _order(fields: dict[str, str]) -> tuple:
        """Plate-map order: experiment, plate, well, site, then the other fields by name."""
        first = tuple(fields.get(k, "") for k in ("experiment", "plate", "well", "site"))
        return first + tuple(sorted((k, v) for k, v in fields.items()
                                    if k not in ("experiment", "plate", "well", "site")))

    def _entry(self, fields: dict[str, str], label: str | None, chans: dict[str, Path]) -> Entry:
        identity = [fields[k] for k in ("experiment", "plate", "well", "site") if k in fields]
        identity += [f"{k}{v}" for k, v in sorted(fields.items())
                     if k not in (*PLATE_FIELDS, *_NOT_IDENTITY)]
        metadata = {k: v for k, v in fields.items() if k not in _NOT_IDENTITY}
        metadata.update(plate_metadata(**{k: v for k, v in fields.items() if k in PLATE_FIELDS}))
        for key, value in fields.items():  # plane, timepoint, ...: Metadata_Plane
            if key not in PLATE_FIELDS and key not in _NOT_IDENTITY:
                metadata[f"Metadata_{key.capitalize()}"] = value
        return Entry(sample_id="_".join(identity), label=label, group=fields.get(self.group_by),
                     paths=tuple(str(chans[c]) for c in self.raw_channels), metadata=metadata)

    def _channel_names(self, n: int) -> Sequence[str]:
        if self.raw_channels == ("",):  # one file per sample: its own channels
            default = ("Gray",) if n == 1 else tuple(f"C{i}" for i in range(1, n + 1))
            names = self._names or default
        else:
            names = (tuple(self._mapping.values()) if self._mapping is not None
                     else self._names or self.raw_channels)
        if len(names) != n:
            raise LayoutError(f"channel names {list(names)} do not match the {n} channels of the "
                              f"images under {self.root} (files with several samples per pixel "
                              f"give several channels)")
        return names
