"""Grid files: YAML → validated, expanded list of Variants, or one SpecError line naming file, line and problem.

name: paper                # names OUT/<name>/
settings: {arch: d2l, dataset: fashion-mnist, epochs: 10}   # shared by every variant
axes: {head: [gap, fc, alexnet], cccp: [0, 1, 2]}           # cartesian product, in this order
include: [{model: alexnet, lr: 0.01}]                       # extra rows: settings + these keys
exclude: [{head: alexnet, cccp: 0}]                         # drop axis combinations matching all keys
seeds: [0, 1, 2]                                            # or a count: 3
"""

from __future__ import annotations

import difflib
import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from nin.errors import InputError
from nin.variant import VARIANT_FIELDS, Variant

TOP_LEVEL_KEYS = ("name", "description", "settings", "axes", "include", "exclude", "seeds")
DEFAULT_MAX_RUNS = 500
_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class SpecError(InputError):
    """A grid file problem, as one line: `file:line: where: what (and how to fix it)`."""


@dataclass(frozen=True)
class Grid:
    name: str
    path: Path | None
    raw: dict[str, Any]
    variants: tuple[Variant, ...]

    def resolved(self) -> dict[str, Any]:
        """The grid as resolved: the file's keys plus every variant id it expands to (written as spec.yaml)."""
        return {**self.raw, "variants": [v.id for v in self.variants]}


def load_grid(
    path: str | Path, max_runs: int | None = DEFAULT_MAX_RUNS, overrides: dict[str, Any] | None = None
) -> Grid:
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"{path}: grid file not found (see ablations/ for examples)")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{path}: cannot read grid file: {exc}") from None
    return parse_grid(text, source=str(path), max_runs=max_runs, path=path, overrides=overrides)


def parse_grid(
    text: str,
    source: str = "<grid>",
    max_runs: int | None = DEFAULT_MAX_RUNS,
    path: Path | None = None,
    overrides: dict[str, Any] | None = None,
) -> Grid:
    """`overrides` (command-line settings such as --epochs) replace the file's shared settings for every row."""
    try:
        raw = yaml.safe_load(text)
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(f"{where}: invalid YAML: {problem}") from None
    if overrides and isinstance(raw, dict):
        for key in overrides:
            if key in (raw.get("axes") or {}):
                raise SpecError(f"{source}: --{key} cannot override '{key}': it is an axis of this grid")
        settings = raw.get("settings") if isinstance(raw.get("settings"), dict) else {}
        raw = {**raw, "settings": {**settings, **overrides}}
        raw["include"] = [
            {k: v for k, v in row.items() if k not in overrides} if isinstance(row, dict) else row
            for row in raw.get("include") or []
        ] or raw.get("include")
    return _Expander(raw, root, source, max_runs, path).grid()


