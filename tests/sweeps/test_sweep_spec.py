"""A sweep file -> cells: expansion, arms, dropped keys, exclusions, saved bases, and every bad
input as one line that names the cell or the key."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from mfm.config import config_to_dict
from mfm.store import Database, repo
from mfm.sweeps.plan import resolve_base
from mfm.sweeps.spec import (
    MAX_CELLS,
    SweepError,
    bundled_sweeps,
    collect_arms,
    expand,
    parse_sweep,
    read_sweep,
)

# Dotted top-level keys (no tables), so a test's own top-level keys may follow.
BASE = """
device = "cpu"
data.name = "digits"
model.name = "resnet_tiny"
train.epochs = 1
train.batch_size = 64
"""


def cells_of(text: str, **kw):
    return expand(parse_sweep(tomllib.loads(BASE + text)), **kw)


def refused(text: str, *needles: str, **kw) -> str:
    """The SweepError of a sweep file: one line, naming every needle."""
    with pytest.raises(SweepError) as info:
        cells_of(text, **kw)
    message = str(info.value)
    assert "\n" not in message and "\r" not in message, message
    for needle in needles:
        assert needle in message, f"{needle!r} not in {message!r}"
    return message


# -- expansion --------------------------------------------------------------------------------

def test_grid_product_gives_arms_and_seeds_give_cells() -> None:
    cells = cells_of("""
[grid]
"method.name" = ["ce", "balanced_softmax", "mfm"]
"data.imbalance_factor" = [10, 100]
seed = [0, 1, 2]
""")
    assert len(cells) == 3 * 2 * 3
    assert collect_arms(cells) == [
        "ce · imbalance_factor=10", "ce · imbalance_factor=100",
        "balanced_softmax · imbalance_factor=10", "balanced_softmax · imbalance_factor=100",
        "mfm · imbalance_factor=10", "mfm · imbalance_factor=100"]
    assert [c.index for c in cells] == list(range(18))
    first = cells[:3]
    assert [c.seed for c in first] == [0, 1, 2]
    assert {c.arm for c in first} == {"ce · imbalance_factor=10"}
    # every cell is a validated config with the cell's values, typed (100 -> 100.0)
    last = cells[-1]
    assert last.config.method.name == "mfm" and last.config.data.imbalance_factor == 100.0
    assert last.config.seed == 2 and last.config.train.epochs == 1
    assert last.overrides == {"method.name": "mfm", "data.imbalance_factor": 100, "seed": 2}
    assert last.resolved == config_to_dict(last.config)


def test_no_grid_is_one_cell_named_base() -> None:
    cells = cells_of("")
    assert [(c.arm, c.seed) for c in cells] == [("base", 0)]


def test_arms_are_crossed_with_the_axes_they_do_not_set() -> None:
    cells = cells_of("""
[grid]
"method.name" = ["ce", "balanced_softmax"]
"data.imbalance_factor" = [10, 100]
seed = [0, 1]

[[arm]]
name = "mfm on ce"
"method.name" = "mfm"
"mfm.base_loss" = "ce"

[[arm]]
name = "low lr"
"optim.lr" = 0.01
""")
    arms = collect_arms(cells)
    assert arms[4:] == [
        "mfm on ce · imbalance_factor=10", "mfm on ce · imbalance_factor=100",
        "low lr · ce · imbalance_factor=10", "low lr · ce · imbalance_factor=100",
        "low lr · balanced_softmax · imbalance_factor=10",
        "low lr · balanced_softmax · imbalance_factor=100"]
    assert len(cells) == len(arms) * 2  # every arm gets the grid's seeds
    mfm_cells = [c for c in cells if c.arm.startswith("mfm on ce")]
    assert {c.config.mfm.base_loss for c in mfm_cells} == {"ce"}
    assert {(c.config.data.imbalance_factor, c.seed) for c in mfm_cells} == \
        {(10.0, 0), (10.0, 1), (100.0, 0), (100.0, 1)}
    low = [c for c in cells if c.arm.startswith("low lr")]
    assert {c.config.optim.lr for c in low} == {0.01}
    assert {c.config.method.name for c in low} == {"ce", "balanced_softmax"}


def test_an_arm_that_sets_its_seed_is_not_crossed_with_the_seed_axis() -> None:
    cells = cells_of("""
[grid]
"method.name" = ["ce"]
seed = [0, 1]
[[arm]]
name = "lucky"
"method.name" = "balanced_softmax"
seed = 7
""")
    assert [(c.arm, c.seed) for c in cells] == [("ce", 0), ("ce", 1), ("lucky", 7)]


def test_an_arm_alone_without_axes() -> None:
    cells = cells_of("""
