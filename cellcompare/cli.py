"""cellcompare: one command, a subcommand per step of the data path.

``synth``/``summary`` (datasets), ``extract`` (features), ``compare`` (comparison),
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
from cellcompare.reports import cli as reports_cli
from cellcompare.serve import cli as serve_cli

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def build_parser(prog: str = "cellcompare", **compare_options) -> argparse.ArgumentParser:
    """The argument parser; ``compare_options`` go to the ``compare`` subcommand."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    datasets_cli.add_commands(sub)
    features_cli.add_commands(sub)
    comparison_cli.add_commands(sub, **compare_options)
    reports_cli.add_commands(sub)
    serve_cli.add_commands(sub)
    for command in sub.choices.values():
        command.add_argument("--log-level", default=None, choices=LOG_LEVELS,
                             help="logging threshold (default: INFO for extract and compare, "
                                  "else WARNING)")
    return parser


def main(argv: Sequence[str] | None = None, *, prog: str = "cellcompare", **compare_options) -> int:
    """Run the command line; return the exit status.

    Bad input (a ``ValueError`` subclass such as ``DatasetError`` or ``ConfigError``, or an
    ``OSError``) ends with its message and status 2; ``--log-level DEBUG`` shows the traceback.
    """
    args = build_parser(prog, **compare_options).parse_args(argv)
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
