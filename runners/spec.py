"""Grid files: YAML → validated, expanded list of Variants, or one SpecError line naming file, line and problem.

name: paper                # names OUT/<name>/
settings: {arch: d2l, dataset: fashion-mnist, epochs: 10}   # shared by every variant
axes: {head: [gap, fc, alexnet], cccp: [0, 1, 2]}           # cartesian product, in this order
include: [{model: alexnet, lr: 0.01}]                       # extra rows: settings + these keys
exclude: [{head: alexnet, cccp: 0}]                         # drop axis combinations matching all keys
seeds: [0, 1, 2]                                            # or a count: 3
validation: 0.1                                             # hold out 10% of the training split (every row)
tune: {lr: auto, seeds: [100, 101, 102], pick: val_acc}     # each arm's lr picked on validation (runners.tuning)

Command-line overrides (`--set KEY=VALUE`, `--epochs N`) replace a shared setting, `seeds` or `validation` for every
row. The
grid's size is known from its axes, excludes, include rows and seeds, and is checked before any Variant is built.
"""

from __future__ import annotations

import difflib
import itertools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from judge.verdicts import parse_margins
from nin.variant import GRID_LEVEL_FIELDS, Variant
from runners import tuning
from runners.grid_yaml import GridLoader, SpecError, printable
from runners.overrides import SETTING_KEYS, Override
from runners.tuning import Tune

TOP_LEVEL_KEYS = (
    "name", "description", "settings", "axes", "include", "exclude", "seeds", *GRID_LEVEL_FIELDS, "tune", "margins",
)  # fmt: skip
DEFAULT_MAX_RUNS = 500  # more needs --yes
MAX_RUNS = 100_000  # more is refused even with --yes: a typo (a seeds list pasted 1,000 times) must not eat the machine
_EXACT_COUNT_LIMIT = 200_000  # excluded-axis combinations counted one by one up to here (well under a second)
_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class Grid:
    """`variants` are the runs the report reads. A grid with `tune:` has none until its arms are picked
    (runners.tuning.picked_grid fills them in); until then `arms` holds one row per arm, at its first candidate
    value and the first grid seed, from which the tuning and stage-2 runs are built."""

    name: str
    path: Path | None
    raw: dict[str, Any]
    variants: tuple[Variant, ...]
    tune: Tune | None = None
    arms: tuple[Variant, ...] = ()
    seeds: tuple[int, ...] = ()

    def resolved(self) -> dict[str, Any]:
        """The grid as resolved: the file's keys plus every variant id it expands to (written as spec.yaml)."""
        return {**self.raw, "variants": [v.id for v in self.variants]}

    def planned(self) -> tuple[Variant, ...]:
        """One variant per row the grid trains, for what does not depend on the tuned value (datasets to decode,
        params and MACs, time estimates): the variants, or a tuned grid's arms on each grid seed."""
        if self.tune is None:
            return self.variants
        return tuple(arm.model_copy(update={"seed": seed}) for arm in self.arms for seed in self.seeds)


def load_grid(path: str | Path, max_runs: int | None = DEFAULT_MAX_RUNS, overrides: Sequence[Override] = ()) -> Grid:
    """`max_runs` None is --yes: any size up to MAX_RUNS."""
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
    overrides: Sequence[Override] = (),
) -> Grid:
    """`overrides` (from `parse_overrides`) replace the file's shared settings, or its seeds, for every row."""
    # One parse gives both the values and the nodes whose marks give an error its line.
    loader = GridLoader(text)
    try:
        root = loader.get_single_node()
        raw = loader.construct_document(root) if root is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(f"{where}: invalid YAML: {problem}") from None
    finally:
        loader.dispose()
    return _Expander(raw, root, source, max_runs, path, tuple(overrides)).grid()


