"""`detr-lab`: one command-line entry point for the lab (installed as a console script).

Each sub-command runs an existing `python -m` main with the arguments as given, so the two spellings accept the
same options and print the same help (`detr-lab run --help` = `python -m optim.run --help`, under its own name).
To add a command, add one line to COMMANDS: its name, the module whose `main(argv, prog)` runs it, a summary.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version

import click

from optim.cli import run_cli

# name -> (module with `main(argv, prog) -> int`, one-line summary); modules come from this fixed list only
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("optim.run", "Run an experiment spec: every variant measured, the HTML report written."),
    "validate": ("optim.validate", "Check experiment and fine-tuning specs without running anything heavy."),
    "compare": ("optim.compare", "Gate a run on reference runs: exit 1 on a latency or accuracy regression."),
    "sensitivity": ("optim.sensitivity", "Per DETR block, the mAP cost and latency gain of quantizing it alone."),
    "finetune": ("optim.finetune.__main__", "Train or fine-tune a DETR from a fine-tuning spec."),
    "evaluate": ("optim.evaluation.__main__", "COCO mAP of a zoo model or folder with PyTorch."),
    "schema": ("optim.schema", "Write the JSON Schemas of the specs (for editors)."),
    "data": ("optim.data.synthetic", "Generate the synthetic data set."),
    "overhead": ("profiling.overhead", "Measure what the stage instrumentation costs with profiling off."),
    "nvtx-capture": ("profiling.nvtx_capture", "End-to-end iterations inside NVTX stage ranges, for Nsight."),
}


def _package_version() -> str:
    try:
        return version("detr-optim-lab")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "unknown"


def _command(name: str, module: str, summary: str) -> click.Command:
    """A sub-command that hands its arguments, `--help` included, to `module.main`."""

    def callback(args: tuple[str, ...]) -> None:
        main = importlib.import_module(module).main
        run_cli(lambda: main(list(args), prog=f"detr-lab {name}"))

    return click.Command(
        name, callback=callback, help=summary, short_help=summary, add_help_option=False,
        params=[click.Argument(["args"], nargs=-1, type=click.UNPROCESSED)],
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True})


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(_package_version(), prog_name="detr-lab")
def cli() -> None:
    """DETR optimization lab: compression x engines, measured. `detr-lab COMMAND --help` for a command's options."""


for _name, (_module, _summary) in COMMANDS.items():
    cli.add_command(_command(_name, _module, _summary))


@contextlib.contextmanager
def _columns(width: int) -> Iterator[None]:
    """argparse wraps help to $COLUMNS: fix it, so that generated help does not depend on the terminal."""
    before = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(width)
    try:
        yield
    finally:
        if before is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = before


def command_help(name: str | None = None, width: int = 100) -> str:
    """What `detr-lab [NAME] --help` prints (the manual's command-line reference is made of these)."""
    if name is None:
        return cli.get_help(click.Context(cli, info_name="detr-lab", terminal_width=width, max_content_width=width))
    main = importlib.import_module(COMMANDS[name][0]).main
    out = io.StringIO()
    with _columns(width), contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        main(["--help"], prog=f"detr-lab {name}")
    return out.getvalue()
