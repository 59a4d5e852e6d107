"""The command line: ``run_benchmark.py [COMMAND] ...`` (installed as ``samcl-bench``).

One module per subcommand in this package, each with ``HELP``, ``add_arguments(parser)`` and
``main(args) -> exit code``; :data:`COMMANDS` maps each command to its module, in the order
``--help`` shows (``list`` lives in ``listing.py``: a submodule named ``list`` would shadow the
builtin in this package's namespace). With no command (or options only), ``run`` runs: the built-in default benchmark.
Heavy imports (torch, Avalanche) happen inside the commands, so ``--help`` answers at once.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import List, Optional

COMMANDS = {"run": "run", "grid": "grid", "report": "report", "cache": "cache", "prepare": "prepare",
            "points": "points", "evaluate": "evaluate",
            "list": "listing", "throughput": "throughput", "pretrain-small-sam": "pretrain_small_sam",
            "eval-small-sam": "eval_small_sam"}


def _module(name: str):
    return importlib.import_module(f"benchmark.cli.{COMMANDS[name]}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Continual-learning benchmark of Segment Anything models. With no command, "
                    "runs the built-in default benchmark and prints the leaderboard. Installed "
                    "as the console script samcl-bench too.")
    sub = parser.add_subparsers(dest="command", metavar="{" + ",".join(COMMANDS) + "}")
    for name in COMMANDS:
        module = _module(name)
        module.add_arguments(sub.add_parser(name, help=module.HELP, description=module.HELP))
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0] not in COMMANDS and argv[0] not in ("-h", "--help")):
        argv = ["run"] + argv
    args = build_parser().parse_args(argv)
    try:
        return _module(args.command).main(args)
    except (ValueError, FileNotFoundError, KeyError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"error: {message}", file=sys.stderr)
        return 2
    except FloatingPointError as exc:  # a run diverged; finished domains stay resumable
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
