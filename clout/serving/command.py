"""`clout serve`: the read API and dashboard on uvicorn.

FastAPI and uvicorn are imported only when `serve` runs, so the other commands start quickly and
work without the `serve` extra installed.
"""

from __future__ import annotations

import argparse
import gc
import sys

from clout.settings import Settings

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_MAX_STALENESS_S = 1800.0  # /readyz: how old the newest results may be


def add_commands(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser("serve", parents=[common], help="the read API and live dashboard over Redis")
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to listen on (default %(default)s)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (default %(default)s)")
    parser.add_argument("--max-staleness", type=float, default=DEFAULT_MAX_STALENESS_S, metavar="SECONDS",
                        help="/readyz answers 503 when the newest results are older (0: no limit; default %(default)s)")
    parser.add_argument("--access-log", action="store_true", help="log every request (off: it costs latency)")
    parser.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    serve(settings, args.host, args.port, max_staleness_s=args.max_staleness or None, access_log=args.access_log)
    return 0


def serve(settings: Settings, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *,
          max_staleness_s: float | None = DEFAULT_MAX_STALENESS_S, access_log: bool = False) -> None:
    """Run the API until interrupted; prints the dashboard's URL once listening."""
    try:
        import uvicorn

        from clout.serving.app import create_app
    except ImportError as error:
        raise RuntimeError(f"`clout serve` needs the serve extra: pip install -e '.[serve]' ({error})") from error
    app = create_app(settings, max_staleness_s=max_staleness_s)
    gc.collect()
    gc.freeze()  # what exists now lives as long as the process: keep it out of every later (latency-costly) GC pass
    shown = f"[{host}]" if ":" in host else host
    print(f"clout serve: dashboard http://{shown}:{port}/  API docs http://{shown}:{port}/docs", file=sys.stderr,
          flush=True)
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=access_log, lifespan="on")
