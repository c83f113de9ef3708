"""`aoi-agent`: serve the API, run queue workers, upload files or folders to a running agent
as batches, manage API keys and the file storage."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import httpx2
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp"}

ApiKeyOption = Annotated[
    str | None,
    typer.Option(
        envvar="AOI_API_KEY",
        help="A write key, when the agent requires keys (or set AOI_API_KEY).",
        show_default=False,
    ),
]
"""`--api-key` of the commands that talk to a running agent over HTTP."""

cli = typer.Typer(add_completion=False, help="AOI Inference Agent command line.")
console = Console()


@dataclass
class Selection:
    """What `upload` will send: image files, and what it leaves out."""

    images: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    """Files named on the command line that are not images (by extension)."""
    ignored_in_folders: int = 0
    """Other files found in the folders given (not reported one by one)."""


def collect_images(paths: list[Path]) -> Selection:
    """Image files among `paths`, folders searched recursively, in name order, no repeats.

    Raises:
        typer.BadParameter: a path does not exist.
    """
    found: dict[Path, None] = {}
    selection = Selection()
    for path in paths:
        if not path.exists():
            raise typer.BadParameter(f"{path} does not exist")
        if path.is_file() and path.suffix.lower() not in IMAGE_SUFFIXES:
            selection.skipped.append(path)
            continue
        candidates = sorted(path.rglob("*")) if path.is_dir() else [path]
        for candidate in candidates:
            if candidate.is_file() and candidate.suffix.lower() in IMAGE_SUFFIXES:
                found[candidate.resolve()] = None
            elif candidate.is_file():
                selection.ignored_in_folders += 1
    selection.images = list(found)
    return selection


def _chunks(items: list[Path], size: int) -> Iterator[list[Path]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _error_text(response: httpx2.Response) -> str:
    try:
        body: Any = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    return str(body.get("detail", body)) if isinstance(body, dict) else str(body)


@cli.command()
def upload(
    paths: Annotated[list[Path], typer.Argument(help="Image files or folders.")],
    url: Annotated[str, typer.Option(help="The agent's base URL.")] = "http://127.0.0.1:8000",
    batch_size: Annotated[int, typer.Option(min=1, help="Images per batch request.")] = 100,
    timeout_s: Annotated[float, typer.Option(help="Give up waiting after this long.")] = 3600,
    api_key: ApiKeyOption = None,
) -> None:
    """Upload images as batches and follow their progress until every image is done.

    Prints each file it skipped and why, each batch's id and ZIP link. Exit status: 0 when
    every image was inspected; 1 when any file was skipped or rejected, any inspection
    failed or was unfinished at --timeout-s, or the agent could not be reached; 2 for bad
    arguments.
    """
    selection = collect_images(paths)
    for path in selection.skipped:
        console.print(f"[yellow]skipped {path.name}: not a JPEG, PNG, TIFF or BMP file[/yellow]")
    if selection.ignored_in_folders:
        console.print(
            f"left out {selection.ignored_in_folders} other file(s) found in the folders"
            f" (not {', '.join(sorted(IMAGE_SUFFIXES))})"
        )
    images = selection.images
    if not images:
        console.print("[red]no JPEG, PNG, TIFF or BMP files found[/red]")
        raise typer.Exit(2)
    batch_ids: list[str] = []
    zip_urls: dict[str, str] = {}
    rejected = len(selection.skipped)
    headers = {"X-API-Key": api_key} if api_key else {}
    with httpx2.Client(base_url=url.rstrip("/"), timeout=300, headers=headers) as client:
        for chunk in _chunks(images, batch_size):
            with contextlib.ExitStack() as stack:
                files = [("images", (p.name, stack.enter_context(p.open("rb")))) for p in chunk]
                try:
                    response = client.post("/api/upload/batch", files=files)
                except httpx2.HTTPError as exc:
                    console.print(f"[red]cannot reach the agent at {url}: {exc}[/red]")
                    raise typer.Exit(1) from exc
            if response.status_code >= 400:
                console.print(f"[red]batch refused: {_error_text(response)}[/red]")
                refused = _rejected_files(response) or [
                    {"filename": p.name, "detail": "refused with the batch"} for p in chunk
                ]
                for item in refused:
                    rejected += 1
                    console.print(f"[yellow]skipped {item['filename']}: {item['detail']}[/yellow]")
                continue
            body = response.json()
            batch_ids.append(body["batch_id"])
            zip_urls[body["batch_id"]] = body["zip_url"]
            console.print(
                f"batch {body['batch_id']}: {len(body['accepted'])} image(s) accepted,"
                f" {len(body['rejected'])} rejected"
            )
            for item in body["rejected"]:
                rejected += 1
                console.print(f"[yellow]skipped {item['filename']}: {item['detail']}[/yellow]")
        if not batch_ids:
            raise typer.Exit(1)
        summary = _follow(client, batch_ids, timeout_s)
    console.print(
        f"done: {summary['succeeded']} succeeded, {summary['failed']} failed,"
        f" {summary['pending']} unfinished, {rejected} skipped;"
        f" batches: {', '.join(batch_ids)}"
    )
    for name, count in sorted(summary["defects"].items(), key=lambda kv: -kv[1]):
        console.print(f"  {name}: {count}")
    for batch_id in batch_ids:
        console.print(f"ZIP of {batch_id}: {zip_urls[batch_id]}", soft_wrap=True)
    raise typer.Exit(1 if summary["failed"] or summary["pending"] or rejected else 0)


def _rejected_files(response: httpx2.Response) -> list[dict[str, str]]:
    try:
        body: Any = response.json()
    except ValueError:
        return []
    rejected = body.get("rejected") if isinstance(body, dict) else None
    return list(rejected) if isinstance(rejected, list) else []


def _follow(client: httpx2.Client, batch_ids: list[str], timeout_s: float) -> dict[str, Any]:
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    deadline = time.monotonic() + timeout_s
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("inspecting", total=None)
        while True:
            statuses = [client.get(f"/api/batches/{b}").json() for b in batch_ids]
            total = sum(s["total"] for s in statuses)
            finished = sum(s["succeeded"] + s["failed"] for s in statuses)
            progress.update(task, total=total, completed=finished)
            if all(s["done"] for s in statuses) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    for status in statuses:
        for item in status["items"]:
            if item["status"] == "failed":
                console.print(f"[red]failed {item['filename']}: {item['error']}[/red]")
    defects: dict[str, int] = {}
    for status in statuses:
        for name, count in status["defects_by_class"].items():
            defects[name] = defects.get(name, 0) + count
    return {
        "succeeded": sum(s["succeeded"] for s in statuses),
        "failed": sum(s["failed"] for s in statuses),
        "pending": sum(s["pending"] for s in statuses),
        "defects": defects,
    }


@cli.command()
def watch(
    folders: Annotated[list[Path], typer.Argument(help="Folders the AOI machine writes into.")],
    url: Annotated[str, typer.Option(help="The agent's base URL.")] = "http://127.0.0.1:8000",
    settle_s: Annotated[
        float, typer.Option(min=0.1, help="A file is taken once unchanged this long (s).")
    ] = 2.0,
    batch_window_s: Annotated[
        float, typer.Option(min=0, help="Files complete within this long form one batch (s).")
    ] = 2.0,
    polling: Annotated[
        bool, typer.Option(help="Poll the folders (network shares send no events).")
    ] = False,
    batch_size: Annotated[int, typer.Option(min=1, help="Most images per batch.")] = 100,
    once: Annotated[
        bool, typer.Option(help="Ingest what is there now, wait for it, then exit.")
    ] = False,
    api_key: ApiKeyOption = None,
) -> None:
    """Send every complete image file that appears in FOLDERS to the agent, as batches, and
    move it to processed/YYYYMMDD/ or failed/ (with the reason) when its inspection ends.
    Bytes the agent already inspected are not inspected again. See docs/ingestion.md."""
    from app.services.ingestion.remote import HttpSubmitter
    from app.services.ingestion.watcher import HotFolder, WatchOptions

    for folder in folders:
        if not folder.is_dir():
            raise typer.BadParameter(f"{folder} is not a folder")
    options = WatchOptions(
        settle_s=settle_s,
        batch_window_s=batch_window_s,
        max_batch=batch_size,
        polling=polling,
        tick_s=min(0.5, settle_s / 2),
    )

    async def run() -> None:
        stop = asyncio.Event()
        headers = {"X-API-Key": api_key} if api_key else {}
        async with httpx2.AsyncClient(
            base_url=url.rstrip("/"), timeout=300, headers=headers
        ) as client:
            submitter = HttpSubmitter(client)
            watchers = [
                HotFolder(folder.resolve(), submitter, options, report=console.print)
                for folder in folders
            ]
            await asyncio.gather(*(w.run(stop, once=once) for w in watchers))

    console.print(
        f"watching {', '.join(str(f) for f in folders)} for {url}"
        + ("" if once else "; Ctrl-C stops")
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


@cli.command()
def serve(
    workers: Annotated[
        int | None,
        typer.Option(min=1, max=64, help="API worker processes (default WEB_CONCURRENCY, 1)."),
    ] = None,
) -> None:
    """Serve the API with the agent's settings (`.env`, environment), as `python run.py`
    does: starts what the settings lack (embedded PostgreSQL, reference model service),
    migrates the database, and runs a queue worker in each process unless
    RUN_WORKER_IN_PROCESS=false. Any number of agents may share one database and store."""
    from app.launcher import main as launch

    if workers is not None:
        os.environ["WEB_CONCURRENCY"] = str(workers)
    raise typer.Exit(launch())


@cli.command()
def worker(
    concurrency: Annotated[
        int | None, typer.Option(min=1, help="Images in flight (default WORKER_CONCURRENCY).")
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=65535,
            help="Serve this worker's Prometheus metrics on this port (no key checked).",
        ),
    ] = None,
    metrics_host: Annotated[
        str, typer.Option(help="The address the metrics port listens on.")
    ] = "127.0.0.1",
) -> None:
    """Run a queue worker in this process, with the agent's settings (`.env`, environment).

    A worker counts the inspections it runs; on a host of its own, `--metrics-port` lets
    Prometheus scrape them (on the API's host, a shared PROMETHEUS_MULTIPROC_DIR adds them
    to the API's `/metrics`). See docs/metrics.md."""
    from app.config import Settings
    from app.launcher import StartupError, prepared, use_selector_event_loop_on_windows
    from app.runtime import agent_runtime, run_worker
    from app.utils.logging import configure_logging

    use_selector_event_loop_on_windows()
    settings = Settings()
    configure_logging(settings.log_level, settings.resolved_log_dir)

    async def serve(ready: Settings) -> None:
        if metrics_port is not None:
            from prometheus_client import start_http_server

            start_http_server(metrics_port, addr=metrics_host)
        async with agent_runtime(ready, run_worker_in_process=False) as runtime:
            await run_worker(runtime, concurrency or ready.effective_worker_concurrency)

    try:
        with prepared(settings) as ready:
            console.print(f"worker on {', '.join(ready.model_service_urls)}; Ctrl-C stops it")
            with contextlib.suppress(KeyboardInterrupt):
                asyncio.run(serve(ready))
    except StartupError as exc:
        console.print(f"[red]error: {exc}[/red]")
        raise typer.Exit(1) from exc


@cli.command()
def retention(
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="Only report what would be deleted (RETENTION_DRY_RUN too)."
        ),
    ] = False,
) -> None:
    """Delete the inspections past RETENTION_DAYS_PASS / RETENTION_DAYS_DEFECT now, files
    and rows (what the periodic job does); see docs/retention.md."""
    from app.config import Settings
    from app.launcher import StartupError, prepared_database, use_selector_event_loop_on_windows
    from app.services.database.session import create_engine, create_session_factory
    from app.services.retention.repository import Kind
    from app.services.retention.service import RetentionReport, RetentionService
    from app.services.storage import open_storage

    use_selector_event_loop_on_windows()
    settings = Settings()
    if not settings.retention_enabled:
        console.print(
            "retention is off: neither RETENTION_DAYS_PASS nor RETENTION_DAYS_DEFECT is set,"
            " so every inspection is kept"
        )
        return

    async def run(database_url: str) -> RetentionReport:
        engine = create_engine(settings.model_copy(update={"db_pool_min_size": 1}), database_url)
        try:
            service = RetentionService(
                settings, open_storage(settings), create_session_factory(engine)
            )
            return await service.run(dry_run=dry_run or settings.retention_dry_run)
        finally:
            await engine.dispose()

    try:
        with prepared_database(settings) as database_url:
            report = asyncio.run(run(database_url))
    except StartupError as exc:
        console.print(f"[red]error: {exc}[/red]")
        raise typer.Exit(1) from exc
    verb = "would delete" if report.dry_run else "deleted"
    kinds: list[tuple[Kind, datetime | None]] = [
        ("pass", report.pass_before),
        ("defect", report.defect_before),
        ("failed", report.defect_before),
    ]
    for kind, before in kinds:
        if before is None:
            console.print(f"{kind}: kept (no retention set)")
            continue
        examples = report.examples[kind]
        shown = f" (e.g. {', '.join(examples[:5])})" if examples else ""
        console.print(
            f"{kind}: {verb} {report.counts[kind]} accepted before"
            f" {before:%Y-%m-%d %H:%M} UTC{shown}"
        )
    if report.file_errors:
        console.print(
            f"[yellow]{report.file_errors} inspections' files could not be removed; the"
            " orphan-file sweep of the running agent removes them[/yellow]"
        )


