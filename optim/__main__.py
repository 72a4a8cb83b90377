"""python -m optim COMMAND ... — the same as the `detr-lab` console script."""

from optim.commands import cli

if __name__ == "__main__":
    cli()
