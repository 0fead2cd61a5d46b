"""nin/variant.py: the Variant's validation messages, its id, config() and frozenness.

Covered elsewhere, not repeated here: the id's prefix and a changed lr (tests/runners/test_spec.py), errors on head,
cccp and nesterov (tests/runners/test_spec.py), ids pinned from before canvas and validation existed
(tests/runners/test_cam_integration.py, tests/runners/test_validation.py), exact parameter counts
(tests/nin/test_models.py).
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys

import pytest
from pydantic import ValidationError

from nin.plateau import PLATEAU_FIELDS
from nin.variant import OMITTED_WHEN_UNSET, VARIANT_FIELDS, Variant
from tests.conftest import REPO

# momentum set, so that nesterov can change on its own.
BASE = dict(momentum=0.9)
# One other valid value per field: the table must name every field, so a field added without a case fails here.
CHANGED = {
    "model": "alexnet", "arch": "cifar", "head": "fc", "cccp": 1, "dropout": False, "gap_relu": False, "width": 0.5,
    "init": "kaiming", "dataset": "mnist", "in_channels": 3, "num_classes": 20, "image_size": 112, "train_size": 100,
    "test_size": 50, "augment": True, "canvas": 64, "validation": 0.1, "epochs": 11, "batch_size": 64,
    "optimizer": "adamw", "lr": 0.05, "momentum": 0.5, "nesterov": True, "weight_decay": 0.0005,
    "schedule": "cosine", "warmup_epochs": 1, "step_size": 5, "gamma": 0.5, "precision": "fp32",
    "channels_last": False, "compile": True, "deterministic": True, "eval_train_every": 1, "seed": 1,
    # The stopping rule's settings exist under schedule plateau only: they are changed against PLATEAU_BASE.
    "monitor": "train_loss", "patience": 5, "min_delta": 0.02, "drops": 1,
}  # fmt: skip
PLATEAU_BASE = dict(BASE, schedule="plateau")


def _error(**settings) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        Variant(**settings)
    return info.value


@pytest.mark.parametrize(
    ("settings", "field", "fix"),
    [
        (dict(colour=1), "colour", "Extra inputs are not permitted"),
        (dict(cccp="2"), "cccp", "0, 1 or 2"),  # strict: a quoted number is not a count
        (dict(width=0), "width", "greater than 0"),
        (dict(epochs=0), "epochs", "greater than or equal to 1"),
        (dict(canvas=0), "canvas", "positive integer"),
        (dict(canvas=20), "canvas", "at least 29"),  # Fashion-MNIST images are 28 px: the canvas must exceed them
        (dict(validation=1.0), "validation", "less than 1"),
    ],
)
def test_field_errors_point_at_the_field_and_say_what_is_allowed(settings: dict, field: str, fix: str) -> None:
    (error,) = _error(**settings).errors()
    assert error["loc"] == (field,)
    assert fix in error["msg"]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (dict(warmup_epochs=10), "warmup_epochs (10) must be smaller than epochs (10)"),
        (dict(model="nin", arch=None), "arch is required for model nin"),
        (dict(gap_relu=None), "gap_relu must be true or false for head gap"),
    ],
)
def test_combination_errors_name_the_fields_in_their_text(settings: dict, message: str) -> None:
    # A check across fields has no single location: its sentence names what to change.
    (error,) = _error(**settings).errors()
    assert error["loc"] == () and message in error["msg"]


@pytest.mark.parametrize("settings", [dict(), dict(arch="cifar"), dict(head="fc"), dict(model="alexnet")])
def test_the_smallest_image_size_the_error_offers_is_the_boundary(settings: dict) -> None:
    (error,) = _error(**settings, image_size=2).errors()
    assert error["msg"].count("image_size 2 is too small") == 1
    smallest = int(re.search(r"the smallest that works is (\d+)", error["msg"]).group(1))
    assert Variant(**settings, image_size=smallest).image_size == smallest  # the offered fix works...
    with pytest.raises(ValidationError, match="too small"):
        Variant(**settings, image_size=smallest - 1)  # ...and is the smallest


def test_the_id_is_the_slug_the_seed_and_a_sha256_of_the_sorted_config() -> None:
    variant = Variant(arch="cifar", head="gap", gap_relu=False, width=0.25, dataset="digits", seed=4)
    assert variant.slug == "cifar-gap-linear-cccp2-do1-w0.25"
    blob = json.dumps(variant.config(), sort_keys=True, separators=(",", ":")).encode()
    assert variant.id == f"cifar-gap-linear-cccp2-do1-w0.25-s4-{hashlib.sha256(blob).hexdigest()[:6]}"
    without_seed = {key: value for key, value in variant.config().items() if key != "seed"}
    blob = json.dumps(without_seed, sort_keys=True, separators=(",", ":")).encode()
    assert variant.group_id == f"cifar-gap-linear-cccp2-do1-w0.25-{hashlib.sha256(blob).hexdigest()[:6]}"


def test_the_id_does_not_depend_on_the_process_or_the_key_order() -> None:
    # Python's str hash is salted per process: an id built from it would change between runs of one grid.
    code = "from nin.variant import Variant; print(Variant(lr=0.05, seed=2).id)"
    ids = {
        subprocess.run([sys.executable, "-c", code], cwd=REPO, env={"PYTHONHASHSEED": salt}, capture_output=True,
                       text=True, check=True).stdout.strip()
        for salt in ("1", "2")
    }  # fmt: skip
    assert ids == {Variant(seed=2, lr=0.05).id}
    reordered = dict(reversed(list(Variant(lr=0.05, seed=2).config().items())))
    assert Variant.model_validate(reordered).id in ids


def test_the_changed_values_table_names_every_field() -> None:
    assert set(CHANGED) == set(VARIANT_FIELDS)


@pytest.mark.parametrize("field", sorted(CHANGED))
def test_a_change_in_any_setting_changes_the_id(field: str) -> None:
    settings = PLATEAU_BASE if field in PLATEAU_FIELDS else BASE
    base = Variant(**settings)
    changed = Variant(**{**settings, field: CHANGED[field]})
    assert getattr(changed, field) != getattr(base, field)
    assert changed.id != base.id
    # The seed is the one setting that leaves the variant (its group) the same.
    assert (changed.group_id == base.group_id) == (field == "seed")


def test_equal_configs_give_equal_ids_however_they_are_spelled() -> None:
    # Defaults filled in by the validator (channels, classes, size) or written out: one variant, one id.
    assert Variant(dataset="cifar10").id == Variant(dataset="cifar10", in_channels=3, num_classes=10,
                                                    image_size=224).id  # fmt: skip
    # Settings that do not apply are dropped, so they cannot split one network into two ids.
    assert Variant(head="fc", gap_relu=False).id == Variant(head="fc").id
    assert Variant(model="alexnet", head="fc", cccp=0, arch="cifar").id == Variant(model="alexnet").id


@pytest.mark.parametrize("key", OMITTED_WHEN_UNSET)
def test_late_settings_at_their_default_leave_the_id_alone(key: str) -> None:
    assert Variant.model_fields[key].default is None  # the guarantee rests on "unset" being None
    assert key not in Variant().config()
    assert Variant(**{key: None}).id == Variant().id


@pytest.mark.parametrize(
    "settings",
    [dict(), dict(model="alexnet", width=0.125), dict(head="fc", cccp=0), dict(canvas=64, validation=0.2, seed=7),
     dict(arch="cifar", dataset="cifar100", lr=0.003, optimizer="adamw", weight_decay=0.05)],
)  # fmt: skip
def test_config_round_trips_through_json_and_model_validate(settings: dict) -> None:
    variant = Variant(**settings)
    again = Variant.model_validate(json.loads(json.dumps(variant.config())))  # as a result.json stores it
    assert again == variant and again.id == variant.id


def test_a_variant_is_frozen_and_hashable() -> None:
    variant = Variant()
    before = variant.id
    with pytest.raises(ValidationError, match="frozen"):
        variant.lr = 0.5
    assert variant.lr == 0.1 and variant.id == before
    assert len({variant, Variant(), Variant(seed=1)}) == 2
