"""The ``databroker-compat`` command."""

from __future__ import annotations

import logging

import typer

from .demo import run_demo

app = typer.Typer(help="databroker v1 API over Tiled: demos and tools.", no_args_is_help=True)


@app.callback()
def _main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log what happens.")) -> None:
    if verbose:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")


@app.command()
def demo() -> None:
    """Record a few runs into an embedded Tiled server and show the v1 API on them."""
    run_demo(echo=typer.echo)


def main() -> None:
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