class _Expander:
    def __init__(self, raw: Any, root: yaml.Node | None, source: str, max_runs: int | None, path: Path | None):
        self.raw, self.root, self.source, self.max_runs, self.path = raw, root, source, max_runs, path

    # ---- error reporting ------------------------------------------------------------------------------------
    def fail(self, where: tuple, message: str) -> SpecError:
        dotted = _dotted(where)
        line = self._line(where)
        prefix = f"{self.source}:{line}" if line else self.source
        return SpecError(_printable(f"{prefix}: {dotted + ': ' if dotted else ''}{message}"))

    def _line(self, where: tuple) -> int | None:
        node, line = self.root, None
        for part in where:
            if isinstance(node, yaml.MappingNode):
                match = [(k, v) for k, v in node.value if k.value == part]
                if not match:
                    break
                line, node = match[0][0].start_mark.line + 1, match[0][1]
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
                node = node.value[part]
                line = node.start_mark.line + 1
            else:
                break
        if line is None and node is not None:
            line = node.start_mark.line + 1
        return line

    def unknown_field(self, where: tuple, key: Any, allowed: tuple[str, ...], what: str) -> SpecError:
        close = difflib.get_close_matches(str(key), allowed, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        return self.fail(where, f"unknown {what} '{key}' ({hint}allowed: {', '.join(allowed)})")

    # ---- structure ------------------------------------------------------------------------------------------
    def mapping(self, value: Any, where: tuple, what: str) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail(where, f"{what} must be a mapping of key: value, got {type(value).__name__}")
        for key in value:
            if key not in VARIANT_FIELDS or key == "seed":
                allowed = tuple(f for f in VARIANT_FIELDS if f != "seed")
                if key == "seed":
                    raise self.fail((*where, key), "set seeds with the top-level 'seeds:' list, not 'seed'")
                raise self.unknown_field((*where, key), key, allowed, "setting" if "axes" not in where else "axis")
        return value

    def grid(self) -> Grid:
        raw = self.raw
        if not isinstance(raw, dict):
            raise self.fail((), "a grid file must be a YAML mapping with at least 'name' and 'axes' or 'include'")
        for key in raw:
            if key not in TOP_LEVEL_KEYS:
                raise self.unknown_field((key,), key, TOP_LEVEL_KEYS, "top-level key")
        name = raw.get("name")
        if not isinstance(name, str) or not _NAME_PATTERN.match(name):
            raise self.fail(
                ("name",),
                f"name must be a short identifier of letters, digits, '.', '_' or '-' "
                f"(it names the results directory), got {name!r}",
            )
        if not isinstance(raw.get("description", ""), str):
            raise self.fail(("description",), "description must be text")
        settings = self.mapping(raw.get("settings"), ("settings",), "settings")
        axes = self.mapping(raw.get("axes"), ("axes",), "axes")
        for axis, levels in axes.items():
            if not isinstance(levels, list) or not levels:
                raise self.fail(("axes", axis), f"axis '{axis}' needs a non-empty list of levels, e.g. [a, b]")
            for index, level in enumerate(levels):
                if any(_same(level, earlier) for earlier in levels[:index]):
                    raise self.fail(("axes", axis, index), f"level {level!r} is listed twice")
            if axis in settings:
                raise self.fail(("axes", axis), f"'{axis}' is both an axis and a setting: keep one")
        include = self.rows(raw.get("include"), "include")
        exclude = self.rows(raw.get("exclude"), "exclude")
        for index, row in enumerate(exclude):
            for key in row:
                if key not in axes:
                    raise self.fail(
                        ("exclude", index, key),
                        f"exclude may only name axes ({', '.join(axes) or 'none defined'}), got '{key}'",
                    )
        seeds = self.seeds(raw.get("seeds", [0]))

        variants: list[Variant] = []
        origin: dict[str, tuple] = {}
        exclude_hits = [0] * len(exclude)
        if axes:
            for combo in itertools.product(*axes.values()):
                levels = dict(zip(axes, combo))
                hits = [i for i, row in enumerate(exclude) if all(_same(levels[k], v) for k, v in row.items())]
                for i in hits:
                    exclude_hits[i] += 1
                if hits:
                    continue
                sources = {k: ("settings", k) for k in settings}
                sources.update({k: ("axes", k, axes[k].index(v)) for k, v in levels.items()})
                self.add(variants, origin, {**settings, **levels}, sources, seeds, ("axes",))
        for index, row in enumerate(include):
            sources = {k: ("settings", k) for k in settings}
            sources.update({k: ("include", index, k) for k in row})
            self.add(variants, origin, {**settings, **row}, sources, seeds, ("include", index))
        for index, count in enumerate(exclude_hits):
            if count == 0:
                raise self.fail(("exclude", index), "this exclude matches no axis combination: check its values")
        if not variants:
            raise self.fail(
                (),
                "the grid expands to zero variants: add levels under 'axes:' or rows under "
                "'include:', or remove excludes",
            )
        if self.max_runs is not None and len(variants) > self.max_runs:
            raise self.fail(
                (),
                f"the grid expands to {len(variants)} runs, more than the {self.max_runs} allowed "
                f"without confirmation: pass --yes to run it anyway, or trim axes/seeds",
            )
        return Grid(name=name, path=self.path, raw=raw, variants=tuple(variants))

    def rows(self, value: Any, key: str) -> list[dict[str, Any]]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.fail((key,), f"{key} must be a list of mappings, e.g. - {{model: alexnet}}")
        rows = []
        for index, row in enumerate(value):
            if not isinstance(row, dict) or not row:
                raise self.fail((key, index), f"each {key} row must be a non-empty mapping of key: value")
            rows.append(self.mapping(row, (key, index), key))
        return rows

    def seeds(self, value: Any) -> list[int]:
        if isinstance(value, int) and not isinstance(value, bool):
            if not 1 <= value <= 1000:
                raise self.fail(("seeds",), f"seeds as a count must be between 1 and 1000, got {value}")
            return list(range(value))
        if (
            not isinstance(value, list)
            or not value
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in value)
        ):
            raise self.fail(
                ("seeds",),
                "seeds must be a count (e.g. 3) or a non-empty list of non-negative integers (e.g. [0, 1, 2])",
            )
        if len(set(value)) != len(value):
            raise self.fail(("seeds",), "a seed is listed twice")
        return list(value)

    def add(
        self,
        variants: list[Variant],
        origin: dict[str, tuple],
        config: dict[str, Any],
        sources: dict[str, tuple],
        seeds: list[int],
        row_where: tuple,
    ) -> None:
        # Every Variant field is one value; a list or mapping would reach its dataset lookup as an unhashable key.
        for key, value in config.items():
            if isinstance(value, (list, dict)):
                shape = "list" if isinstance(value, list) else "mapping"
                raise self.fail(sources.get(key, row_where), f"{key}: expected a single value, got a {shape}")
        for seed in seeds:
            try:
                variant = Variant(**config, seed=seed)
            except ValidationError as exc:
                error = exc.errors()[0]
                field = error["loc"][0] if error["loc"] else None
                where = sources.get(field, row_where) if field else row_where
                message = error["msg"].removeprefix("Value error, ")
                shown = f" (got {error['input']!r})" if field and not isinstance(error["input"], dict) else ""
                raise self.fail(where, f"{field + ': ' if field else ''}{message}{shown}") from None
            if variant.id in origin:
                first = origin[variant.id]
                raise self.fail(
                    row_where,
                    f"duplicate variant {variant.id}: the same config as "
                    f"{_dotted(first)} (remove one, or change a setting)",
                )
            origin[variant.id] = row_where
            variants.append(variant)


def _same(a: Any, b: Any) -> bool:
    """Equal as YAML values: 1 and 1.0 match, but true never matches 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return a == b


def _printable(text: str) -> str:
    """Keys come from the user's file and may hold control characters: escaped, the error stays one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _dotted(where: tuple) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in where).lstrip(".")
