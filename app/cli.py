"""`aoi-agent`: serve the API, run queue workers, upload files or folders to a running agent
as batches, manage API keys and the file storage.

Made to be scripted (docs/cli.md has the details):

- results go to stdout, one per line, never wrapped, styled or coloured when stdout is
  not a terminal (ids and paths stay whole on one line); progress bars only on a
  terminal, on stderr;
- `--json` on every command that prints results: one JSON document on stdout (`watch`:
  JSON lines, one object per event);
- every error an operator can fix (an invalid setting, a database or store that is not
  there, a refused key...) is one `error: ...` line on stderr and exit status 1;
- exit status: 0 everything done; 1 an error, or any file skipped, refused, failed or
  unfinished; 2 bad arguments (usage).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import httpx2
import typer
from rich.console import Console, ConsoleDimensions
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from typer.core import TyperGroup

if TYPE_CHECKING:
    from app.services.ingestion.watcher import FolderEvent

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp"}
NOT_AN_IMAGE = "not a JPEG, PNG, TIFF or BMP file (by its name)"
LINK_IN_FOLDER = "a link: links found in folders are not followed (name the file itself)"
# Width when not writing to a terminal: wide enough that no id, path or table row wraps.
UNWRAPPED_WIDTH = 10_000

ApiKeyOption = Annotated[
    str | None,
    typer.Option(
        envvar="AOI_API_KEY",
        help="A write key, when the agent requires keys (or set AOI_API_KEY).",
        show_default=False,
    ),
]
"""`--api-key` of the commands that talk to a running agent over HTTP."""

JsonOption = Annotated[
    bool, typer.Option("--json", help="Print the results as JSON on stdout (see docs/cli.md).")
]
"""`--json` of every command that prints results."""


class ScriptConsole(Console):
    """A rich Console that writes to a pipe or a file as a script wants it: no wrapping at
    any width (ids and paths stay on one line). Colour follows rich's own detection (none
    when not a terminal); give text with `markup=False` so `[...]` in names is kept."""

    @property
    def size(self) -> ConsoleDimensions:
        """The terminal's size; when not writing to a terminal, `UNWRAPPED_WIDTH` wide."""
        if self.is_terminal:
            return super().size
        return ConsoleDimensions(UNWRAPPED_WIDTH, 25)

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        self._width, self._height = new_size


console = ScriptConsole(soft_wrap=True, markup=False, highlight=False, emoji=False)
"""Results (stdout)."""
err_console = ScriptConsole(stderr=True, soft_wrap=True, markup=False, highlight=False, emoji=False)
"""`error:` lines, warnings and progress (stderr)."""


class CliError(Exception):
    """A problem the command itself found (an unknown key, a busy store...); printed as one
    `error:` line, exit status 1."""


def error_text(exc: BaseException) -> str | None:
    """The `error:` line's message for `exc` (the one formatting shared with `run.py`,
    `app.launcher.error_message`), or None when `exc` is a bug and must propagate."""
    if isinstance(exc, CliError):
        return str(exc)
    from app.launcher import error_message

    return error_message(exc)


class AgentCommands(TyperGroup):
    """The root command group: every sub-command runs inside `invoke`, so an invalid
    setting, a start-up problem (`StartupError`), a domain error (`AgentError`), a file
    system error or a `CliError` becomes one `error: ...` line on stderr and exit status 1,
    never a traceback."""

    def invoke(self, ctx: Any) -> Any:  # typer vendors click: its Context is private
        """Run the command; see the class."""
        try:
            return super().invoke(ctx)
        except Exception as exc:
            message = error_text(exc)
            if message is None:
                raise
            err_console.print(f"error: {message}", markup=False)
            raise typer.Exit(1) from exc


cli = typer.Typer(
    cls=AgentCommands,
    add_completion=False,
    help="AOI Inference Agent command line. Exit status: 0 all done; 1 an error (one `error:`"
    " line on stderr), or a file skipped, refused, failed or unfinished; 2 bad arguments."
    " `--json` on a command prints its results as JSON (docs/cli.md).",
)


def _show_version(value: bool) -> None:
    if value:
        from app.utils.version import installed_version

        typer.echo(f"aoi-agent {installed_version()}")
        raise typer.Exit()