[grid]
seed = [3]
[[arm]]
name = "only"
"method.name" = "balanced_softmax"
""")
    assert [(c.arm, c.seed, c.config.method.name) for c in cells] == \
        [("only", 3, "balanced_softmax")]


def test_keys_that_do_not_apply_to_a_method_are_dropped() -> None:
    cells = cells_of("""
[grid]
"method.name" = ["ce", "mfm"]
"mfm.meta_interval" = [1, 2, 4]
seed = [0, 1]
""")
    assert collect_arms(cells) == ["ce", "mfm · meta_interval=1", "mfm · meta_interval=2",
                                   "mfm · meta_interval=4"]
    assert len(cells) == (1 + 3) * 2
    ce = [c for c in cells if c.arm == "ce"]
    assert all("mfm" not in c.resolved for c in ce)
    assert all("mfm.meta_interval" not in c.overrides for c in ce)
    assert [c.config.mfm.meta_interval for c in cells if c.arm.startswith("mfm")] == \
        [1, 1, 2, 2, 4, 4]


def test_a_base_tuning_one_method_still_serves_a_grid_over_methods() -> None:
    cells = cells_of("""
[mfm]
meta_interval = 3
[grid]
"method.name" = ["ce", "mfm"]
""")
    by_arm = {c.arm: c for c in cells}
    assert "mfm" not in by_arm["ce"].resolved
    assert by_arm["mfm"].config.mfm.meta_interval == 3


def test_exclude_leaves_matching_cells_out() -> None:
    cells = cells_of("""
[grid]
"method.name" = ["ce", "balanced_softmax"]
"data.imbalance_factor" = [10, 100]
seed = [0, 1]
[[exclude]]
"method.name" = "ce"
"data.imbalance_factor" = 10
""")
    arms = collect_arms(cells)
    assert "ce · imbalance_factor=10" not in arms
    assert len(arms) == 3 and len(cells) == 6
    assert [c.index for c in cells] == list(range(6))  # indices stay dense


def test_exclude_by_seed_and_by_list_value() -> None:
    cells = cells_of("""
[grid]
"optim.milestones" = [[0.5, 0.8], [0.6]]
seed = [0, 1]
[[exclude]]
"optim.milestones" = [0.6]
seed = 1
""")
    assert [(c.arm, c.seed) for c in cells] == [("milestones=[0.5, 0.8]", 0),
                                                ("milestones=[0.5, 0.8]", 1),
                                                ("milestones=[0.6]", 0)]


def test_exclude_on_a_method_key_does_not_touch_other_methods() -> None:
    cells = cells_of("""
[grid]
"method.name" = ["ce", "mfm"]
"mfm.meta_interval" = [1, 2]
[[exclude]]
"mfm.meta_interval" = 1
""")
    # ce has no meta_interval (its default 1 means nothing there): it stays
    assert collect_arms(cells) == ["ce", "mfm · meta_interval=2"]


def test_bundled_quick_sweep_reads_and_expands() -> None:
    assert "quick" in bundled_sweeps()
    spec = read_sweep("quick")
    assert spec.name == "quick"
    cells = expand(spec)
    assert [c.arm for c in cells] == ["ce", "balanced_softmax", "mfm"]
    assert {c.config.model.name for c in cells} == {"resnet20"}


def test_read_sweep_names_the_file_when_it_is_missing_or_not_toml(tmp_path: Path) -> None:
    with pytest.raises(SweepError, match="FILE: no file"):
        read_sweep(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[grid\n", encoding="utf-8")
    with pytest.raises(SweepError, match="not valid TOML"):
        read_sweep(bad)
    named = tmp_path / "study.toml"
    named.write_text(BASE, encoding="utf-8")
    assert read_sweep(named).name == "study"  # the file's stem when it has no name key


# -- max cells --------------------------------------------------------------------------------

def test_more_than_ten_thousand_cells_are_refused_before_expanding() -> None:
    seeds = ", ".join(str(i) for i in range(101))
    text = f"""
[grid]
"optim.lr" = [{", ".join(f"0.{i + 1:03d}" for i in range(100))}]
seed = [{seeds}]
"""
    refused(text, "grid", "10100 cells", str(MAX_CELLS), "--max-cells")


def test_the_file_cap_and_the_max_cells_option() -> None:
    text = """
