"""Command line: ``python -m segformer_service --host 127.0.0.1 --port 8090``.

Other settings come from ``REFERENCE_SERVICE_*`` environment variables.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import threading

import psutil
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


PARENT_POLL_S = 1.0
"""How often a service started with ``--exit-with-parent`` checks its parent, seconds."""


def exit_with_parent(server: uvicorn.Server, parent_pid: int) -> threading.Thread:
    """Stop `server` (as SIGTERM would: in-flight requests finish) once process
    `parent_pid` has ended, however it ended (``kill -9`` included, which leaves the parent
    no chance to stop its children). Polls every ``PARENT_POLL_S`` seconds in a daemon
    thread; the parent is recognised by its pid and start time, so a recycled pid does not
    count as the parent. Returns the started thread.

    Raises:
        psutil.NoSuchProcess: `parent_pid` is not running now.
    """
    parent = psutil.Process(parent_pid)

    def watch() -> None:
        while not server.should_exit:
            if not parent.is_running():
                print(f"parent process {parent_pid} has ended: stopping", flush=True)
                server.should_exit = True
                return
            threading.Event().wait(PARENT_POLL_S)

    thread = threading.Thread(target=watch, name="exit-with-parent", daemon=True)
    thread.start()
    return thread


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
    parser.add_argument(
        "--exit-with-parent",
        type=int,
        metavar="PID",
        default=None,
        help="stop when process PID ends (run.py passes its own pid; needs --workers 1)",
    )
    args = parser.parse_args(argv)
    if args.engine:
        # Through the environment, so that every worker process sees it.
        os.environ["REFERENCE_SERVICE_ENGINE"] = args.engine

    if args.workers > 1:
        if args.exit_with_parent is not None:
            parser.error("--exit-with-parent needs --workers 1")
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
    server = _Server(config)
    if args.exit_with_parent is not None:
        try:
            exit_with_parent(server, args.exit_with_parent)
        except psutil.NoSuchProcess:
            parser.error(f"--exit-with-parent: no process {args.exit_with_parent} is running")
    server.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