def main() -> None:
    """Console-script entry point."""
    cli()


keys_cli = typer.Typer(
    help="API keys, in the agent's database (DATABASE_URL or the embedded one under DATA_DIR);"
    " works whether or not the agent is running."
)
cli.add_typer(keys_cli, name="keys")


def _with_keys(action: Any) -> Any:
    """Run `action(KeyService)` in one committed transaction on the agent's database."""
    from app.config import Settings
    from app.launcher import StartupError, prepared_database, use_selector_event_loop_on_windows
    from app.services.database.session import (
        create_engine,
        create_session_factory,
        unit_of_work,
    )
    from app.services.security.keys import KeyService
    from app.services.security.repository import ApiKeyRepository

    use_selector_event_loop_on_windows()
    settings = Settings()

    async def run(database_url: str) -> Any:
        engine = create_engine(settings.model_copy(update={"db_pool_min_size": 1}), database_url)
        try:
            async with unit_of_work(create_session_factory(engine)) as session:
                return await action(KeyService(ApiKeyRepository(session)))
        finally:
            await engine.dispose()

    try:
        with prepared_database(settings) as database_url:
            return asyncio.run(run(database_url))
    except StartupError as exc:
        console.print(f"[red]error: {exc}[/red]")
        raise typer.Exit(1) from exc