max_cells = 3
[grid]
"method.name" = ["ce", "balanced_softmax"]
seed = [0, 1]
"""
    refused(text, "4 cells", "limit of 3")
    assert len(cells_of(text, max_cells=4)) == 4


# -- bad input: one line naming the cell or the key ---------------------------------------------

@pytest.mark.parametrize(("text", "needles"), [
    ('[grid]\n"optim.lrr" = [0.1]\n', ("grid", "optim.lrr", "did you mean optim.lr")),
    ('[grid]\n"method.nam" = ["ce"]\n', ("method.nam", "method.name")),
    ('[grid]\n"optim.lr" = [0.1, "fast", 0.3]\n',
     ("cell 2", "lr=fast", "optim.lr", "expected float")),
    ('[grid]\n"method.name" = ["ce", "balanced_softmax"]\nseed = [0, -1]\n',
     ("cell 2", "ce", "seed -1", "seed", ">= 0")),
    ('[grid]\n"optim.lr" = []\n', ("grid.optim.lr", "empty axis")),
    ('[grid]\n"optim.lr" = 0.1\n', ("grid.optim.lr", "a list")),
    ('[grid]\n"optim.lr" = [0.1, 0.1]\n', ("grid.optim.lr", "twice")),
    ('[grid.optim]\nlr = [0.1]\n', ("grid.optim", "quotes")),
    ('[[arm]]\nname = "a"\n"optim.lr" = 0.1\n[[arm]]\nname = "a"\n"optim.lr" = 0.2\n',
     ("arm 2", "'a'", "twice")),
    ('[[arm]]\n"optim.lr" = 0.1\n', ("arm 1", "name")),
    ('[[arm]]\nname = "empty"\n', ("empty", "sets no key")),
    ('[[arm]]\nname = "a"\n"optim.lrr" = 0.1\n', ("arm 'a'", "optim.lrr", "optim.lr")),
    ('[[arm]]\nname = "mfm-only"\n"mfm.meta_interval" = 2\n[grid]\n"method.name" = ["ce"]\n',
     ("cell 2", "mfm-only · ce", "mfm.meta_interval", "applies only")),
    ('[grid]\n"optim.lr" = [0.1]\n[[exclude]]\n"optim.lrr" = 0.1\n',
     ("exclude 1", "optim.lrr", "optim.lr")),
    ('[grid]\n"optim.lr" = [0.1]\n[[exclude]]\n', ("exclude 1", "empty rule")),
    ('[grid]\n"optim.lr" = [0.1]\n[[exclude]]\n"optim.lr" = 1979-05-27\n',
     ("exclude 1", "optim.lr", "1979")),
    ('[grid]\n"optim.lr" = [0.1]\n[[exclude]]\n"optim.lr" = 0.1\n', ("every cell is excluded",)),
    ('[grid]\n"method.name" = ["ce", "balanced_softmax"]\n'
     '[[arm]]\nname = "ce again"\n"method.name" = "ce"\n',
     ("cell 3", "ce again", "same settings as cell 1")),
    ('[grid]\n"data.name" = ["digits\\u001b[31m\\nx"]\n', ("cell 1", "data.name", "\\e")),
    ('[grid]\nseed = ["a\\nb"]\n', ("cell 1", "seed", "\\n")),
    ('max_cells = 0\n', ("max_cells",)),
    ('name = "a\\nb"\n', ("name",)),
    ('dataset = ""\n', ("dataset", "non-empty")),
], ids=["unknown-key", "unknown-key-2", "wrong-type-one-cell", "bad-seed-one-cell",
        "empty-axis", "axis-not-list", "axis-repeats", "axis-as-table", "arm-name-twice",
        "arm-without-name", "arm-sets-nothing", "arm-unknown-key", "arm-key-of-other-method",
        "exclude-unknown-key", "exclude-empty", "exclude-date", "all-excluded",
        "duplicate-settings", "escape-in-value", "newline-in-seed", "max-cells-zero",
        "name-newline", "dataset-empty"])
def test_bad_sweep_file(text: str, needles: tuple[str, ...]) -> None:
    refused(text, *needles)


# -- a saved dataset spec and a saved config as the base ----------------------------------------

@pytest.fixture
def saved(db_path: Path):
    with Database(str(db_path)) as db:
        repo.save_dataset_spec(db, "digits-if20", {"data": {"name": "digits",
                                                           "imbalance_factor": 20.0,
                                                           "meta_per_class": 5}})
        repo.save_config(db, "fast-mfm", {"method": {"name": "mfm"},
                                          "mfm": {"meta_interval": 3},
                                          "train": {"epochs": 2, "batch_size": 32}})
        repo.save_config(db, "fast-mfm", {"method": {"name": "mfm"},
                                          "mfm": {"meta_interval": 5},
                                          "train": {"epochs": 2, "batch_size": 32}})
        yield db


def _saved_sweep(db: Database, top: str, rest: str = ""):
    spec = parse_sweep(tomllib.loads(top + '\n[model]\nname = "resnet_tiny"\n' + rest))
    return expand(spec, base_dict=resolve_base(db, spec))


def test_saved_dataset_spec_and_config_as_the_base(saved: Database) -> None:
    cells = _saved_sweep(saved, 'dataset = "digits-if20"\nconfig = "fast-mfm"',
                         '[train]\nepochs = 1\n[grid]\n"method.name" = ["ce", "mfm"]\n')
    by_arm = {c.arm: c.config for c in cells}
    for cfg in by_arm.values():
        assert cfg.data.imbalance_factor == 20.0 and cfg.data.meta_per_class == 5
        assert cfg.train.epochs == 1          # the file's own base wins over the config
        assert cfg.train.batch_size == 32     # the config's, where the file says nothing
        assert cfg.model.name == "resnet_tiny"
    assert by_arm["mfm"].mfm.meta_interval == 5  # the latest version
    assert "mfm" not in config_to_dict(by_arm["ce"])


def test_saved_config_at_a_version(saved: Database) -> None:
    cells = _saved_sweep(saved, 'config = "fast-mfm@1"')
    assert [c.config.mfm.meta_interval for c in cells] == [3]
    assert cells[0].config.data.imbalance_factor == 10.0  # no dataset spec: the default


@pytest.mark.parametrize(("top", "needles"), [
    ('dataset = "nope"', ("dataset", "'nope'", "digits-if20")),
    ('config = "nope"', ("config", "'nope'", "fast-mfm")),
    ('config = "fast-mfm@9"', ("config", "fast-mfm@9")),
    ('config = "fast-mfm@x"', ("config", "NAME@VERSION")),
    ('config = "fast-mfm@\u00b2"', ("config", "NAME@VERSION")),
])
def test_unknown_saved_base(saved: Database, top: str, needles: tuple[str, ...]) -> None:
    with pytest.raises(SweepError) as info:
        _saved_sweep(saved, top)
    message = str(info.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message


# -- axes that move several keys together -------------------------------------------------------

def test_linked_axis_moves_its_keys_together():
    cells = cells_of('[grid]\n"method.name" = ["ce"]\n'
                     '"seed,data.seed" = [[0, 0], [1, 1], [2, 2]]\n')
    assert [(c.config.seed, c.config.data.seed) for c in cells] == [(0, 0), (1, 1), (2, 2)]
    assert collect_arms(cells) == ["ce"]  # the seed axis is not part of an arm


def test_table_axis_gives_labelled_dataset_variants_in_file_order():
    cells = cells_of("""
