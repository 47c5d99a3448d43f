"""A sweep file is data: a base, a grid of axes, named arms and exclusions -> cells.

```toml
name = "methods on digits-LT"       # optional; --name wins
dataset = "digits-if10"             # optional: a saved dataset spec as the base's data
config = "mfm-default"              # optional: a saved method config (NAME or NAME@VERSION)
max_cells = 200                     # optional cap; the hard default is 10,000

[data]                              # any run settings, as in a run's TOML file
name = "digits"
[train]
epochs = 5

[grid]                              # any config key -> a list of values
"method.name" = ["ce", "balanced_softmax", "mfm"]
"data.imbalance_factor" = [10, 100]
seed = [0, 1, 2]

[[arm]]                             # an arm that is not a product of the axes
name = "mfm on ce's loss"
"method.name" = "mfm"
"mfm.base_loss" = "ce"

[[exclude]]                         # cells matching every key/value here are left out
"method.name" = "ce"
"data.imbalance_factor" = 10
```

Axes can move several keys together: a linked axis ``"seed,data.seed" = [[0, 0], [1, 1]]``
(the training seed and the split's seed as one axis), or one ``[[grid.NAME]]`` table per value
with an optional ``label`` — a dataset variant is several ``data.*`` keys at once:

```toml
[[grid.data]]                       # keys of a section may be bare inside [[grid.<section>]]
label = "fashion-mnist-LT IF100"
name = "fashion-mnist"
imbalance_factor = 100
[[grid.data]]
label = "digits-LT IF10"
name = "digits"
imbalance_factor = 10
"train.many_threshold" = 60         # any other key, quoted and dotted
```

A stage-2 arm starts from a stage-1 arm's runs: ``"train.init_from" = "arm:NAME"`` (NAME an
``[[arm]]`` of the file). Each of its cells starts from the cell of arm NAME at the same place:
the same ``seed`` and, for every key a ``[grid]`` axis sets in that cell (not the keys arm NAME
sets itself), the same value — unless the key means nothing for the child's method. Exactly one
cell must match (``mfm.sweeps.lineage`` has the rule in full); unknown names, an arm naming
itself and cycles are refused before anything is queued. Parents are queued first, and a child
waits in the queue until its parent's run completes:

```toml
[grid]
seed = [0, 1, 2]
[[arm]]
name = "ce"
"method.name" = "ce"
[[arm]]
name = "crt"
"method.name" = "ce"
"train.init_from" = "arm:ce"                # each seed's ce run
"train.trainable" = "classifier"
"data.sampler" = "class_balanced"
```

``skip_invalid = true`` leaves out the cells the config rules refuse (an ablation over every
combination) instead of refusing the file; the plan says how many.

The grid's product (without ``seed``) gives the arms; each ``[[arm]]`` is one more arm, crossed
with the grid axes it does not set itself (so it gets the same seeds and imbalance factors). A
cell is an arm at one seed. Every cell is built into a validated Config before anything is
queued: all or nothing, and an error names the cell and the key.

Torch-free: the CLI and the TUI plan sweeps without loading the engine.

This module is the sweep file's public face; the work is in ``model`` (SweepSpec, Cell,
SweepError), ``parse`` (the file -> SweepSpec, bundled sweeps) and ``grid`` (SweepSpec ->
validated cells) and ``lineage`` (which cell a stage-2 cell starts from).
"""

from __future__ import annotations

from mfm.sweeps.grid import collect_arms, expand
from mfm.sweeps.model import MAX_CELLS, SEED_KEY, Cell, SweepError, SweepSpec
from mfm.sweeps.parse import BUNDLED, bundled_sweeps, find_sweep_file, parse_sweep, read_sweep

__all__ = ["SweepError", "SweepSpec", "Cell", "MAX_CELLS", "parse_sweep", "read_sweep",
           "expand", "SEED_KEY", "bundled_sweeps", "find_sweep_file", "collect_arms",
           "BUNDLED"]