@cli.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_show_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Options of `aoi-agent` itself (before the command)."""


def print_json(document: Any) -> None:
    """Write `document` as one line of JSON on stdout (datetimes as ISO 8601 text)."""
    typer.echo(json.dumps(document, default=_json_default))


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


@dataclass
class Selection:
    """What `upload` will send: image files, and every file it leaves out, with why."""

    images: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    """Every file named or found in a folder that is not sent, with the reason: not an
    image by its name, a link inside a folder, unreadable."""


def collect_images(paths: list[Path]) -> Selection:
    """Image files among `paths`, folders searched recursively, in name order, no repeats;
    every other file named or found is in `skipped` with the reason. Links found inside
    folders are not followed (a file named on the command line is taken as named).

    Raises:
        typer.BadParameter: a path does not exist.
    """
    from app.services.ingestion.folder import readable_now

    found: dict[Path, None] = {}
    skipped: dict[Path, tuple[Path, str]] = {}  # by absolute path: each file named once
    for path in paths:
        if not path.exists():
            raise typer.BadParameter(f"{path} does not exist")
        for candidate, linked in _walk(path) if path.is_dir() else [(path, False)]:
            readable: tuple[bool, str | None] = (True, None)
            if linked:
                why = LINK_IN_FOLDER
            elif candidate.suffix.lower() not in IMAGE_SUFFIXES:
                why = NOT_AN_IMAGE
            elif not (readable := readable_now(candidate))[0]:
                why = readable[1] or "cannot be read now (another program holds it open)"
            else:
                found[candidate.resolve()] = None
                continue
            skipped.setdefault(candidate.absolute(), (candidate, why))
    return Selection(images=list(found), skipped=list(skipped.values()))


def _walk(folder: Path) -> Iterator[tuple[Path, bool]]:
    """(file, is a link) for every file and every link under `folder`, in name order,
    never entering a linked folder (nor a Windows junction)."""
    from app.services.ingestion.folder import is_link

    for here, dirs, files in os.walk(folder):  # os.walk does not enter symbolic links
        base = Path(here)
        linked = [d for d in dirs if is_link(base / d)]
        dirs[:] = sorted(d for d in dirs if d not in linked)
        for name in sorted([*files, *linked]):
            yield base / name, name in linked or is_link(base / name)


def _chunks(items: list[Path], size: int) -> Iterator[list[Path]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _error_text(response: httpx2.Response) -> str:
    try:
        body: Any = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    return str(body.get("detail", body)) if isinstance(body, dict) else str(body)


def _context_option(what: str) -> Any:
    return typer.Option(help=f"Board context of every image: {what} (docs/boards.md).")


def board_manifests(
    images: list[Path], options: dict[str, Any], manifest: Path | None
) -> dict[Path, dict[str, Any]]:
    """Each image's board context for the batch `manifest` field: the context options for
    every image, overridden field by field by the `--manifest` file (JSON, as the batch
    manifest: one context, or file name → context).

    Returns:
        The images that have a context, with it as JSON-ready fields.

    Raises:
        typer.BadParameter: an option or the manifest is out of bounds, not JSON, or names
            a file that is not among the images.
    """
    from app.models.context import ContextError, contexts_from_manifest

    try:
        shared = contexts_from_manifest(
            json.dumps({k: v for k, v in options.items() if v is not None}), ["*"]
        )[0]
        per_file = (
            contexts_from_manifest(manifest.read_bytes(), [p.name for p in images])
            if manifest is not None
            else [None] * len(images)
        )
    except ContextError as exc:
        raise typer.BadParameter(str(exc)) from exc
    except OSError as exc:
        raise typer.BadParameter(f"cannot read the manifest: {exc}") from exc
    base = shared.model_dump(exclude_none=True) if shared else {}
    out: dict[Path, dict[str, Any]] = {}
    for path, own in zip(images, per_file, strict=True):
        merged = {**base, **(own.model_dump(exclude_none=True) if own else {})}
        if merged:
            out[path] = merged
    return out


@cli.command()
def upload(
    paths: Annotated[list[Path], typer.Argument(help="Image files or folders.")],
    url: Annotated[str, typer.Option(help="The agent's base URL.")] = "http://127.0.0.1:8000",
    batch_size: Annotated[int, typer.Option(min=1, help="Images per batch request.")] = 100,
    timeout_s: Annotated[float, typer.Option(help="Give up waiting after this long.")] = 3600,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
    board_serial: Annotated[str | None, _context_option("the board serial")] = None,
    panel_id: Annotated[str | None, _context_option("the panel id")] = None,
    panel_position: Annotated[int | None, _context_option("the position on the panel")] = None,
    product: Annotated[str | None, _context_option("the product / recipe")] = None,
    recipe_revision: Annotated[str | None, _context_option("the recipe revision")] = None,
    line: Annotated[str | None, _context_option("the line")] = None,
    station: Annotated[str | None, _context_option("the station")] = None,
    lane: Annotated[int | None, _context_option("the station's conveyor lane, from 1")] = None,
    side: Annotated[str | None, _context_option("top or bottom")] = None,
    lot: Annotated[str | None, _context_option("the lot / work order")] = None,
    manifest: Annotated[
        Path | None,
        typer.Option(
            help="A JSON file of board context: one context, or file name → context; its"
            " values override the options above (docs/boards.md)."
        ),
    ] = None,
) -> None:
    """Upload images as batches and follow their progress until every image is done.

    Prints every file it skipped and why (named or found in a folder), each batch's id and
    ZIP link. Exit status: 0 when every file was inspected; 1 when any file was skipped or
    refused, any inspection failed or was unfinished at --timeout-s, or the agent could not
    be reached; 2 for bad arguments or no image at all.
    """
    selection = collect_images(paths)
    skipped = [{"file": str(path), "reason": why} for path, why in selection.skipped]
    report: dict[str, Any] = {
        "batches": [],
        "counts": {"succeeded": 0, "failed": 0, "unfinished": 0, "skipped": 0},
        "skipped": skipped,
        "failed": [],
        "defects_by_class": {},
    }
    if not as_json:
        for item in skipped:
            console.print(f"skipped {item['file']}: {item['reason']}")
    images = selection.images
    contexts = board_manifests(
        images,
        {
            "board_serial": board_serial,
            "panel_id": panel_id,
            "panel_position": panel_position,
            "product": product,
            "recipe_revision": recipe_revision,
            "line": line,
            "station": station,
            "lane": lane,
            "side": side,
            "lot": lot,
        },
        manifest,
    )
    if not images:
        report["counts"]["skipped"] = len(skipped)
        if as_json:
            print_json(report)
        err_console.print("error: no JPEG, PNG, TIFF or BMP files found")
        raise typer.Exit(2)
    headers = {"X-API-Key": api_key} if api_key else {}
    with httpx2.Client(base_url=url.rstrip("/"), timeout=300, headers=headers) as client:
        for chunk in _chunks(images, batch_size):
            with contextlib.ExitStack() as stack:
                files = [("images", (p.name, stack.enter_context(p.open("rb")))) for p in chunk]
                chunk_manifest = {p.name: contexts[p] for p in chunk if p in contexts}
                data = {"manifest": json.dumps(chunk_manifest)} if chunk_manifest else None
                try:
                    response = client.post("/api/upload/batch", files=files, data=data)
                except httpx2.HTTPError as exc:
                    raise CliError(f"cannot reach the agent at {url}: {exc}") from exc
            if response.status_code >= 400:
                err_console.print(f"batch refused: {_error_text(response)}")
                refused = _rejected_files(response) or [
                    {"filename": p.name, "detail": "refused with the batch"} for p in chunk
                ]
                new = [_refused(chunk, item) for item in refused]
            else:
                body = response.json()
                report["batches"].append(
                    {
                        "batch_id": body["batch_id"],
                        "zip_url": body["zip_url"],
                        "accepted": len(body["accepted"]),
                        "rejected": len(body["rejected"]),
                    }
                )
                if not as_json:
                    console.print(
                        f"batch {body['batch_id']}: {len(body['accepted'])} image(s) accepted,"
                        f" {len(body['rejected'])} rejected"
                    )
                new = [_refused(chunk, item) for item in body["rejected"]]
            skipped.extend(new)
            if not as_json:
                for item in new:
                    console.print(f"skipped {item['file']}: {item['reason']}")
        batch_ids = [b["batch_id"] for b in report["batches"]]
        if batch_ids:
            _follow(client, batch_ids, timeout_s, report)
    counts = report["counts"]
    counts["skipped"] = len(skipped)
    if as_json:
        print_json(report)
    else:
        for item in report["failed"]:
            console.print(f"failed {item['file']}: {item['error']}")
        console.print(
            f"done: {counts['succeeded']} succeeded, {counts['failed']} failed,"
            f" {counts['unfinished']} unfinished, {counts['skipped']} skipped;"
            f" batches: {', '.join(batch_ids) or 'none'}"
        )
        for name, count in report["defects_by_class"].items():
            console.print(f"  {name}: {count}")
        for batch in report["batches"]:
            console.print(f"ZIP of {batch['batch_id']}: {batch['zip_url']}")
    raise typer.Exit(outcome_status(counts))


def outcome_status(counts: dict[str, int]) -> int:
    """The exit status of `upload` and `watch --once` for the same outcome: 0 when no
    file was skipped, refused, failed or left unfinished, else 1."""
    return 1 if any(counts.get(k, 0) for k in ("failed", "unfinished", "skipped")) else 0


def _refused(chunk: list[Path], item: dict[str, str]) -> dict[str, str]:
    """A file the agent refused, named by its path when its name is unique in the batch."""
    matches = [p for p in chunk if p.name == item["filename"]]
    name = str(matches[0]) if len(matches) == 1 else item["filename"]
    return {"file": name, "reason": item["detail"]}


def _rejected_files(response: httpx2.Response) -> list[dict[str, str]]:
    try:
        body: Any = response.json()
    except ValueError:
        return []
    rejected = body.get("rejected") if isinstance(body, dict) else None
    return list(rejected) if isinstance(rejected, list) else []


def _follow(
    client: httpx2.Client, batch_ids: list[str], timeout_s: float, report: dict[str, Any]
) -> None:
    """Wait for the batches (a progress bar on a terminal's stderr); fill `report`'s
    counts, failed files and defects by class."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    deadline = time.monotonic() + timeout_s
    with Progress(
        *columns, console=err_console, disable=not err_console.is_terminal, transient=True
    ) as progress:
        task = progress.add_task("inspecting", total=None)
        while True:
            statuses = [client.get(f"/api/batches/{b}").json() for b in batch_ids]
            total = sum(s["total"] for s in statuses)
            finished = sum(s["succeeded"] + s["failed"] for s in statuses)
            progress.update(task, total=total, completed=finished)
            if all(s["done"] for s in statuses) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    defects: dict[str, int] = {}
    for status in statuses:
        for item in status["items"]:
            if item["status"] == "failed":
                report["failed"].append(
                    {
                        "file": item["filename"],
                        "img_unique_id": item["img_unique_id"],
                        "error": item["error"],
                    }
                )
        for name, count in status["defects_by_class"].items():
            defects[name] = defects.get(name, 0) + count
    report["defects_by_class"] = dict(sorted(defects.items(), key=lambda kv: -kv[1]))
    report["counts"].update(
        succeeded=sum(s["succeeded"] for s in statuses),
        failed=sum(s["failed"] for s in statuses),
        unfinished=sum(s["pending"] for s in statuses),
    )


def _name_pattern(text: str | None) -> re.Pattern[str] | None:
    """WATCH_NAME_PATTERN / --name-pattern compiled and checked as the agent checks it
    (an empty value: none).

    Raises:
        typer.BadParameter: not a regular expression, no named group, or a group that is
            not a context field.
    """
    from app.models.context import check_name_pattern

    if text is None or not text.strip():
        return None
    try:
        return check_name_pattern(re.compile(text))
    except (re.error, ValueError) as exc:
        raise typer.BadParameter(f"WATCH_NAME_PATTERN {exc}", param_hint="--name-pattern") from None


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
    name_pattern: Annotated[
        str | None,
        typer.Option(
            envvar="WATCH_NAME_PATTERN",
            help="Board context from file names: a regular expression whose named groups"
            " are context fields, e.g. '^(?P<board_serial>SN[0-9]+)_(?P<side>top|bottom)'"
            " (or set WATCH_NAME_PATTERN); docs/boards.md.",
            show_default=False,
        ),
    ] = None,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Send every complete image file that appears in FOLDERS to the agent, as batches, and
    move it to processed/YYYYMMDD/ or failed/ (with the reason) when its inspection ends.
    Bytes the agent already inspected are not inspected again; links are never followed
    (left in place, with a note in failed/). Prints one line per batch and per file moved
    or left (`--json`: one JSON object per line). With --once the exit status is upload's
    for the same outcome: 1 when any file failed or was left in place. See
    docs/ingestion.md."""
    from app.services.ingestion.remote import HttpSubmitter
    from app.services.ingestion.watcher import HotFolder, WatchOptions

    for folder in folders:
        if not folder.is_dir():
            raise typer.BadParameter(f"{folder} is not a folder")
    pattern = _name_pattern(name_pattern)
    options = WatchOptions(
        settle_s=settle_s,
        batch_window_s=batch_window_s,
        max_batch=batch_size,
        polling=polling,
        tick_s=min(0.5, settle_s / 2),
    )
    counts = {"processed": 0, "failed": 0, "skipped": 0}
    stop = asyncio.Event()
    unreachable: list[str] = []

    def report(event: FolderEvent) -> None:
        if event.kind in counts:
            counts[event.kind] += 1
        if once and event.kind == "waiting":  # as `upload`: give up, the files stay
            unreachable.append(event.reason or "")
            stop.set()
            return
        if as_json:
            print_json(event.as_json())
        else:
            console.print(event.text())

    async def run() -> None:
        headers = {"X-API-Key": api_key} if api_key else {}
        async with httpx2.AsyncClient(
            base_url=url.rstrip("/"), timeout=300, headers=headers
        ) as client:
            submitter = HttpSubmitter(client, pattern)
            watchers = [
                HotFolder(folder.resolve(), submitter, options, report=report) for folder in folders
            ]
            await asyncio.gather(*(w.run(stop, once=once) for w in watchers))

    err_console.print(
        f"watching {', '.join(str(f) for f in folders)} for {url}"
        + ("" if once else "; Ctrl-C stops")
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())
    if unreachable:
        raise CliError(f"{unreachable[0]}; the files stay where they are, run again")
    if once:
        if as_json:
            print_json({"event": "done", **counts})
        else:
            console.print(
                f"done: {counts['processed']} processed, {counts['failed']} failed,"
                f" {counts['skipped']} left in place"
            )
        raise typer.Exit(outcome_status(counts))


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
    from app.launcher import prepared, stop_on_signals, use_selector_event_loop_on_windows
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

    stop_on_signals()
    with prepared(settings) as ready:
        err_console.print(
            f"worker on {', '.join(ready.model_service_urls)}; Ctrl-C or SIGTERM stops it"
        )
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve(ready))


@cli.command()
def retention(
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="Only report what would be deleted (RETENTION_DRY_RUN too)."
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Delete the inspections past RETENTION_DAYS_PASS / RETENTION_DAYS_DEFECT now, files
    and rows (what the periodic job does); see docs/retention.md."""
    from app.config import Settings
    from app.launcher import prepared_database, use_selector_event_loop_on_windows
    from app.services.database.session import create_engine, create_session_factory
    from app.services.retention.repository import Kind
    from app.services.retention.service import RetentionReport, RetentionService
    from app.services.storage import open_storage

    use_selector_event_loop_on_windows()
    settings = Settings()
    if not settings.retention_enabled:
        if as_json:
            print_json({"enabled": False})
            return
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

    with prepared_database(settings) as database_url:
        report = asyncio.run(run(database_url))
    kinds: list[tuple[Kind, datetime | None]] = [
        ("pass", report.pass_before),
        ("defect", report.defect_before),
        ("failed", report.defect_before),
    ]
    if as_json:
        print_json(
            {
                "enabled": True,
                "dry_run": report.dry_run,
                "kinds": {
                    kind: {
                        "accepted_before": before,
                        "count": report.counts[kind] if before else 0,
                        "examples": report.examples[kind] if before else [],
                    }
                    for kind, before in kinds
                },
                "file_errors": report.file_errors,
            }
        )
        return
    verb = "would delete" if report.dry_run else "deleted"
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
        err_console.print(
            f"warning: {report.file_errors} inspections' files could not be removed; the"
            " orphan-file sweep of the running agent removes them"
        )


def main() -> None:
    """Console-script entry point."""
    cli()


keys_cli = typer.Typer(
    help="API keys, in the agent's database (DATABASE_URL or the embedded one under DATA_DIR);"
    " works whether or not the agent is running."
)
cli.add_typer(keys_cli, name="keys")


def _in_database(action: Any) -> Any:
    """Run `action(session, settings)` in one committed transaction on the agent's database
    (DATABASE_URL, or the embedded one under DATA_DIR, started for the call).

    Raises:
        StartupError: the database would not start, connect or migrate.
        AgentError: what `action` raises (the transaction is rolled back).
    """
    from app.config import Settings
    from app.launcher import prepared_database, use_selector_event_loop_on_windows
    from app.services.database.session import (
        create_engine,
        create_session_factory,
        unit_of_work,
    )

    use_selector_event_loop_on_windows()
    settings = Settings()

    async def run(database_url: str) -> Any:
        engine = create_engine(settings.model_copy(update={"db_pool_min_size": 1}), database_url)
        try:
            async with unit_of_work(create_session_factory(engine)) as session:
                return await action(session, settings)
        finally:
            await engine.dispose()

    with prepared_database(settings) as database_url:
        return asyncio.run(run(database_url))


def _with_keys(action: Any) -> Any:
    """Run `action(KeyService)` in one committed transaction (`_in_database`)."""
    from app.services.security.keys import KeyService
    from app.services.security.repository import ApiKeyRepository

    return _in_database(lambda session, _settings: action(KeyService(ApiKeyRepository(session))))


def _key_json(row: Any) -> dict[str, Any]:
    return {
        "name": row.name,
        "prefix": row.prefix,
        "scope": row.scope,
        "created_at": row.created_at,
        "last_used_at": row.last_used_at,
        "revoked_at": row.revoked_at,
    }


@keys_cli.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="Who or what uses the key, e.g. line-3.")],
    scope: Annotated[
        str, typer.Option(help="read (queries, downloads), write (+ uploads), admin (+ all).")
    ] = "read",
    as_json: JsonOption = False,
) -> None:
    """Create a key. The key is printed alone on the last line, once: store it now
    (`--json`: {"name", "scope", "prefix", "key"})."""
    from app.services.security.keys import KeyService, Scope

    if scope not in {s.value for s in Scope}:
        raise typer.BadParameter("use read, write or admin", param_hint="--scope")

    async def create(keys: KeyService) -> tuple[str, str]:
        row, key = await keys.create(name, Scope(scope))
        return row.prefix, key

    prefix, key = _with_keys(create)
    if as_json:
        print_json({"name": name, "scope": scope, "prefix": prefix, "key": key})
        return
    console.print(
        f"created key {name!r} (scope {scope}, prefix {prefix}); it is shown only now, store"
        " it safely. Send it as 'Authorization: Bearer <key>' or 'X-API-Key: <key>':"
    )
    typer.echo(key)


