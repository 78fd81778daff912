"""`wa-sessions`: the command line for a wa-sessions server."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="wa-sessions", description="Command line for a wa-sessions server."
    )
    parser.add_argument("--server", default="127.0.0.1:50051", help="host:port of the server")
    parser.parse_args(argv)
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
