"""Grid files: expansion, ids, and one-line errors with file and line."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from nin.profile import profile_variant
from nin.variant import Variant
from runners.spec import SpecError, load_grid, parse_grid
from tests.conftest import REPO, cli


def grid(text: str, **kwargs):
    return parse_grid(textwrap.dedent(text), source="g.yaml", **kwargs)


def test_paper_grid_is_the_mission_grid():
    paper = load_grid(REPO / "ablations" / "paper.yaml")
    assert len(paper.variants) == 57
    nin = [v for v in paper.variants if v.model == "nin"]
    assert {(v.head, v.cccp, v.dropout) for v in nin} == {
        (h, c, d) for h in ("gap", "fc", "alexnet") for c in (0, 1, 2) for d in (True, False)
    }
    alexnet = [v for v in paper.variants if v.model == "alexnet"]
    assert [v.seed for v in alexnet] == [0, 1, 2] and all(v.lr == 0.01 for v in alexnet)
    assert all(v.lr == 0.1 and v.batch_size == 128 and v.epochs == 10 for v in nin)
    assert all(v.dataset == "fashion-mnist" and v.arch == "d2l" and v.image_size == 224 for v in nin)
    assert len({v.id for v in paper.variants}) == 57


def test_quick_grid_can_test_nins_claims_on_embedded_data():
    """The demo grid: the seeds' NiN on embedded digits, an AlexNet head >= 10x the GAP head's params (as at 224
    px), >= 5 seeds per row, and one set of training settings, so a head comparison is not a settings comparison."""
    quick = load_grid(REPO / "ablations" / "quick.yaml")
    assert {v.dataset for v in quick.variants} == {"digits"}
    nin = [v for v in quick.variants if v.model == "nin"]
    assert {v.arch for v in nin} == {"d2l"}
    assert {(v.head, v.cccp, v.dropout) for v in nin} >= {
        (h, c, d) for h in ("gap", "fc", "alexnet") for c in (0, 2) for d in (True, False)
    }
    assert any(v.head == "gap" and v.gap_relu for v in nin), "the seeds' exact GAP head (ReLU before GAP) is a row"
    assert any(v.model == "alexnet" for v in quick.variants), "d2l's AlexNet is the reference row"

    seeds: dict[str, set[int]] = {}
    for v in quick.variants:
        seeds.setdefault(v.group_id, set()).add(v.seed)
    assert min(len(s) for s in seeds.values()) >= 5

    training = ("optimizer", "lr", "momentum", "nesterov", "weight_decay", "schedule", "warmup_epochs", "epochs")
    training += ("batch_size", "train_size", "init", "width", "image_size", "augment")
    assert len({tuple(getattr(v, key) for key in training) for v in nin}) == 1

    for cccp in {v.cccp for v in nin}:
        by_head = {v.head: profile_variant(v).params for v in nin if v.cccp == cccp and v.dropout}
        assert by_head["alexnet"] >= 10 * by_head["gap"], (cccp, by_head)


def test_variant_id_is_readable_stable_and_config_sensitive():
    v = Variant(arch="d2l", head="gap", cccp=2, dropout=True, seed=0)
    assert v.id.startswith("d2l-gap-cccp2-do1-s0-") and len(v.id.rsplit("-", 1)[1]) == 6
    assert v.id == Variant(arch="d2l", head="gap", cccp=2, dropout=True, seed=0).id
    assert v.id != Variant(arch="d2l", head="gap", cccp=2, dropout=True, seed=0, lr=0.05).id
    assert v.group_id == Variant(seed=5).group_id
    assert Variant(model="alexnet").id.startswith("alexnet-do1-s0-")


def test_variant_errors_name_the_field_and_allowed_values():
    with pytest.raises(ValueError, match="head") as info:
        Variant(head="gapp")
    assert "'gap', 'fc' or 'alexnet'" in str(info.value)
    with pytest.raises(ValueError, match="cccp"):
        Variant(cccp=3)
    with pytest.raises(ValueError, match="nesterov needs momentum"):
        Variant(nesterov=True)


def test_axes_expand_as_a_cartesian_product_with_include_exclude_and_seeds():
    g = grid("""
        name: t
        settings: {arch: cifar, dataset: digits, width: 0.25}
        axes: {head: [gap, fc], cccp: [0, 1, 2]}
        exclude: [{head: fc, cccp: 1}]
        include: [{model: alexnet, image_size: 72, width: 0.125}]
        seeds: 2
    """)
    combos = [(v.head, v.cccp, v.seed) for v in g.variants if v.model == "nin"]
    assert len(combos) == 10 and ("fc", 1, 0) not in combos
    assert [v.seed for v in g.variants if v.model == "alexnet"] == [0, 1]
    assert g.resolved()["variants"] == [v.id for v in g.variants]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: t\naxes:\n  haed: [gap]\n", "g.yaml:3: axes.haed: unknown axis 'haed' (did you mean 'head'?"),
        ("name: t\naxes:\n  head: [gap, gapp]\n", "g.yaml:3: axes.head[1]: head: Input should be"),
        ("name: t\naxes:\n  head: [gap, gap]\n", "g.yaml:3: axes.head[1]: level 'gap' is listed twice"),
        ("name: t\naxes: {head: [gap]}\ninclude:\n  - {head: gap}\n", "g.yaml:4: include[0]: duplicate variant"),
        ("name: t\naxes: [head\n", "g.yaml:3:1: invalid YAML"),
        ("name: t\nepochs: 3\n", "g.yaml:2: epochs: unknown top-level key 'epochs'"),
        ("name: t\nsettings: {epochs: 0}\naxes: {head: [gap]}\n", "g.yaml:2: settings.epochs: epochs: Input should"),
        ("name: t\naxes: {head: []}\n", "axes.head: axis 'head' needs a non-empty list"),
        ("name: t\naxes: {head: [gap]}\nexclude: [{head: gap}]\n", "zero variants"),
        ("name: t\naxes: {head: [gap]}\nexclude: [{head: fc}]\n", "exclude[0]: this exclude matches no axis"),
        ("name: 'a b'\naxes: {head: [gap]}\n", "g.yaml:1: name: name must be a short identifier"),
        ("name: t\naxes: {head: [gap]}\nseeds: [0, 0]\n", "a seed is listed twice"),
    ],
)
def test_bad_grids_give_one_line_naming_the_problem(text, expected):
    with pytest.raises(SpecError) as info:
        grid(text)
    message = str(info.value)
    assert expected in message
    assert "\n" not in message


def test_huge_grid_needs_confirmation():
    text = "name: t\nsettings: {dataset: digits, arch: cifar}\naxes: {lr: [0.1, 0.2, 0.3, 0.4]}\nseeds: 200\n"
    with pytest.raises(SpecError, match="pass --yes"):
        grid(text)
    assert len(grid(text, max_runs=None).variants) == 800


def test_list_json_reports_paper_grid_sizes():
    result = cli("list", "ablations/paper.yaml", "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert len(rows) == 57
    required = {"variant_id", "head", "cccp", "dropout", "model", "arch", "seed", "params", "macs"}
    assert all(required <= row.keys() for row in rows)
    seed_nin = [r for r in rows if r["head"] == "gap" and r["cccp"] == 2 and r["model"] == "nin"]
    assert len(seed_nin) == 6 and all(r["params"] == 1_992_166 for r in seed_nin)
    assert all(abs(r["macs"] / 1e9 - 0.762) < 0.001 for r in seed_nin)
    assert {r["params"] for r in rows if r["model"] == "alexnet"} == {46_764_746}


def test_list_table_is_human_readable():
    result = cli("list", "ablations/quick.yaml")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].split()[:4] == ["variant_id", "model", "arch", "head"]
    assert "in grid 'quick'" in result.stdout


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("name: t\naxes: {haed: [gap]}\n", "unknown axis 'haed'"),
        ("name: t\naxes: {head: [gap, nope]}\n", "axes.head[1]"),
        ("name: t\naxes: {head: [gap]}\ninclude: [{head: gap}]\n", "duplicate variant"),
        ("name: t\naxes: {head: [gap\n", "invalid YAML"),
    ],
)
def test_cli_bad_grid_exits_2_with_one_line_and_writes_nothing(tmp_path, text, needle):
    spec = tmp_path / "bad.yaml"
    spec.write_text(text)
    before = sorted(p.name for p in tmp_path.iterdir())
    result = cli("list", str(spec), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in result.stderr
    assert lines[0].startswith(f"nin-ablate: error: {spec}:")
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_cli_missing_grid_file(tmp_path):
    result = cli("list", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2 and "grid file not found" in result.stderr


# ---- size before expansion, and ids ---------------------------------------------------------------------------------

TINY = "name: t\nsettings: {arch: cifar, dataset: digits, width: 0.125, image_size: 16}\n"


def _levels(n: int, step: float) -> str:
    return "[" + ", ".join(f"{step * (i + 1):.6g}" for i in range(n)) + "]"


def test_size_is_checked_before_any_variant_is_built(monkeypatch):
    def no_variant(**config):
        raise AssertionError("a Variant was built before the size check")

    monkeypatch.setattr("runners.spec.Variant", no_variant)
    with pytest.raises(SpecError, match=r"g.yaml: the grid expands to 200,000 runs, more than the 500 allowed"):
        grid(TINY + "axes: {head: [gap]}\nseeds: [" + ", ".join(map(str, range(200_000))) + "]\n")
    axes = f"axes:\n  lr: {_levels(1000, 0.001)}\n  weight_decay: {_levels(100, 1e-4)}\n"
    axes += f"  momentum: {_levels(100, 0.009)}\n"
    with pytest.raises(SpecError, match=r"expands to 10,000,000 runs, more than the 500 allowed without confirmation"):
        grid(TINY + axes)
    with pytest.raises(SpecError, match=r"10,000,000 runs, more than the 100,000 any grid may have, even with --yes"):
        grid(TINY + axes, max_runs=None)


def test_size_counts_excludes_and_include_rows_exactly():
    text = TINY + f"axes: {{lr: {_levels(10, 0.01)}, weight_decay: {_levels(10, 0.001)}}}\n"
    text += "exclude: [{lr: 0.01}, {lr: 0.02, weight_decay: 0.001}, {weight_decay: 0.001}]\n"
    text += "include: [{model: alexnet, image_size: 72, width: 0.125}]\nseeds: 7\n"
    runs = len(grid(text, max_runs=None).variants)
    assert runs == (100 - 10 - 9 + 1) * 7  # the (0.02, 0.001) exclude overlaps the weight_decay one
    with pytest.raises(SpecError, match=rf"expands to {runs} runs, more than the 500"):
        grid(text)
    assert len(grid(text, max_runs=runs).variants) == runs


def test_size_of_a_grid_too_wide_to_count_is_an_upper_bound():
    axes = f"axes:\n  lr: {_levels(1000, 0.001)}\n  weight_decay: {_levels(1000, 1e-5)}\n"
    with pytest.raises(SpecError, match=r"expands to up to 1,000,000 runs"):
        grid(TINY + axes + "exclude: [{lr: 0.001, weight_decay: 0.00001}]\n", max_runs=None)


def test_huge_seeds_list_is_refused_before_torch_is_imported(tmp_path):
    spec = tmp_path / "huge.yaml"
    spec.write_text(TINY + "axes: {head: [gap]}\nseeds: [" + ", ".join(map(str, range(200_000))) + "]\n")
    out = tmp_path / "out"
    check = (
        "import sys\nfrom runners.cli import main\n"
        f"code = main(['run', {str(spec)!r}, '--out', {str(out)!r}])\n"
        "print(code, 'torch' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", check], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.stdout.split() == ["2", "False"], proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "the grid expands to 200,000 runs" in lines[0]
    assert not out.exists()


def test_the_ceiling_holds_even_with_yes(tmp_path, capsys):
    from runners.cli import main

    spec = tmp_path / "wide.yaml"
    spec.write_text(TINY + f"axes: {{lr: {_levels(1000, 0.001)}}}\nseeds: 101\n")
    assert main(["list", str(spec), "--yes"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "101,000 runs, more than the 100,000 any grid may have, even with --yes" in err


def test_a_hash_collision_is_an_id_collision_naming_both_configs(monkeypatch):
    monkeypatch.setattr("nin.variant._short_hash", lambda config: "abcdef")
    with pytest.raises(SpecError) as info:
        grid(TINY + "axes: {lr: [0.1, 0.2]}\n")
    message = str(info.value)
    assert "id collision" in message and "duplicate" not in message
    assert "cifar-gap-cccp2-do1-w0.125-s0-abcdef" in message and "lr=0.1" in message and "lr=0.2" in message
    with pytest.raises(SpecError, match="duplicate variant"):  # the same config twice is still a duplicate
        grid(TINY + "axes: {lr: [0.1]}\ninclude: [{lr: 0.1}]\n")
