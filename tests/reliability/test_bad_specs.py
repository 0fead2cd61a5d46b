"""Bad grid files and bad flags: exit 2, one stderr line naming the problem, no traceback, nothing written.

Most of the table goes through runners.cli.main in-process (the same code the console script runs, without ~3 s of
imports per case); a handful go through the real subprocess. A property test throws random YAML documents and
random mutations of a valid grid at `nin-ablate run`.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nin.errors import InputError
from runners.cli import main
from runners.spec import load_grid
from tests.conftest import run_cli
from tests.reliability.helpers import QUIET, SETTINGS, assert_nothing_written, assert_one_clear_line

HEAD = f"name: bad\nsettings: {SETTINGS}\n"

# (case id, grid file text, words the one error line must contain)
BAD_SPECS: list[tuple[str, str, tuple[str, ...]]] = [
    # syntax and shape
    ("yaml-unclosed-flow", "name: bad\naxes: {head: [gap, fc}\n", ("invalid YAML", ":2:")),
    ("yaml-bad-indent", "name: bad\naxes:\n  head: [gap]\n cccp: [0]\n", ("invalid YAML",)),
    ("yaml-tab", "name: bad\naxes:\n\thead: [gap]\n", ("invalid YAML",)),
    ("empty-file", "", ("YAML mapping",)),
    ("comment-only", "# nothing here\n", ("YAML mapping",)),
    ("top-level-list", "- name: bad\n- axes: {}\n", ("YAML mapping",)),
    ("top-level-scalar", "just words\n", ("YAML mapping",)),
    ("two-documents", "name: a\n---\nname: b\n", ("invalid YAML",)),
    # top-level keys
    ("unknown-top-level-key", HEAD + "axis: {head: [gap]}\n", ("unknown top-level key 'axis'", "axes")),
    ("missing-name", f"settings: {SETTINGS}\naxes: {{head: [gap]}}\n", ("name",)),
    ("name-with-slash", "name: ../escape\naxes: {head: [gap]}\n", ("name", "'../escape'")),
    ("name-not-text", "name: 42\naxes: {head: [gap]}\n", ("name", "42")),
    ("description-not-text", HEAD + "description: [a, b]\naxes: {head: [gap]}\n", ("description",)),
    ("margins-not-mapping", HEAD + "margins: 0.01\naxes: {head: [gap]}\n", ("margins", "mapping")),
    ("margin-unknown-metric", HEAD + "margins: {test_loss: 0.1}\naxes: {head: [gap]}\n", ("test_loss", "test_acc")),
    ("margin-zero", HEAD + "margins: {test_acc: 0}\naxes: {head: [gap]}\n", ("margin test_acc", "between 0 and 1")),
    ("margin-points-not-fraction", HEAD + "margins: {gap_acc: 2}\naxes: {head: [gap]}\n", ("gap_acc", "fraction")),
    ("settings-not-mapping", "name: bad\nsettings: [arch, cifar]\naxes: {head: [gap]}\n", ("settings", "mapping")),
    # settings and axes
    ("unknown-setting", HEAD.replace("epochs: 3", "epochs: 3, lrate: 0.1") + "axes: {head: [gap]}\n", ("lrate",)),
    ("seed-as-setting", HEAD.replace("epochs: 3", "epochs: 3, seed: 1") + "axes: {head: [gap]}\n", ("seeds",)),
    ("unknown-axis", HEAD + "axes: {heads: [gap, fc]}\n", ("unknown axis 'heads'", "did you mean 'head'")),
    ("axes-not-mapping", HEAD + "axes: [gap, fc]\n", ("axes", "mapping")),
    ("empty-axis", HEAD + "axes: {head: []}\n", ("head", "non-empty list")),
    ("axis-not-list", HEAD + "axes: {head: gap}\n", ("head", "non-empty list")),
    ("duplicate-level", HEAD + "axes: {head: [gap, gap]}\n", ("listed twice",)),
    ("axis-and-setting", HEAD + "axes: {epochs: [1, 2]}\n", ("both an axis and a setting",)),
    # values
    ("unknown-dataset", HEAD.replace("synthetic", "imagenet") + "axes: {head: [gap]}\n", ("dataset", "imagenet")),
    ("unknown-arch", HEAD.replace("arch: cifar", "arch: resnet") + "axes: {head: [gap]}\n", ("arch", "resnet")),
    ("unknown-head", HEAD + "axes: {head: [gap, mlp]}\n", ("head", "mlp")),
    ("cccp-out-of-range", HEAD + "axes: {cccp: [2, 3]}\n", ("cccp", "3")),
    ("zero-epochs", HEAD.replace("epochs: 3", "epochs: 0") + "axes: {head: [gap]}\n", ("epochs", "0")),
    ("negative-epochs", HEAD.replace("epochs: 3", "epochs: -2") + "axes: {head: [gap]}\n", ("epochs", "-2")),
    ("zero-batch", HEAD.replace("batch_size: 50", "batch_size: 0") + "axes: {head: [gap]}\n", ("batch_size",)),
    ("zero-lr", HEAD.replace("lr: 0.05", "lr: 0") + "axes: {head: [gap]}\n", ("lr", "0")),
    ("negative-lr", HEAD.replace("lr: 0.05", "lr: -0.05") + "axes: {head: [gap]}\n", ("lr", "-0.05")),
    ("negative-level", HEAD + "axes: {weight_decay: [0.0, -0.1]}\n", ("weight_decay", "-0.1")),
    ("epochs-as-text", HEAD.replace("epochs: 3", "epochs: three") + "axes: {head: [gap]}\n", ("epochs", "three")),
    ("dropout-as-text", HEAD + "axes: {dropout: ['yes', 'no']}\n", ("dropout", "yes")),
    ("lr-as-list", HEAD.replace("lr: 0.05", "lr: [0.1]") + "axes: {head: [gap]}\n", ("lr", "single value")),
    ("dataset-as-list", HEAD.replace("synthetic", "[synthetic]") + "axes: {head: [gap]}\n", ("dataset", "single")),
    ("arch-as-mapping", HEAD.replace("arch: cifar", "arch: {a: 1}") + "axes: {head: [gap]}\n", ("arch", "mapping")),
    ("zero-width", HEAD.replace("width: 0.125", "width: 0") + "axes: {head: [gap]}\n", ("width",)),
    ("image-too-small", HEAD.replace("image_size: 16", "image_size: 2") + "axes: {head: [gap]}\n", ("image_size",)),
    ("nesterov-no-momentum", HEAD.replace("momentum: 0.9", "nesterov: true") + "axes: {head: [gap]}\n", ("nesterov",)),
    (
        "warmup-too-long",
        HEAD.replace("epochs: 3", "epochs: 3, warmup_epochs: 3") + "axes: {head: [gap]}\n",
        ("warmup_epochs",),
    ),
    # seeds
    ("seeds-zero", HEAD + "axes: {head: [gap]}\nseeds: 0\n", ("seeds",)),
    ("seeds-negative", HEAD + "axes: {head: [gap]}\nseeds: [0, -1]\n", ("seeds",)),
    ("seeds-twice", HEAD + "axes: {head: [gap]}\nseeds: [1, 1]\n", ("listed twice",)),
    ("seeds-text", HEAD + "axes: {head: [gap]}\nseeds: many\n", ("seeds",)),
    # include / exclude
    ("include-not-list", HEAD + "include: {head: gap}\n", ("include", "list")),
    ("include-empty-row", HEAD + "include: [{}]\n", ("include", "non-empty")),
    ("include-unknown-setting", HEAD + "axes: {head: [gap]}\ninclude: [{colour: red}]\n", ("colour",)),
    ("include-duplicates-axis-row", HEAD + "axes: {head: [gap, fc]}\ninclude: [{head: fc}]\n", ("duplicate variant",)),
    ("include-duplicates-include", HEAD + "include: [{head: fc}, {head: fc}]\n", ("duplicate variant",)),
    ("exclude-unknown-axis", HEAD + "axes: {head: [gap, fc]}\nexclude: [{cccp: 1}]\n", ("exclude", "cccp")),
    ("exclude-matches-nothing", HEAD + "axes: {head: [gap, fc]}\nexclude: [{head: alexnet}]\n", ("matches no",)),
    ("zero-variants-excluded", HEAD + "axes: {head: [gap]}\nexclude: [{head: gap}]\n", ("zero variants",)),
    ("zero-variants-nothing", HEAD, ("zero variants",)),
    ("huge-grid", HEAD + "axes: {weight_decay: [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]}\nseeds: 100\n", ("600 runs", "--yes")),
]


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("text,words", [pytest.param(t, w, id=i) for i, t, w in BAD_SPECS])
def test_bad_grid_file_is_one_line_and_exit_2(tmp_path, capsys, text, words):
    spec = tmp_path / "grid.yaml"
    spec.write_text(text)
    out = tmp_path / "out"
    code, stdout, stderr = _run(["run", str(spec), "--out", str(out), *QUIET], capsys)
    assert code == 2
    line = assert_one_clear_line(stderr, *words)
    assert str(spec) in line  # names the file
    assert stdout == ""
    assert_nothing_written(out)


def _valid_grid(tmp_path: Path, axes: str = "axes: {head: [gap]}") -> Path:
    spec = tmp_path / "grid.yaml"
    spec.write_text(HEAD.replace("epochs: 3, ", "") + axes + "\n")
    return spec


# Files that are not grid files, and flags that are wrong: (case id, how to make the argv, words).
def _directory(tmp_path: Path) -> list[str]:
    (tmp_path / "adir").mkdir()
    return ["run", str(tmp_path / "adir")]


def _not_utf8(tmp_path: Path) -> list[str]:
    spec = tmp_path / "latin1.yaml"
    spec.write_bytes("name: caf\xe9\naxes: {head: [gap]}\n".encode("latin-1"))
    return ["run", str(spec)]


def _binary(tmp_path: Path) -> list[str]:
    spec = tmp_path / "grid.yaml"
    spec.write_bytes(bytes(range(256)))
    return ["run", str(spec)]


BAD_INVOCATIONS = [
    ("spec-is-a-directory", _directory, ("adir", "not found")),
    ("spec-not-utf8", _not_utf8, ("latin1.yaml", "cannot read")),
    ("spec-binary", _binary, ("grid.yaml",)),
    ("spec-missing", lambda p: ["run", str(p / "nope.yaml")], ("nope.yaml", "not found")),
    ("epochs-flag-zero", lambda p: ["run", str(_valid_grid(p)), "--epochs", "0"], ("--epochs", "positive")),
    (
        "epochs-flag-overrides-axis",
        lambda p: ["run", str(_valid_grid(p, "axes: {epochs: [1, 2]}")), "--epochs", "2"],
        ("--epochs", "axis"),
    ),
    ("device-unknown", lambda p: ["run", str(_valid_grid(p)), "--device", "tpu"], ("tpu",)),
    ("device-empty", lambda p: ["run", str(_valid_grid(p)), "--device", ","], ("--device",)),
    ("executor-unknown", lambda p: ["run", str(_valid_grid(p)), "--executor", "pbs"], ("pbs",)),
    (
        "slurm-setting-without-slurm",
        lambda p: ["run", str(_valid_grid(p)), "--slurm", "timeout_min=5"],
        ("--slurm", "--executor slurm"),
    ),
    (
        "slurm-config-missing",
        lambda p: ["run", str(_valid_grid(p)), "--executor", "slurm", "--slurm-config", str(_valid_grid(p))[:-5]],
        ("--slurm-config", "FileNotFoundError"),
    ),
    ("wandb-unknown", lambda p: ["run", str(_valid_grid(p)), "--wandb", "maybe"], ("maybe",)),
    ("unknown-flag", lambda p: ["run", str(_valid_grid(p)), "--epocs", "2"], ("--epocs",)),
    ("no-command", lambda p: [], ("command",)),
    ("variant-unknown", lambda p: ["train", str(_valid_grid(p)), "--variant", "nosuch"], ("nosuch", "nin-ablate list")),
]


@pytest.mark.parametrize("make,words", [pytest.param(m, w, id=i) for i, m, w in BAD_INVOCATIONS])
def test_bad_file_or_flag_is_one_line_and_exit_2(tmp_path, capsys, make, words):
    out = tmp_path / "out"
    argv = make(tmp_path)
    if argv and "--out" not in argv:
        argv += ["--out", str(out)]
    code, stdout, stderr = _run(argv, capsys)
    assert code == 2
    assert_one_clear_line(stderr, *words)
    assert_nothing_written(out)


@pytest.mark.parametrize("case", ["yaml-unclosed-flow", "include-duplicates-axis-row"])
def test_bad_grid_through_the_real_console_entry_point(tmp_path, case):
    text, words = next((t, w) for i, t, w in BAD_SPECS if i == case)
    spec = tmp_path / "grid.yaml"
    spec.write_text(text)
    out = tmp_path / "out"
    proc = run_cli("run", str(spec), "--out", str(out), *QUIET)
    assert proc.returncode == 2
    assert_one_clear_line(proc.stderr, *words)
    assert_nothing_written(out)


# ---- property: random documents and random mutations of a valid grid ---------------------------------------------

VALID = yaml.safe_load(
    HEAD + "axes: {head: [gap, fc], cccp: [1, 2]}\ninclude: [{head: gap, cccp: 0}]\n"
    "exclude: [{head: fc, cccp: 1}]\nseeds: [0, 1]\n"
)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(10**12), 10**12)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=10)
    | st.sampled_from(["gap", "fc", "alexnet", "cifar", "d2l", "synthetic", "mnist", "sgd", "cosine"])
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)
KEYS = st.sampled_from(sorted({*VALID, *VALID["settings"], "seed", "head", "cccp", "dropout"})) | st.text(max_size=8)


def _paths(node, prefix=()):
    """Every place in a nested document: mapping keys and list positions."""
    yield prefix
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in items:
        yield from _paths(child, (*prefix, key))


@st.composite
def mutated_grids(draw) -> str:
    doc = copy.deepcopy(VALID)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(list(_paths(doc))))
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        action = draw(st.sampled_from(["set", "delete", "add"]))
        if not path:  # the whole document
            doc = draw(VALUES)
        elif action == "delete":
            del parent[path[-1]]
        elif action == "add" and isinstance(parent[path[-1]], dict):
            parent[path[-1]][draw(KEYS)] = draw(VALUES)
        else:
            parent[path[-1]] = draw(VALUES)
        if not isinstance(doc, (dict, list)):
            break
    return yaml.safe_dump(doc, sort_keys=False)


@st.composite
def edited_text(draw) -> str:
    """Character edits of the valid file: what a typo does."""
    text = yaml.safe_dump(VALID, sort_keys=False, default_flow_style=None)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        cut = draw(st.integers(0, 3))
        text = text[:at] + draw(st.text(alphabet=":-[]{},#&*!|>'\"%@` \n\t01abz", max_size=3)) + text[at + cut :]
    return text


DOCUMENTS = mutated_grids() | edited_text() | st.text(max_size=80)
_examples = {"bad": 0, "valid": 0}


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=DOCUMENTS)
def test_any_rejected_grid_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, text):
    case = Path(tempfile.mkdtemp(dir=tmp_path))
    spec, out = case / "grid.yaml", case / "out"
    spec.write_text(text)
    try:
        load_grid(spec)  # anything but InputError escaping here is a crash the user would see as a traceback
    except InputError:
        pass
    else:
        _examples["valid"] += 1
        return  # a mutation that is still a fine grid: nothing to refuse
    _examples["bad"] += 1
    code, stdout, stderr = _run(["run", str(spec), "--out", str(out), *QUIET], capsys)
    assert code == 2
    assert_one_clear_line(stderr, str(spec))
    assert_nothing_written(out)
