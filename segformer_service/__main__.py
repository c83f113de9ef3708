"""Command line: ``python -m segformer_service --host 127.0.0.1 --port 8090``.

Other settings come from ``REFERENCE_SERVICE_*`` environment variables.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys

import uvicorn

from segformer_service.engines import available_engines

READY_MESSAGE = "reference model service listening on http://{host}:{port}"


class _Server(uvicorn.Server):
    """uvicorn server that prints one ready line with the bound address."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            host, port = self.config.host, self.config.port
            for server in getattr(self, "servers", []):
                for sock in server.sockets:
                    host, port = sock.getsockname()[:2]
                    break
            print(READY_MESSAGE.format(host=host, port=port), flush=True)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run the service until interrupted; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m segformer_service", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090, help="0 picks a free port")
    parser.add_argument("--engine", choices=available_engines(), default=None)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument(
        "--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"]
    )
    args = parser.parse_args(argv)
    if args.engine:
        # Through the environment, so that every worker process sees it.
        os.environ["REFERENCE_SERVICE_ENGINE"] = args.engine

    if args.workers > 1:
        if args.port == 0:
            parser.error("--port 0 needs --workers 1 (workers must share one known port)")
        # uvicorn's supervisor offers no ready hook; its own log line reports readiness.
        print(f"starting {args.workers} workers on http://{args.host}:{args.port}", flush=True)
        uvicorn.run(
            "segformer_service.app:create_app",
            factory=True,
            host=args.host,
            port=args.port,
            workers=args.workers,
            log_level=args.log_level,
        )
        return 0
    config = uvicorn.Config(
        "segformer_service.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
    )
    _Server(config).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