def _agent_error_exit(exc: Exception) -> typer.Exit:
    console.print(f"[red]error: {getattr(exc, 'detail', exc)}[/red]")
    return typer.Exit(1)


@keys_cli.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="Who or what uses the key, e.g. line-3.")],
    scope: Annotated[
        str, typer.Option(help="read (queries, downloads), write (+ uploads), admin (+ all).")
    ] = "read",
) -> None:
    """Create a key. The key is printed alone on the last line, once: store it now."""
    from app.errors import AgentError
    from app.services.security.keys import KeyService, Scope

    if scope not in {s.value for s in Scope}:
        raise typer.BadParameter("use read, write or admin", param_hint="--scope")

    async def create(keys: KeyService) -> tuple[str, str]:
        row, key = await keys.create(name, Scope(scope))
        return row.prefix, key

    try:
        prefix, key = _with_keys(create)
    except AgentError as exc:
        raise _agent_error_exit(exc) from exc
    console.print(
        f"created key {name!r} (scope {scope}, prefix {prefix}); it is shown only now, store"
        " it safely. Send it as 'Authorization: Bearer <key>' or 'X-API-Key: <key>':",
        soft_wrap=True,
    )
    print(key)


@keys_cli.command("list")
def keys_list() -> None:
    """List keys: name, prefix, scope, created, last used, revoked (never the keys)."""
    from rich.table import Table

    from app.services.security.keys import KeyService

    async def rows(keys: KeyService) -> list[Any]:
        return await keys.list()

    table = Table("name", "prefix", "scope", "created", "last used", "revoked")

    def when(value: Any) -> str:
        return value.strftime("%Y-%m-%d %H:%M") if value else "-"

    found = _with_keys(rows)
    for row in found:
        table.add_row(
            row.name,
            row.prefix,
            row.scope,
            when(row.created_at),
            when(row.last_used_at),
            when(row.revoked_at),
        )
    if found:
        console.print(table)
    else:
        console.print("no API keys yet: `aoi-agent keys create --name NAME --scope admin`")