@keys_cli.command("list")
def keys_list(as_json: JsonOption = False) -> None:
    """List keys: name, prefix, scope, created, last used, revoked (never the keys);
    `--json`: {"keys": [{"name", "prefix", "scope", "created_at", "last_used_at",
    "revoked_at"}]}, times in ISO 8601 or null."""
    from rich.table import Table

    from app.services.security.keys import KeyService

    async def rows(keys: KeyService) -> list[Any]:
        return await keys.list()

    found = _with_keys(rows)
    if as_json:
        print_json({"keys": [_key_json(row) for row in found]})
        return

    def when(value: Any) -> str:
        return value.strftime("%Y-%m-%d %H:%M") if value else "-"

    table = Table("name", "prefix", "scope", "created", "last used", "revoked")
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
def keys_revoke(
    name: Annotated[str, typer.Argument(help="The key's name.")], as_json: JsonOption = False
) -> None:
    """Revoke a key now: requests with it are refused from then on. An unknown or already
    revoked key is an error (exit status 1), so a script knows nothing changed. Its web
    sessions end with it."""
    from app.services.security.keys import KeyService

    async def revoke(keys: KeyService) -> Any:
        earlier = next((row for row in await keys.list() if row.name == name), None)
        if earlier is not None and earlier.revoked_at is not None:
            raise CliError(
                f"key {name!r} was already revoked on {earlier.revoked_at:%Y-%m-%d %H:%M}"
                " UTC; nothing changed"
            )
        return await keys.revoke(name)

    row = _with_keys(revoke)
    if as_json:
        print_json(_key_json(row))
        return
    console.print(f"revoked key {name!r}; its web sessions are ended too")


