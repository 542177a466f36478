"""`python -m enrich.sim`: the same as `enrich sim`."""

import typer

from enrich.sim.cli import sim_command

if __name__ == "__main__":
    typer.run(sim_command)