@keys_cli.command("revoke")
def keys_revoke(name: Annotated[str, typer.Argument(help="The key's name.")]) -> None:
    """Revoke a key now: requests with it, or with its web sessions, are refused from then on."""
    from app.errors import AgentError
    from app.services.security.keys import KeyService

    async def revoke(keys: KeyService) -> None:
        await keys.revoke(name)

    try:
        _with_keys(revoke)
    except AgentError as exc:
        raise _agent_error_exit(exc) from exc
    console.print(f"revoked key {name!r}; its web sessions are ended too")


storage_cli = typer.Typer(help="The agent's file storage (STORAGE_URL; docs/storage.md).")
cli.add_typer(storage_cli, name="storage")


@storage_cli.command("migrate")
def storage_migrate(
    to: Annotated[str, typer.Option(help="The object store: s3://bucket/prefix.")],
    concurrency: Annotated[int, typer.Option(min=1, max=128, help="Objects at once.")] = 16,
    dry_run: Annotated[bool, typer.Option(help="Count what would be copied only.")] = False,
) -> None:
    """Copy the local store (DATA_DIR, or the folder STORAGE_URL names) to an object store,
    under the same keys; nothing else is changed. Objects already there are skipped, so it
    can run again. Then set STORAGE_URL to the same s3:// URL on every agent and worker."""
    from app.config import Settings
    from app.errors import StorageUnavailable
    from app.services.storage import LocalStorage, open_storage
    from app.services.storage.migrate import MigrationReport, copy_store

    settings = Settings()
    if not to.startswith("s3://"):
        raise typer.BadParameter("give the object store as s3://bucket/prefix", param_hint="--to")
    source = open_storage(settings)
    if not isinstance(source, LocalStorage):
        console.print(f"[red]error: STORAGE_URL is already an object store ({source.location})")
        raise typer.Exit(1)
    target = open_storage(settings, to)

    def show(report: MigrationReport) -> None:
        done = report.copied + report.skipped
        if done % 500 == 0:
            console.print(f"{done} objects: {report.copied} copied, {report.skipped} already there")

    async def run() -> MigrationReport:
        try:
            return await copy_store(
                source, target, concurrency=concurrency, dry_run=dry_run, progress=show
            )
        finally:
            await target.aclose()
            await source.aclose()

    try:
        report = asyncio.run(run())
    except (OSError, StorageUnavailable) as exc:
        console.print(f"[red]error: {exc}; what was copied stays, run again to go on[/red]")
        raise typer.Exit(1) from exc
    verb = "would copy" if dry_run else "copied"
    console.print(
        f"{verb} {report.copied} objects ({report.bytes_copied / 2**20:.1f} MB) from"
        f" {source.location} to {target.location}; {report.skipped} were already there"
    )