webhooks_cli = typer.Typer(
    help="Signed webhook endpoints (docs/webhooks.md), in the agent's database; works whether"
    " or not the agent is running (a running agent delivers to a new endpoint at once)."
)
cli.add_typer(webhooks_cli, name="webhooks")


def _with_webhooks(action: Any) -> Any:
    """Run `action(WebhookService)` in one committed transaction (`_in_database`)."""
    from app.services.webhooks.repository import WebhookRepository
    from app.services.webhooks.service import WebhookService

    return _in_database(
        lambda session, settings: action(WebhookService(WebhookRepository(session), settings))
    )


@webhooks_cli.command("add")
def webhooks_add(
    url: Annotated[str, typer.Argument(help="The receiver, http:// or https://.")],
    events: Annotated[
        str,
        typer.Option(
            help="Comma-separated event types: inspection.completed, inspection.failed,"
            " batch.completed, region.verdict, image.disposition, spc.alarm."
        ),
    ],
    description: Annotated[str | None, typer.Option(help="A note for admins.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Add an endpoint. Its signing secret (`whsec_...`, Standard Webhooks) is printed alone
    on the last line, once: give it to the receiver now (`--json`: the endpoint with
    "secret")."""
    wanted = [e.strip() for e in events.split(",") if e.strip()]

    async def add(webhooks: Any) -> Any:
        return await webhooks.create(url, wanted, description)

    created = _with_webhooks(add)
    if as_json:
        print_json(created.model_dump(mode="json"))
        return
    console.print(
        f"added webhook endpoint {created.id} for {', '.join(created.events)} to {url};"
        " its signing secret is shown only now, give it to the receiver:"
    )
    typer.echo(created.secret)


@webhooks_cli.command("list")
def webhooks_list(as_json: JsonOption = False) -> None:
    """List endpoints: id, URL, events, deliveries pending / delivered / parked (never the
    secrets); `--json`: {"endpoints": [...]} as GET /api/webhooks answers."""
    from rich.table import Table

    async def rows(webhooks: Any) -> Any:
        return await webhooks.endpoints()

    found = _with_webhooks(rows)
    if as_json:
        print_json({"endpoints": [e.model_dump(mode="json") for e in found]})
        return
    table = Table("id", "url", "events", "pending", "delivered", "parked", "created")
    for e in found:
        table.add_row(
            str(e.id),
            e.url,
            ", ".join(e.events),
            str(e.pending),
            str(e.delivered),
            str(e.parked),
            e.created_at.strftime("%Y-%m-%d %H:%M"),
        )
    if found:
        console.print(table)
    else:
        console.print("no webhook endpoints yet: `aoi-agent webhooks add URL --events ...`")


@webhooks_cli.command("rotate")
def webhooks_rotate(
    endpoint_id: Annotated[int, typer.Argument(help="The endpoint's id (`webhooks list`).")],
    as_json: JsonOption = False,
) -> None:
    """Give an endpoint a new signing secret, printed alone on the last line, once. For
    WEBHOOK_SECRET_OVERLAP_S (default 24 h) deliveries are signed with the old and the
    new secret, so the receiver can switch in that window. An unknown id is an error
    (exit status 1); `--json`: the endpoint with "secret" and "previous_secret_until"."""

    async def rotate(webhooks: Any) -> Any:
        return await webhooks.rotate_secret(endpoint_id)

    rotated = _with_webhooks(rotate)
    if as_json:
        print_json(rotated.model_dump(mode="json"))
        return
    until = rotated.previous_secret_until
    console.print(
        f"new signing secret for webhook endpoint {rotated.id} ({rotated.url});"
        + (
            f" deliveries are signed with the old one too until {until.isoformat()},"
            if until
            else " the old one no longer signs (WEBHOOK_SECRET_OVERLAP_S is 0),"
        )
        + " give the new one to the receiver:"
    )
    typer.echo(rotated.secret)


@webhooks_cli.command("remove")
def webhooks_remove(
    endpoint_id: Annotated[int, typer.Argument(help="The endpoint's id (`webhooks list`).")],
    as_json: JsonOption = False,
) -> None:
    """Remove an endpoint with its deliveries; an unknown id is an error (exit status 1)."""

    async def remove(webhooks: Any) -> Any:
        return await webhooks.remove(endpoint_id)

    removed = _with_webhooks(remove)
    if as_json:
        print_json(removed.model_dump(mode="json"))
        return
    console.print(f"removed webhook endpoint {removed.id} ({removed.url})")


storage_cli = typer.Typer(help="The agent's file storage (STORAGE_URL; docs/storage.md).")
cli.add_typer(storage_cli, name="storage")


def _storage_failed(exc: Exception, hint: str) -> Exception:
    """`exc` as a `CliError` with `hint` after its message, or `exc` itself when it is a
    bug (no operator message)."""
    message = error_text(exc)
    return exc if message is None else CliError(f"{message}; {hint}")


@storage_cli.command("migrate")
def storage_migrate(
    to: Annotated[str, typer.Option(help="The object store: s3://bucket/prefix.")],
    concurrency: Annotated[int, typer.Option(min=1, max=128, help="Objects at once.")] = 16,
    dry_run: Annotated[bool, typer.Option(help="Count what would be copied only.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Copy the local store (DATA_DIR, or the folder STORAGE_URL names) to an object store,
    under the same keys; nothing else is changed. Objects already there are skipped, so it
    can run again. Then set STORAGE_URL to the same s3:// URL on every agent and worker.
    Progress goes to stderr; `--json`: {"dry_run", "copied", "skipped", "bytes_copied",
    "source", "target"}."""
    from app.config import Settings
    from app.errors import StorageMisconfigured
    from app.services.storage import LocalStorage, open_storage
    from app.services.storage.migrate import MigrationReport, copy_store

    settings = Settings()
    if not to.startswith("s3://"):
        raise typer.BadParameter("give the object store as s3://bucket/prefix", param_hint="--to")
    source = open_storage(settings)
    if not isinstance(source, LocalStorage):
        raise CliError(f"STORAGE_URL is already an object store ({source.location})")
    target = open_storage(settings, to)

    def show(report: MigrationReport) -> None:
        done = report.copied + report.skipped
        if done % 500 == 0:
            err_console.print(
                f"{done} objects: {report.copied} copied, {report.skipped} already there"
            )

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
    except StorageMisconfigured as exc:
        raise CliError(exc.detail) from exc
    except Exception as exc:
        raise _storage_failed(exc, "what was copied stays, run again to go on") from exc
    if as_json:
        print_json(
            {
                "dry_run": dry_run,
                "copied": report.copied,
                "skipped": report.skipped,
                "bytes_copied": report.bytes_copied,
                "source": source.location,
                "target": target.location,
            }
        )
        return
    verb = "would copy" if dry_run else "copied"
    console.print(
        f"{verb} {report.copied} objects ({report.bytes_copied / 2**20:.1f} MB) from"
        f" {source.location} to {target.location}; {report.skipped} were already there"
    )


@storage_cli.command("sweep")
def storage_sweep(as_json: JsonOption = False) -> None:
    """Remove now the inputs, result folders and shadow/replay answer folders no row
    names (older than ORPHAN_FILE_GRACE_S), listing the whole store: what the agents'
    periodic sweep does, which lists only recent day folders between its daily full
    listings. An error (exit
    status 1) when an agent is sweeping at this moment (run it again a little later).
    `--json`: {"store", "removed_inputs", "removed_result_folders",
    "removed_answer_folders", "grace_s"}."""
    from app.config import Settings
    from app.launcher import prepared_database, use_selector_event_loop_on_windows
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

    with prepared_database(settings) as database_url:
        try:
            outcome = asyncio.run(run(database_url))
        except Exception as exc:
            raise _storage_failed(exc, "what was removed stays removed, run it again") from exc
    if outcome.state == "busy":
        raise CliError(
            "an agent is sweeping the store right now; run this again when it is done (it"
            " logs `removed orphaned files` when it removes some)"
        )
    if as_json:
        print_json(
            {
                "store": storage.location,
                "removed_inputs": outcome.removed["inputs"],
                "removed_result_folders": outcome.removed["result_folders"],
                "removed_answer_folders": outcome.removed["answer_folders"],
                "grace_s": settings.orphan_file_grace_s,
            }
        )
        return
    console.print(
        f"listed {storage.location}: removed {outcome.removed['inputs']} inputs,"
        f" {outcome.removed['result_folders']} result folders and"
        f" {outcome.removed['answer_folders']} answer folders no row names (older than"
        f" {settings.orphan_file_grace_s:g} s)"
    )


def _day_option(what: str) -> Any:
    return typer.Option(help=f"{what} UTC day, inclusive (YYYY-MM-DD).", show_default=False)


@cli.command()
def replay(
    model_url: Annotated[
        str | None,
        typer.Option(help="The model service to replay through (http://...).", show_default=False),
    ] = None,
    batch: Annotated[
        str | None, typer.Option(help="Only the stored inputs of this batch.", show_default=False)
    ] = None,
    start_date: Annotated[datetime | None, _day_option("First")] = None,
    end_date: Annotated[datetime | None, _day_option("Last")] = None,
    product: Annotated[
        str | None,
        typer.Option(help="Only boards of this product (board context).", show_default=False),
    ] = None,
    resume: Annotated[
        int | None,
        typer.Option(
            min=1, help="Go on with this replay run (after a kill or failures).", show_default=False
        ),
    ] = None,
    concurrency: Annotated[int, typer.Option(min=1, max=64, help="Inputs at once.")] = 2,
    as_json: JsonOption = False,
) -> None:
    """Re-run stored inputs through another model service (docs/replay.md): every stored
    result of the batch / days / product is sent to --model-url and its answer stored as a
    `replay` model answer, never changing the primary results. The run id is printed first
    (stderr); if the command is stopped or killed, `--resume RUN_ID` goes on without sending
    any image whose answer is stored again. Progress bar on a terminal (stderr). Exit status
    1 when some inputs failed (`--resume` tries them again). `--json`: {"run_id", "total",
    "done", "failed"}."""
    from app.config import Settings
    from app.launcher import prepared_database, use_selector_event_loop_on_windows
    from app.services.database.session import create_engine, create_session_factory
    from app.services.replay.repository import ReplayCounts
    from app.services.replay.service import ReplaySelection, ReplayService
    from app.services.storage import open_storage

    selection = ReplaySelection(
        batch,
        start_date.date() if start_date else None,
        end_date.date() if end_date else None,
        product,
    )
    if resume is None and model_url is None:
        raise typer.BadParameter(
            "give the model service to replay through", param_hint="--model-url"
        )
    if resume is None and selection.is_empty():
        raise typer.BadParameter(
            "choose the stored inputs: --batch, --start-date/--end-date and/or --product"
        )
    if resume is not None and not selection.is_empty():
        raise typer.BadParameter("a resumed run keeps its own selection", param_hint="--resume")
    use_selector_event_loop_on_windows()
    settings = Settings()
    storage = open_storage(settings)
    columns = (
        TextColumn("replaying"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[failed]} failed"),
        TimeElapsedColumn(),
    )

    async def run(database_url: str) -> tuple[int, ReplayCounts]:
        engine = create_engine(settings.model_copy(update={"db_pool_min_size": 1}), database_url)
        try:
            service = ReplayService(settings, create_session_factory(engine), storage)
            if resume is None:
                assert model_url is not None
                state = await service.create(model_url, selection)
            else:
                state = await service.resume(resume)
            run_id = state.run.run_id
            err_console.print(
                f"replay run {run_id}: {state.counts.total} stored inputs,"
                f" {state.counts.done} already done, to {state.run.model_service_url}"
            )
            with Progress(
                *columns, console=err_console, disable=not err_console.is_terminal
            ) as bar:
                task = bar.add_task("replay", total=state.counts.total, failed=0)
                bar.update(task, completed=state.counts.settled, failed=state.counts.failed)

                def show(counts: ReplayCounts) -> None:
                    bar.update(task, completed=counts.settled, failed=counts.failed)

                counts = await service.run(
                    run_id, model_url, concurrency=concurrency, progress=show
                )
            return run_id, counts
        finally:
            await storage.aclose()
            await engine.dispose()

    with prepared_database(settings) as database_url:
        try:
            run_id, counts = asyncio.run(run(database_url))
        except Exception as exc:
            message = error_text(exc)
            if message is None:
                raise
            raise CliError(message) from exc
    if as_json:
        print_json(
            {"run_id": run_id, "total": counts.total, "done": counts.done, "failed": counts.failed}
        )
    else:
        console.print(
            f"replay run {run_id}: {counts.done} of {counts.total} answered, {counts.failed} failed"
        )
    if counts.failed:
        raise typer.Exit(1)


dataset_cli = typer.Typer(help="Training sets exported from the verdicts (docs/dataset.md).")
cli.add_typer(dataset_cli, name="dataset")


@dataset_cli.command("verify")
def dataset_verify(
    zip_file: Annotated[
        Path, typer.Argument(help="A ZIP from GET /api/export/dataset.zip.", show_default=False)
    ],
    as_json: JsonOption = False,
) -> None:
    """Check every file of a dataset ZIP against its manifest.json: same SHA-256 and size,
    none missing, none extra. Offline (no agent needed). Exit status 0 when all match, 1
    otherwise (one line per problem on stderr). `--json`: {"ok", "checked", "problems",
    "format", "agent_version", "query"}."""
    from app.services.dataset.verify import verify_dataset

    try:
        check = verify_dataset(zip_file)
    except (OSError, ValueError) as exc:
        raise CliError(str(exc)) from exc
    if as_json:
        print_json(
            {
                "ok": check.ok,
                "checked": check.checked,
                "problems": check.problems,
                "format": check.manifest.get("format"),
                "agent_version": check.manifest.get("agent_version"),
                "query": check.manifest.get("query"),
            }
        )
    else:
        for problem in check.problems:
            err_console.print(f"error: {problem}")
        if check.ok:
            console.print(f"{zip_file}: all {check.checked} files match manifest.json")
    if not check.ok:
        raise typer.Exit(1)


if __name__ == "__main__":
    main()