class _Expander:
    def __init__(
        self,
        raw: Any,
        root: yaml.Node | None,
        source: str,
        max_runs: int | None,
        path: Path | None,
        overrides: tuple[Override, ...],
    ):
        self.raw, self.root, self.source, self.max_runs, self.path = raw, root, source, max_runs, path
        self.overrides = overrides
        self.stripped: tuple[Override, ...] = ()  # overrides that replaced a key of an include row

    # ---- error reporting ------------------------------------------------------------------------------------
    def fail(self, where: tuple, message: str) -> SpecError:
        """`where` is a path in the file (its line is looked up), (Override,) for a value from the command line,
        or () for the grid as a whole."""
        if where and isinstance(where[0], Override):
            return SpecError(printable(f"{self.source}: {where[0].flag}: {message}"))
        dotted = _dotted(where)
        line = self._line(where) if where else None
        prefix = f"{self.source}:{line}" if line else self.source
        return SpecError(printable(f"{prefix}: {dotted + ': ' if dotted else ''}{message}"))

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
            if key not in SETTING_KEYS:
                if key == "seed":
                    raise self.fail((*where, key), "set seeds with the top-level 'seeds:' list, not 'seed'")
                if key in GRID_LEVEL_FIELDS:
                    raise self.fail(
                        (*where, key),
                        f"'{key}' is a top-level key of the grid, one value for every row (e.g. {key}: 0.1), "
                        f"not a setting, axis or include key",
                    )
                raise self.unknown_field((*where, key), key, SETTING_KEYS, "setting" if "axes" not in where else "axis")
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
        if "margins" in raw:  # read by the report only: no variant id depends on it
            try:
                parse_margins(raw["margins"])
            except ValueError as error:
                raise self.fail(("margins",), str(error)) from None
        settings = self.mapping(raw.get("settings"), ("settings",), "settings")
        axes = self.mapping(raw.get("axes"), ("axes",), "axes")
        for override in self.overrides:
            if override.key in axes:
                levels = ", ".join(map(str, axes[override.key])) if isinstance(axes[override.key], list) else ""
                raise self.fail(
                    (override,),
                    f"'{override.key}' is an axis of this grid{f' (levels {levels})' if levels else ''}: an override "
                    f"replaces a shared setting; edit the axis in the grid file instead",
                )
        for axis, levels in axes.items():
            if not isinstance(levels, list) or not levels:
                raise self.fail(("axes", axis), f"axis '{axis}' needs a non-empty list of levels, e.g. [a, b]")
            twice = _first_repeat(levels)
            if twice is not None:
                raise self.fail(("axes", axis, twice), f"level {levels[twice]!r} is listed twice")
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
        sources: dict[str, tuple] = {k: ("settings", k) for k in settings}
        seeds_value, seeds_where = raw.get("seeds", [0]), ("seeds",)
        # Grid-level fields reach every row's Variant (which validates them) from the top level only.
        grid_level = {key: raw[key] for key in GRID_LEVEL_FIELDS if raw.get(key) is not None}
        sources.update({key: (key,) for key in grid_level})
        for override in self.overrides:
            if override.key == "seeds":
                seeds_value, seeds_where = override.value, (override,)
            elif override.key in GRID_LEVEL_FIELDS:
                grid_level[override.key] = override.value
                sources[override.key] = (override,)
            else:
                settings = {**settings, override.key: override.value}
                sources[override.key] = (override,)
        # An override replaces the key in include rows too: the command line decides it for every row.
        replaced = {o.key for o in self.overrides}
        self.stripped = tuple(o for o in self.overrides if any(o.key in row for row in include))
        include = [{k: v for k, v in row.items() if k not in replaced} for row in include]
        seeds = self.seeds(seeds_value, seeds_where)
        tune = tuning.parse_block(raw.get("tune"), settings, axes, include, seeds, seeds_where, grid_level,
                                  fail=self.fail, unknown_field=self.unknown_field)
        tuning_runs = len(tune.candidates) * len(tune.seeds) if tune else 0  # per row, before any widening
        self.check_size(axes, exclude, len(include), len(seeds) + tuning_runs)

        variants: list[Variant] = []
        origin: dict[str, tuple[tuple, Variant]] = {}
        exclude_hits = [0] * len(exclude)
        if axes:
            # Level indices, not levels: the file line of a bad level comes without searching its axis.
            for indices in itertools.product(*(range(len(levels)) for levels in axes.values())):
                levels = {k: axes[k][i] for k, i in zip(axes, indices)}
                hits = [i for i, row in enumerate(exclude) if all(_same(levels[k], v) for k, v in row.items())]
                for i in hits:
                    exclude_hits[i] += 1
                if hits:
                    continue
                row_sources = {**sources, **{k: ("axes", k, i) for k, i in zip(axes, indices)}}
                config = {**settings, **levels, **grid_level}
                self.add_row(variants, origin, config, row_sources, seeds, ("axes",), tune)
        for index, row in enumerate(include):
            row_sources = {**sources, **{k: ("include", index, k) for k in row}}
            self.add_row(
                variants, origin, {**settings, **row, **grid_level}, row_sources, seeds, ("include", index), tune
            )
        for index, count in enumerate(exclude_hits):
            if count == 0:
                raise self.fail(("exclude", index), "this exclude matches no axis combination: check its values")
        if not variants:
            raise self.fail(
                (),
                "the grid expands to zero variants: add levels under 'axes:' or rows under "
                "'include:', or remove excludes",
            )
        if self.overrides:  # spec.yaml records the grid as run
            raw = {**raw, "settings": settings, "seeds": seeds_value}
            raw.update({o.key: o.value for o in self.overrides if o.key in GRID_LEVEL_FIELDS})
            if include:
                raw["include"] = include
        if tune is None:
            return Grid(name=name, path=self.path, raw=raw, variants=tuple(variants), seeds=tuple(seeds))
        # One template per arm (add_row built one per grid seed); the tuned runs come from runners.tuning.
        arms = tuple(variants[:: len(seeds)])
        return Grid(name=name, path=self.path, raw=raw, variants=(), tune=tune, arms=arms, seeds=tuple(seeds))

    def add_row(
        self,
        variants: list[Variant],
        origin: dict[str, tuple[tuple, Variant]],
        config: dict[str, Any],
        sources: dict[str, tuple],
        seeds: list[int],
        row_where: tuple,
        tune: Tune | None,
    ) -> None:
        """One row of the grid on every seed. A tuned row is validated on the grid's seeds at its first candidate
        (its duplicates found as for any row) and at every candidate on the tuning seeds, each value's error pointing
        at its place in the tune block."""
        if tune is None:
            self.add(variants, origin, config, sources, seeds, row_where)
            return
        where = sources.get(tune.key) if tune.base is not None else None
        for index, value in enumerate(tune.candidates):
            value_sources = {**sources, tune.key: where or ("tune", tune.key, index)}
            row = {**config, tune.key: value}
            if index == 0:
                self.add(variants, origin, row, value_sources, seeds, row_where)
            self.add([], {}, row, value_sources, list(tune.seeds), row_where)

    def check_size(self, axes: dict[str, list], exclude: list[dict[str, Any]], include_rows: int, seeds: int) -> None:
        """Refuse a grid too large to run from its shape alone, before a single Variant is built."""
        combos, exact = _count_combos(axes, exclude)
        runs = (combos + include_rows) * seeds
        size = f"the grid expands to {'' if exact else 'up to '}{runs:,} runs"
        ceiling = f"more than the {MAX_RUNS:,} any grid may have, even with --yes"
        if self.max_runs is not None and runs > self.max_runs:
            fix = (
                f" ({ceiling}): trim axes/seeds"
                if runs > MAX_RUNS
                else ": pass --yes to run it anyway, or trim axes/seeds"
            )
            raise self.fail((), f"{size}, more than the {self.max_runs} allowed without confirmation{fix}")
        if runs > MAX_RUNS:
            raise self.fail((), f"{size}, {ceiling}: trim axes/seeds, or split it into several grids")

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

    def seeds(self, value: Any, where: tuple) -> list[int]:
        if isinstance(value, int) and not isinstance(value, bool):
            if not 1 <= value <= 1000:
                raise self.fail(where, f"seeds as a count must be between 1 and 1000, got {value}")
            return list(range(value))
        if (
            not isinstance(value, list)
            or not value
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in value)
        ):
            raise self.fail(
                where,
                "seeds must be a count (e.g. 3) or a non-empty list of non-negative integers (e.g. [0, 1, 2])",
            )
        if len(set(value)) != len(value):
            raise self.fail(where, "a seed is listed twice")
        return list(value)

    def add(
        self,
        variants: list[Variant],
        origin: dict[str, tuple[tuple, Variant]],
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
                message = error["msg"].removeprefix("Value error, ")
                where = sources.get(field, row_where) if field else self.combination_source(message, sources, row_where)
                shown = f" (got {error['input']!r})" if field and not isinstance(error["input"], dict) else ""
                raise self.fail(where, f"{field + ': ' if field else ''}{message}{shown}") from None
            if variant.id in origin:
                first_where, first = origin[variant.id]
                if first == variant:
                    applied = (
                        f" once {', '.join(o.flag for o in self.stripped)} applies to every row"
                        if self.stripped
                        else ""
                    )
                    raise self.fail(
                        row_where,
                        f"duplicate variant {variant.id}: the same config as "
                        f"{_dotted(first_where)}{applied} (remove one, or change a setting)",
                    )
                raise self.fail(row_where, _collision(variant.id, first_where, first, variant))
            origin[variant.id] = (row_where, variant)
            variants.append(variant)

    def combination_source(self, message: str, sources: dict[str, tuple], row_where: tuple) -> tuple:
        """Where a rule over several fields (warmup_epochs < epochs, image_size too small) broke: the command-line
        override the message names, if any (the user's latest word), else the row."""
        for key, where in sources.items():
            if isinstance(where[0], Override) and re.search(rf"\b{key}\b", message):
                return where
        return row_where


def _count_combos(axes: dict[str, list], exclude: list[dict[str, Any]]) -> tuple[int, bool]:
    """Axis combinations left after the excludes, without building one: (count, exact).

    Only the axes an exclude names are walked; the others multiply. Past _EXACT_COUNT_LIMIT such combinations the
    count is the product, an upper bound (excludes only shrink a grid)."""
    if not axes:
        return 0, True
    named = [axis for axis in axes if any(axis in row for row in exclude)]
    free = math.prod(len(levels) for axis, levels in axes.items() if axis not in named)
    walked = math.prod(len(axes[axis]) for axis in named)
    if walked > _EXACT_COUNT_LIMIT:
        return free * walked, False
    kept = 0
    for combo in itertools.product(*(axes[axis] for axis in named)):
        levels = dict(zip(named, combo))
        kept += not any(all(_same(levels[k], v) for k, v in row.items()) for row in exclude)
    return free * kept, True


def _collision(variant_id: str, first_where: tuple, first: Variant, second: Variant) -> str:
    """Two different configs whose 6-hex hashes coincide: name both by the settings that tell them apart."""
    a, b = first.config(), second.config()
    differ = [k for k in a if a[k] != b[k]]
    shown_a = ", ".join(f"{k}={a[k]!r}" for k in differ)
    shown_b = ", ".join(f"{k}={b[k]!r}" for k in differ)
    return (
        f"id collision: {variant_id} is the id of two different configs, {_dotted(first_where)} ({shown_a}) and "
        f"this row ({shown_b}); their short hashes coincide by chance: change one of these values slightly, or run "
        f"them in separate grids"
    )


def _first_repeat(levels: list[Any]) -> int | None:
    """Index of the first level equal (as _same has it) to an earlier one, in one pass over hashable levels."""
    seen: set[Any] = set()
    for index, level in enumerate(levels):
        try:
            key = (type(level) is bool, level)  # 1 and 1.0 match, true and 1 do not
            if key in seen:
                return index
            seen.add(key)
        except TypeError:  # a list or mapping as a level (refused later): compare it the slow way
            if any(_same(level, earlier) for earlier in levels[:index]):
                return index
    return None


def _same(a: Any, b: Any) -> bool:
    """Equal as YAML values: 1 and 1.0 match, but true never matches 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return a == b


def _dotted(where: tuple) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in where).lstrip(".")
