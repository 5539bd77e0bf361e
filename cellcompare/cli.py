"""cellcompare: one command, a subcommand per step of the data path.

``synth``/``summary``/``convert`` (datasets), ``extract``/``export`` (features), ``embed`` (embeddings as feature tables),
``compare`` (comparison),
``report`` (reports), ``predict``/``undo``/``serve`` (serve).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from cellcompare.comparison import cli as comparison_cli
from cellcompare.datasets import cli as datasets_cli
from cellcompare.features import cli as features_cli
from cellcompare.features import embed_cli, export_cli
from cellcompare.reports import cli as reports_cli
from cellcompare.serve import cli as serve_cli

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's help followed by its default, unless it has none (``None``, ``False``,
    empty) or the help already says it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        default = action.default
        if (default is None or default is False or default == [] or default is argparse.SUPPRESS
                or "default" in (action.help or "")):
            return action.help or ""
        return super()._get_help_string(action)


def build_parser(prog: str = "cellcompare", **compare_options) -> argparse.ArgumentParser:
    """The argument parser; ``compare_options`` go to the ``compare`` subcommand.

    Examples
    --------
    >>> from cellcompare.cli import build_parser
    >>> args = build_parser().parse_args(["serve", "results/demo/models/xgboost"])
    >>> args.command, args.host, args.port
    ('serve', '127.0.0.1', 8000)
    """
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    datasets_cli.add_commands(sub)
    features_cli.add_commands(sub)
    export_cli.add_commands(sub)
    embed_cli.add_commands(sub)
    comparison_cli.add_commands(sub, **compare_options)
    reports_cli.add_commands(sub)
    serve_cli.add_commands(sub)
    for command in sub.choices.values():
        command.formatter_class = HelpFormatter
        command.add_argument("--log-level", default=None, choices=LOG_LEVELS,
                             help="logging threshold (default: INFO for extract, compare and "
                                  "serve, else WARNING)")
    return parser


def parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """``parser.parse_args``, except that an argument the subcommand does not know is refused
    with the subcommand's usage (argparse would print the top-level one)."""
    args, extra = parser.parse_known_args(argv)
    if extra:
        commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        commands.choices[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: Sequence[str] | None = None, *, prog: str = "cellcompare", **compare_options) -> int:
    """Run the command line; return the exit status.

    Bad input (a ``ValueError`` subclass such as ``DatasetError`` or ``ConfigError``, or an
    ``OSError``) ends with its message and status 2; ``--log-level DEBUG`` shows the traceback.
    A bad argument prints the subcommand's usage and exits with status 2 (argparse).
    """
    args = parse(build_parser(prog, **compare_options), argv)
    level = args.log_level or getattr(args, "log_level_default", "WARNING")
    logging.basicConfig(level=level, format=LOG_FORMAT)
    try:
        return int(args.func(args) or 0)
    except (ValueError, OSError) as exc:
        if level == "DEBUG":
            raise
        logging.getLogger("cellcompare").error("%s %s failed: %s: %s", prog, args.command,
                                               type(exc).__name__, exc)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
