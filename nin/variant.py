"""A `Variant`: one grid cell, frozen and validated, with a stable readable id."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from nin.arches import (
    ARCHES,
    CCCP_CHOICES,
    HEADS,
    INIT_SCHEMES,
    MODELS,
    PRECISIONS,
    default_input_size,
    smallest_input_for,
)
from nin.canvas import NOT_POSITIVE, is_positive_int, too_small
from nin.catalog import DATASETS
from nin.plateau import MONITORS, PLATEAU_DEFAULTS, PLATEAU_FIELDS

# The choices come from nin.arches and nin.catalog, where the variant space is declared once.
ModelName = Literal[MODELS]  # type: ignore[valid-type]
ArchName = Literal[tuple(ARCHES)]  # type: ignore[valid-type]
HeadName = Literal[HEADS]  # type: ignore[valid-type]
CccpCount = Literal[CCCP_CHOICES]  # type: ignore[valid-type]
InitScheme = Literal[INIT_SCHEMES]  # type: ignore[valid-type]
Precision = Literal[PRECISIONS]  # type: ignore[valid-type]
DatasetName = Literal[tuple(DATASETS)]  # type: ignore[valid-type]
MonitorName = Literal[MONITORS]  # type: ignore[valid-type]
NIN_ONLY_FIELDS = ("arch", "head", "cccp")
# Settings added after ids were first published: left out of config() (hence the id) while unset, so that adding
# one does not make every existing run stale.
OMITTED_WHEN_UNSET = ("canvas", "validation", *PLATEAU_FIELDS)
# Settings a grid file sets once, at its top level, for every row: never an axis, a shared setting or an include
# key (a validation split that differed between arms would make their comparison unfair).
GRID_LEVEL_FIELDS = ("validation",)


class Variant(BaseModel):
    """Axes + architecture + data + hyper-parameters + seed. Every field takes part in the id's hash."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    # What is built.
    model: ModelName = "nin"
    arch: ArchName | None = "d2l"
    head: HeadName | None = "gap"
    cccp: CccpCount | None = 2
    dropout: bool = True
    gap_relu: bool | None = True  # ReLU on the class maps before GAP (the seeds' NiN); null without a GAP head
    width: float = Field(1.0, gt=0, le=8)
    init: InitScheme = "xavier"

    # What it learns from. in_channels, num_classes and image_size default to the dataset's and the arch's.
    dataset: DatasetName = "fashion-mnist"
    in_channels: int = Field(None, ge=1, le=64)  # type: ignore[assignment]
    num_classes: int = Field(None, ge=2, le=100_000)  # type: ignore[assignment]
    image_size: int = Field(None, ge=1, le=1024)  # type: ignore[assignment]
    train_size: int | None = Field(None, ge=1)  # use only the first N training images (stratified by the loader)
    test_size: int | None = Field(None, ge=1)
    augment: bool = False  # random crop (pad 4 at 32 px, scaled with size) + horizontal flip
    # Translated images: each pasted at its native size at a fixed random spot on a canvas×canvas black square
    # (before the resize to image_size); the run then measures its class maps' localisation (nin.cam).
    canvas: int | None = None
    # The fraction of the training split held out, stratified, as a validation set (nin.data.with_validation): the
    # same images for every variant and seed; train_size then subsets what remains.
    validation: float | None = Field(None, gt=0, lt=1)

    # How it learns. Under schedule "plateau", `epochs` is the cap: the run stops earlier when the rule says so.
    epochs: int = Field(10, ge=1, le=10_000)
    batch_size: int = Field(128, ge=1, le=65_536)
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = Field(0.1, gt=0, le=10)
    momentum: float = Field(0.0, ge=0, lt=1)
    nesterov: bool = False
    weight_decay: float = Field(0.0, ge=0, le=1)
    schedule: Literal["constant", "cosine", "step", "plateau"] = "constant"
    warmup_epochs: int = Field(0, ge=0)
    step_size: int = Field(10, ge=1)  # epochs between lr drops under schedule "step"
    gamma: float = Field(0.1, gt=0, le=1)  # lr factor at each drop under schedule "step" or "plateau"
    # Schedule "plateau" only (nin.plateau, the NiN paper's rule): the metric it watches, the epochs without a new
    # best that make a plateau, the improvement that counts as one, and the drops before a plateau stops the run.
    # Null under other schedules; filled with nin.plateau.PLATEAU_DEFAULTS under "plateau".
    monitor: MonitorName | None = None
    patience: int | None = Field(None, ge=1, le=1000)
    min_delta: float | None = Field(None, ge=0, le=1)
    drops: int | None = Field(None, ge=0, le=10)
    precision: Precision = "auto"
    channels_last: bool = True
    compile: bool = False
    deterministic: bool = False
    eval_train_every: int = Field(0, ge=0)  # 0: the eval-mode pass over the training set runs at the end only
    seed: int = Field(0, ge=0, le=2**31 - 1)

    @model_validator(mode="before")
    @classmethod
    def _fill_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if data.get("model") == "alexnet":
            # The AlexNet reference has no NiN axes: a grid's shared head/cccp/arch settings do not apply to it.
            for key in NIN_ONLY_FIELDS:
                data[key] = None
        if data.get("head", "gap") != "gap":
            data["gap_relu"] = None  # no GAP block: the setting does not apply (one config, one id)
        info = DATASETS.get(data.get("dataset", "fashion-mnist"))
        if info is not None:
            data.setdefault("in_channels", info.channels)
            data.setdefault("num_classes", info.classes)
        if data.get("schedule") == "plateau":
            for key, value in PLATEAU_DEFAULTS.items():
                if data.get(key) is None:
                    data[key] = value
        model, arch = data.get("model", "nin"), data.get("arch", "d2l")
        if data.get("image_size") is None and (model == "alexnet" or arch in ARCHES):
            data["image_size"] = default_input_size(model, arch)
        return data

    @field_validator("canvas", mode="before")
    @classmethod
    def _canvas_is_a_size(cls, value: Any) -> Any:
        if value is not None and not is_positive_int(value):
            raise ValueError(NOT_POSITIVE)
        return value

    @field_validator("canvas")
    @classmethod
    def _canvas_holds_the_images(cls, value: int | None, info: ValidationInfo) -> int | None:
        # A field check (dataset is validated before canvas), so that a grid's error points at the canvas line.
        info_ = DATASETS.get(info.data.get("dataset", ""))
        if value is not None and info_ is not None and value <= info_.native_size:
            raise ValueError(too_small(value, info_.native_size))
        return value

    @field_validator(*PLATEAU_FIELDS)
    @classmethod
    def _plateau_only(cls, value: Any, info: ValidationInfo) -> Any:
        # Field checks (schedule and validation are validated before these), so that an error points at its line.
        if value is None:
            return value
        if info.data.get("schedule") != "plateau":
            name = info.field_name
            raise ValueError(f"{name} applies to schedule plateau only (set schedule: plateau, or remove {name})")
        if info.field_name == "monitor" and value.startswith("val_") and info.data.get("validation") is None:
            raise ValueError(
                f"monitor {value} needs a validation split (set validation: 0.1 at the grid's top level, or "
                f"monitor {value.replace('val_', 'train_')})"
            )
        return value

    @model_validator(mode="after")
    def _check_combination(self) -> Variant:
        if self.model == "nin":
            for key in NIN_ONLY_FIELDS:
                if getattr(self, key) is None:
                    raise ValueError(f"{key} is required for model nin")
            if self.head == "gap" and self.gap_relu is None:
                raise ValueError("gap_relu must be true or false for head gap")
        smallest = smallest_input_for(self.model, self.arch, self.head)
        if self.image_size < smallest:
            what = "the AlexNet reference" if self.model == "alexnet" else f"arch {self.arch} with head {self.head}"
            raise ValueError(
                f"image_size {self.image_size} is too small for {what}: the smallest that works is {smallest}"
            )
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov needs momentum > 0 (set momentum, e.g. 0.9, or nesterov: false)")
        if self.warmup_epochs >= self.epochs and self.warmup_epochs > 0:
            raise ValueError(f"warmup_epochs ({self.warmup_epochs}) must be smaller than epochs ({self.epochs})")
        return self

    # ---- identity -------------------------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        config = self.model_dump(mode="json")
        for key in OMITTED_WHEN_UNSET:
            if config[key] is None:
                del config[key]
        return config

    @property
    def slug(self) -> str:
        """Readable part of the id, without the seed."""
        if self.model == "alexnet":
            parts = ["alexnet", f"do{int(self.dropout)}"]
        else:
            parts = [str(self.arch), str(self.head), f"cccp{self.cccp}", f"do{int(self.dropout)}"]
            if self.gap_relu is False:
                parts.insert(2, "linear")  # class maps without ReLU
        if self.width != 1.0:
            parts.append(f"w{self.width:g}")
        return "-".join(parts)

    @property
    def id(self) -> str:
        """e.g. d2l-gap-cccp2-do1-s0-3f9a1c: readable slug, seed, and a short hash of the full config."""
        return f"{self.slug}-s{self.seed}-{_short_hash(self.config())}"

    @property
    def group_id(self) -> str:
        """The same variant across seeds: the id without the seed, hashed over everything but the seed."""
        config = self.config()
        config.pop("seed")
        return f"{self.slug}-{_short_hash(config)}"

    def arm_id(self, tuned: tuple[str, ...]) -> str:
        """The arm a tuned grid picks a value for: the id without the seed and without the `tuned` settings, so that
        the runs of one arm at every candidate value and seed share it."""
        config = self.config()
        for key in ("seed", *tuned):
            config.pop(key)
        return f"{self.slug}-{_short_hash(config)}"

    @property
    def timm_name(self) -> str:
        return "alexnet_d2l" if self.model == "alexnet" else f"nin_{self.arch}"

    def model_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `timm.create_model(self.timm_name, **kwargs)` and nin.models' builders."""
        kwargs: dict[str, Any] = dict(
            dropout=self.dropout,
            width=self.width,
            in_chans=self.in_channels,
            num_classes=self.num_classes,
            image_size=self.image_size,
            init=self.init,
        )
        if self.model == "nin":
            kwargs.update(head=self.head, cccp=self.cccp)
            if self.head == "gap":
                kwargs["gap_relu"] = self.gap_relu
        return kwargs

    def architecture_key(self) -> tuple:
        """Everything that decides the network's shape (for caching params/MACs across seeds and lrs)."""
        return (self.timm_name, tuple(sorted(self.model_kwargs().items())))


def _short_hash(config: dict[str, Any]) -> str:
    blob = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:6]


VARIANT_FIELDS: tuple[str, ...] = tuple(Variant.model_fields)
