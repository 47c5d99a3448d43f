"""``mfm datasets``: look at a long-tailed split before training on it."""

from __future__ import annotations

import click
from rich.console import Console
from rich.table import Table

from mfm.cli import jsonout
from mfm.cli.errors import UserError
from mfm.cli.run import load_config_or_fail
from mfm.config import ConfigError

__all__ = ["datasets"]


@click.group()
def datasets() -> None:
    """Long-tailed dataset specs.

    \b
    Example:
      mfm datasets preview --set data.name=fashion-mnist --set data.imbalance_factor=100
    """


@datasets.command()
@click.option("--config", "config_path", metavar="FILE", default=None, help="TOML settings file.")
@click.option("--set", "overrides", metavar="KEY=VALUE", multiple=True,
              help="Override one setting (data.* keys matter here).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")
def preview(config_path: str | None, overrides: tuple[str, ...], as_json: bool) -> None:
    """Per-class train / meta / test counts as a text histogram, without training
    (and without loading torch).

    \b
    Examples:
      mfm datasets preview
      mfm datasets preview --set data.name=fashion-mnist --set data.imbalance_factor=100
      mfm datasets preview --set data.profile=step --json
    """
    from mfm.data import preview_counts

    cfg = load_config_or_fail(config_path, overrides)
    try:
        counts = preview_counts(cfg.data)
    except ConfigError as e:
        raise UserError(str(e)) from None
    if as_json:
        click.echo(jsonout.dumps(counts, indent=2))
        return
    d = cfg.data
    train = counts["train"]
    order = sorted(range(len(train)), key=lambda c: (-train[c], c))
    top = max(train) if train else 1
    table = Table(title=f"{d.name}-LT: {d.profile} profile, imbalance factor "
                        f"{d.imbalance_factor:g}, {d.meta_per_class} meta/class, seed {d.seed}  "
                        f"(split {counts['split_hash'][:12]})", title_justify="left")
    val = counts["val"] if d.val_per_class else None
    for col, just in (("class", "right"), ("name", "left"), ("train", "right"),
                      ("meta", "right"), *((("val", "right"),) if val else ()),
                      ("test", "right"), ("", "left")):
        table.add_column(col, justify=just)
    for c in order:
        bar = "█" * max(1 if train[c] else 0, int(round(40 * train[c] / top)))
        table.add_row(str(c), str(counts["classes"][c]), str(train[c]), str(counts["meta"][c]),
                      *((str(val[c]),) if val else ()), str(counts["test"][c]), bar)
    table.caption = (f"train {sum(train)}, meta {sum(counts['meta'])}, "
                     + (f"val {sum(val)}, " if val else "") + f"test {sum(counts['test'])}")
    Console().print(table)
