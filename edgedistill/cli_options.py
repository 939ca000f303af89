"""Options that several ``edgedistill`` commands share, so that their spelling and help stay one."""

from __future__ import annotations

import click

OUT_HELP = "Run folder (default: runs/<recipe name>)."


def recipe_arg(f):
    return click.argument("recipe", required=False, type=click.Path(dir_okay=False))(f)


def out_opt(f):
    return click.option("--out", "-o", type=click.Path(file_okay=False), default=None, help=OUT_HELP)(f)


EXPECT_ID = click.option("--expect-id", default=None,
                         help="Refuse any bundle whose id (printed by 'bundle verify') is not this one.")
PUBLIC_KEY = click.option("--public-key", type=click.Path(dir_okay=False, exists=True), default=None,
                          help="Require a valid signature by this Ed25519 public key (PEM).")
