"""`wa-sessions-server`: runs the service until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from wasessions_server.api.server import BindError, WaSessionsServer
from wasessions_server.config import load_config
from wasessions_server.engines.registry import KNOWN_ENGINES
from wasessions_server.errors import ConfigError, StorageError
from wasessions_server.store import DataDirLocked

log = logging.getLogger("wasessions_server")

EXIT_CONFIG = 2
EXIT_LOCKED = 3
EXIT_BIND = 4
EXIT_STORAGE = 5


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wa-sessions-server",
        description="Keeps WhatsApp Web linked-device sessions alive behind a gRPC API. Every "
        "flag is also an environment variable (WASESSIONS_LISTEN, ...) and a TOML key.",
    )
    parser.add_argument("--listen", help="host:port (default 127.0.0.1:50051; port 0 = any)")
    parser.add_argument("--data-dir", help="registry, journal and credentials (default ./data)")
    parser.add_argument(
        "--engine", help=f"default engine of new sessions ({', '.join(KNOWN_ENGINES)})"
    )
    parser.add_argument(
        "--engines", help="comma-separated engines sessions may use (default: the --engine one)"
    )
    parser.add_argument("--config", type=Path, help="TOML configuration file")
    parser.add_argument("--log-level", default=os.environ.get("WASESSIONS_LOG_LEVEL", "INFO"))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # NOTE: everything the server writes is private: credentials above all.
    os.umask(0o077)
    env = os.environ
    config_path = args.config or (
        Path(env["WASESSIONS_CONFIG"]) if env.get("WASESSIONS_CONFIG") else None
    )
    overrides = {
        "listen": args.listen or env.get("WASESSIONS_LISTEN"),
        "data_dir": args.data_dir or env.get("WASESSIONS_DATA_DIR"),
        "engine": args.engine or env.get("WASESSIONS_ENGINE"),
        "engines": args.engines or env.get("WASESSIONS_ENGINES"),
    }
    try:
        config = load_config(config_path, overrides)
    except ConfigError as error:
        print(f"wa-sessions-server: invalid configuration: {error}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        return asyncio.run(_serve(WaSessionsServer(config)))
    except DataDirLocked as error:
        print(f"wa-sessions-server: {error}", file=sys.stderr)
        return EXIT_LOCKED
    except BindError as error:
        print(f"wa-sessions-server: {error}", file=sys.stderr)
        return EXIT_BIND
    except StorageError as error:
        print(f"wa-sessions-server: storage failed: {error}", file=sys.stderr)
        return EXIT_STORAGE


async def _serve(server: WaSessionsServer) -> int:
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down")
    await server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
