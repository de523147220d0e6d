"""`corpus add|list|search`: the local documents the offline agent searches."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from agent.cli.console import err, out, print_json
from agent.cli.exit_codes import ExitCode
from agent.cli.options import JsonOption
from agent.cli.running import with_runtime

if TYPE_CHECKING:
    from agent.api import Runtime
    from tools import CollectionStats, CorpusHit, IngestReport

app = typer.Typer(help="The local document corpus searched offline.", no_args_is_help=True)


@app.command("add")
def corpus_add(
    paths: Annotated[list[Path] | None, typer.Argument(help="Files or folders (Markdown, text, HTML).")] = None,
    python_docs: Annotated[bool, typer.Option("--python-docs", help="Index the Python reference.")] = False,
    collection: Annotated[str | None, typer.Option(help="Collection name; default: the folder's name.")] = None,
) -> None:
    """Index documents for offline search; re-adding a file updates it. Symbolic links are never followed:
    each one (and any special file) is reported as refused, and nothing outside the folder is read."""
    if not paths and not python_docs:
        err.print("[red]error:[/red] give files or folders to add, or --python-docs")
        raise typer.Exit(ExitCode.USAGE)
    from tools import CorpusStore, ingest_path, ingest_python_docs

    async def body(runtime: Runtime) -> list[IngestReport]:
        store = CorpusStore(runtime.pool)
        reports = []
        if python_docs:
            with index_bar("indexing the Python reference") as progress:
                reports.append(await ingest_python_docs(store, progress=progress))
        for path in paths or []:
            reports.append(await ingest_path(store, path, collection=collection))
        return reports

    reports = with_runtime(body)
    failed = False
    for report in reports:
        refused = f", {len(report.refused)} refused" if report.refused else ""
        out.print(
            f"{report.inserted} added, {report.updated} updated, {report.unchanged} unchanged, "
            f"{report.skipped} skipped{refused} in {report.seconds:.1f}s"
        )
        for refusal in report.refused:  # not read: it could lead outside the folder; not a failure
            err.print(f"[yellow]refused:[/yellow] {escape(str(refusal))}", soft_wrap=True)
        for error in report.errors:
            failed = True
            err.print(f"[yellow]not indexed:[/yellow] {escape(str(error))}")
    raise typer.Exit(ExitCode.FAILED if failed else ExitCode.COMPLETED)


@contextmanager
def index_bar(message: str) -> Iterator[Callable[[int, int], None]]:
    """A `progress(done, total)` for indexing that draws `ask`'s progress bar on stderr from its first call."""
    from rich.live import Live

    from agent.cli.render import LiveProgress

    lives: list[Live] = []

    def progress(done: int, total: int) -> None:
        bar = LiveProgress.index_bar(message, done, total)
        if lives:
            lives[0].update(bar)
        else:
            lives.append(Live(bar, console=err, refresh_per_second=8, transient=True))
            lives[0].start()

    try:
        yield progress
    finally:
        for live in lives:
            live.stop()


@app.command("list")
def corpus_list(as_json: JsonOption = False) -> None:
    """Collections in the corpus, with document counts."""
    from rich.table import Table

    from tools import CorpusStore

    async def body(runtime: Runtime) -> list[CollectionStats]:
        return await CorpusStore(runtime.pool).collections()

    stats = with_runtime(body)
    if as_json:
        print_json([dataclasses.asdict(s) for s in stats])
        return
    table = Table(title="Corpus")
    for column in ("collection", "documents", "characters", "updated"):
        table.add_column(column)
    for s in stats:
        table.add_row(s.name, str(s.documents), str(s.characters), s.updated_at.strftime("%Y-%m-%d %H:%M"))
    out.print(table)


@app.command("search")
def corpus_search(
    query: Annotated[str, typer.Argument(help="What to look for.")],
    limit: Annotated[int, typer.Option(min=1, max=100)] = 10,
    as_json: JsonOption = False,
) -> None:
    """Search the corpus the way the offline agent does."""
    from tools import CorpusStore, ensure_python_docs

    async def body(runtime: Runtime) -> list[CorpusHit]:
        store = CorpusStore(runtime.pool)
        with index_bar("indexing the Python reference (first use)") as progress:
            await ensure_python_docs(store, progress=progress)
        return await store.search(query, limit=limit)

    hits = with_runtime(body)
    if as_json:
        print_json([dataclasses.asdict(h) for h in hits])
        return
    for number, hit in enumerate(hits, start=1):
        out.print(f"[bold]{number}. {escape(hit.title)}[/bold]  [dim]{hit.score:.3f}[/dim]\n   [cyan]{hit.url}[/cyan]")
        out.print(f"   {escape(hit.snippet)}")
    if not hits:
        out.print("no matches")