@storage_cli.command("sweep")
def storage_sweep() -> None:
    """Remove now the inputs and result folders no row names (older than
    ORPHAN_FILE_GRACE_S), listing the whole store: what the agents' periodic sweep does,
    which lists only recent day folders between its daily full listings. Skipped when an
    agent is sweeping at this moment (run it again a little later)."""
    from app.config import Settings
    from app.errors import StorageUnavailable
    from app.launcher import StartupError, prepared_database, use_selector_event_loop_on_windows
    from app.services.database.session import create_engine, create_session_factory
    from app.services.inspection.orphans import OrphanFileSweep, SweepRun
    from app.services.storage import open_storage

    use_selector_event_loop_on_windows()
    settings = Settings()
    storage = open_storage(settings)

    async def run(database_url: str) -> SweepRun:
        engine = create_engine(settings.model_copy(update={"db_pool_min_size": 1}), database_url)
        try:
            sweep = OrphanFileSweep(storage, create_session_factory(engine))
            return await sweep.run_when_due(settings.orphan_file_grace_s, 0.0, full=True)
        finally:
            await storage.aclose()
            await engine.dispose()

    try:
        with prepared_database(settings) as database_url:
            outcome = asyncio.run(run(database_url))
    except StartupError as exc:
        console.print(f"[red]error: {exc}[/red]")
        raise typer.Exit(1) from exc
    except (OSError, StorageUnavailable) as exc:
        console.print(f"[red]error: {exc}; what was removed stays removed, run it again[/red]")
        raise typer.Exit(1) from exc
    if outcome.state == "busy":
        console.print(
            "[yellow]an agent is sweeping the store right now; run this again when it is"
            " done (it logs `removed orphaned files` when it removes some)[/yellow]"
        )
        raise typer.Exit(1)
    console.print(
        f"listed {storage.location}: removed {outcome.removed['inputs']} inputs"
        f" and {outcome.removed['result_folders']} result folders no row names (older than"
        f" {settings.orphan_file_grace_s:g} s)"
    )


if __name__ == "__main__":
    main()
