"""`wa-sessions-server`: runs the service until SIGTERM or SIGINT."""

from __future__ import annotations

import os

# NOTE: gRPC's C-core reads GRPC_VERBOSITY once, when grpc is first imported, and logs its own
# lines ("add_port.cc ... Failed to add port") before the server's one-line error; so it is set
# here, before anything below imports grpc. A user's own GRPC_VERBOSITY wins.
os.environ.setdefault("GRPC_VERBOSITY", "NONE")

import argparse
import asyncio
import logging
import signal
import sys
import threading
import time
from pathlib import Path

from wasessions_server.api.server import BindError, WaSessionsServer
from wasessions_server.config import choice, load_config
from wasessions_server.engines.registry import KNOWN_ENGINES, check_engines
from wasessions_server.errors import ConfigError, EngineUnavailable, StorageError
from wasessions_server.logfmt import FORMATS
from wasessions_server.logfmt import configure as configure_logging
from wasessions_server.logfmt import flush as flush_logs
from wasessions_server.store import DataDirLocked

log = logging.getLogger("wasessions_server")

EXIT_CONFIG = 2
EXIT_LOCKED = 3
EXIT_BIND = 4
EXIT_STORAGE = 5

_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


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
    parser.add_argument(
        "--log-level",
        default=os.environ.get("WASESSIONS_LOG_LEVEL", "INFO"),
        help=f"{', '.join(_LOG_LEVELS)} (default INFO)",
    )
    parser.add_argument(
        "--log-format",
        default=os.environ.get("WASESSIONS_LOG_FORMAT", "text"),
        help="text (default) or json: one JSON object a line",
    )
    security = parser.add_argument_group("security and operability")
    security.add_argument(
        "--api-keys-file", help="API keys, one a line (KEY, sha256:HEX, read:KEY, read:sha256:HEX)"
    )
    security.add_argument("--tls-cert", help="server certificate chain (PEM): serve TLS")
    security.add_argument("--tls-key", help="the certificate's private key (PEM)")
    security.add_argument("--tls-client-ca", help="CA (PEM) that client certificates must chain to")
    security.add_argument("--metrics-listen", help="host:port for Prometheus metrics (default off)")
    security.add_argument(
        "--allow-unauthenticated",
        action="store_const",
        const=True,
        help="serve a non-loopback address without API keys or client certificates",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        level = choice(args.log_level.upper(), _LOG_LEVELS, "log_level")
        log_format = choice(args.log_format, FORMATS, "log_format")
    except ConfigError as error:
        print(f"wa-sessions-server: invalid configuration: {error}", file=sys.stderr)
        return EXIT_CONFIG
    configure_logging(level, log_format)
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
        "api_keys_file": args.api_keys_file or env.get("WASESSIONS_API_KEYS_FILE"),
        "tls_cert": args.tls_cert or env.get("WASESSIONS_TLS_CERT"),
        "tls_key": args.tls_key or env.get("WASESSIONS_TLS_KEY"),
        "tls_client_ca": args.tls_client_ca or env.get("WASESSIONS_TLS_CLIENT_CA"),
        "metrics_listen": args.metrics_listen or env.get("WASESSIONS_METRICS_LISTEN"),
        "allow_unauthenticated": args.allow_unauthenticated
        or env.get("WASESSIONS_ALLOW_UNAUTHENTICATED"),
    }
    try:
        config = load_config(config_path, overrides)
        check_engines(config.engines)
    except EngineUnavailable as error:
        print(f"wa-sessions-server: {error}", file=sys.stderr)
        return EXIT_CONFIG
    except ConfigError as error:
        print(f"wa-sessions-server: invalid configuration: {error}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        return _exit_bounded(asyncio.run(_serve(WaSessionsServer(config))))
    except DataDirLocked as error:
        print(f"wa-sessions-server: {error}", file=sys.stderr)
        return EXIT_LOCKED
    except BindError as error:
        print(f"wa-sessions-server: {error}", file=sys.stderr)
        return EXIT_BIND
    except StorageError as error:
        print(f"wa-sessions-server: storage failed: {error}", file=sys.stderr)
        return EXIT_STORAGE


#: After the journal is flushed, threads still inside the WhatsApp library (a connect in its
#: 20 s handshake, a QR phase neonize never returns from) get this long, then the process exits
#: without them: Python would otherwise wait for them forever.
LIBRARY_EXIT_TIMEOUT_S = 25.0


def _exit_bounded(code: int, timeout_s: float = LIBRARY_EXIT_TIMEOUT_S) -> int:
    deadline = time.monotonic() + timeout_s
    current = threading.current_thread()
    for thread in threading.enumerate():
        if thread is not current and not thread.daemon:
            thread.join(max(0.0, deadline - time.monotonic()))
    stuck = [t.name for t in threading.enumerate() if t is not current and not t.daemon]
    if stuck:
        log.warning(
            "%d threads still inside the WhatsApp library after %.0f s; exiting without them",
            len(stuck),
            timeout_s,
        )
        flush_logs()
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


async def _serve(server: WaSessionsServer) -> int:
    # NOTE: the handlers come first: a SIGTERM right after "listening on" is a clean stop too.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await server.start()
    except OSError as error:
        # NOTE: a data directory that cannot be created or opened (a file in its path, no
        # permission) is one line like every other start-up failure, not a traceback.
        where = f": {error.filename}" if error.filename else ""
        raise StorageError(f"{error.strerror or error}{where}") from None
    await stop.wait()
    log.info("shutting down")
    await server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
