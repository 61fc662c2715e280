"""The ``relevance`` command line: ``relevance explain | evaluate | figures | views | flows | demo``.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and ``run(args) -> int``.
Only the chosen subcommand's module is imported (``relevance --help`` imports none of them), so
``relevance explain`` never pays for Gradio and a missing optional part only breaks its own command.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Sequence

#: subcommand -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "explain": ("relevance.cli.explain", "write relevance overlays for images, token heatmaps for texts (--text), or "
                                         "both for image-text pairs (images with --text or --labels)"),
    "evaluate": ("relevance.cli.evaluate", "score explanation methods (the papers' tables, the shapes, reviews and "
                                           "caption-grounding worlds)"),
    "figures": ("relevance.cli.figures", "draw the papers' figures as PNG and PDF"),
    "views": ("relevance.cli.views", "write attention views: head, model, neuron (HTML) or the layers x heads grid"),
    "flows": ("relevance.cli.flows", "write attention flows of one model, or two compared (HTML and PNG)"),
    "demo": ("demos.app", "start the interactive Gradio demo"),
}

EXIT_USAGE = 2


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("relevance")
    except Exception:  # noqa: BLE001 - not installed as a distribution
        return "unknown"


def _build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    parser = argparse.ArgumentParser(
        prog="relevance",
        description="Explain what vision and language transformers look at (transformer attribution, LRP, "
                    "rollout, ...).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    children = {
        name: subparsers.add_parser(name, help=help_text, description=help_text)
        for name, (_, help_text) in SUBCOMMANDS.items()
    }
    return parser, children


def _chosen_command(argv: Sequence[str]) -> str | None:
    """The subcommand named in argv (first token that is not an option), if any."""
    for token in argv:
        if token == "--":
            return None
        if not token.startswith("-"):
            return token if token in SUBCOMMANDS else None
    return None


def _checkout_root() -> Path | None:
    """The source checkout this package runs from (it holds ``demos/``), or ``None`` for an installed wheel."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "demos" / "app.py").is_file() else None


def _import_command(name: str):
    """Import a subcommand's module; None (after printing why) when it cannot be used."""
    module_name = SUBCOMMANDS[name][0]
    if module_name.startswith("demos.") and importlib.util.find_spec("demos") is None:
        root = _checkout_root()
        if root is None:
            print(f"relevance: error: the '{name}' command runs from a source checkout of relevance "
                  "(the Gradio app lives in its demos/ folder): git clone the repository and run `make demo`",
                  file=sys.stderr)
            return None
        sys.path.insert(0, str(root))
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name == module_name:
            print(f"relevance: error: the '{name}' command is not available yet ({module_name} is missing)",
                  file=sys.stderr)
        else:
            print(f"relevance: error: the '{name}' command needs the package '{error.name}', which is not "
                  "installed", file=sys.stderr)
        return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 some inputs failed, 2 usage errors)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, children = _build_parser()
    command = _chosen_command(argv)
    module = None
    if command is not None:
        module = _import_command(command)
        if module is None:
            return EXIT_USAGE
        module.add_arguments(children[command])
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version, usage errors: argparse already printed
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    return int(module.run(args))


if __name__ == "__main__":
    sys.exit(main())