[[grid.data]]
label = "digits IF100"
imbalance_factor = 100
[[grid.data]]
label = "digits IF10"
imbalance_factor = 10
"train.many_threshold" = 60
[grid]
"method.name" = ["ce", "balanced_softmax"]
""")
    assert collect_arms(cells) == ["digits IF100 · ce", "digits IF100 · balanced_softmax",
                                   "digits IF10 · ce", "digits IF10 · balanced_softmax"]
    by_arm = {c.arm: c.config for c in cells}
    assert by_arm["digits IF10 · ce"].train.many_threshold == 60
    assert by_arm["digits IF100 · ce"].data.imbalance_factor == 100
    assert by_arm["digits IF100 · ce"].train.many_threshold == 100  # the default


def test_skip_invalid_leaves_out_what_the_rules_refuse_and_says_so():
    text = ('[grid]\n"method.name" = ["mfm"]\n"mfm.sites" = ["penultimate", "bn"]\n'
            '"mfm.modulator" = ["network", "free"]\n')
    refused(text, "cell", "mfm.sites")  # without the switch the file is refused
    skipped: list[str] = []
    cells = cells_of("skip_invalid = true\n" + text, skipped=skipped)
    assert {(c.config.mfm.sites, c.config.mfm.modulator) for c in cells} == {
        ("penultimate", "network"), ("penultimate", "free"), ("bn", "free")}
    assert len(skipped) == 1 and "bn" in skipped[0]


@pytest.mark.parametrize("text, needles", [
    ('[grid]\n"seed,data.seed" = [[0]]\n', ("seed,data.seed", "2 plain values")),
    ('[grid]\n"seed,nosuch.key" = [[0, 0]]\n', ("nosuch.key",)),
    ('[grid]\n"seed,seed" = [[0, 0]]\n', ("named twice",)),
    ('[grid]\nseed = [0]\n"seed,data.seed" = [[0, 0]]\n', ("seed is set by more than one",)),
    ('[[grid.data]]\nlabel = "a"\nnosuch = 1\n', ("data.nosuch",)),
    ('[[grid.data]]\nlabel = "a"\n', ("sets no key",)),
    ('[[grid.data]]\nlabel = "a"\nimbalance_factor = 10\n[[grid.data]]\nlabel = "a"\n'
     'imbalance_factor = 100\n', ("used twice",)),
    ('skip_invalid = "yes"\n', ("skip_invalid",)),
])
def test_bad_linked_and_table_axes(text, needles):
    refused(text, *needles)
