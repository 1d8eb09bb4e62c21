"""``seed-story models``: the versions of a model in a store and the aliases that point at them."""

from __future__ import annotations

import getpass
import socket
from datetime import UTC, datetime
from pathlib import Path

import typer
from pydantic import TypeAdapter
from rich import box
from rich.console import Console
from rich.table import Table

from seed_story.cli.output import progress_bar
from seed_story.config import StrictModel
from seed_story.registry import AliasEvent, ModelVersion, Registry, is_model_ref

app = typer.Typer(help="Model versions and their aliases (production, candidate...) in a store.", no_args_is_help=True)

STORE = typer.Option(
    ..., "--store", help="Store holding models/: a local folder, file:///path or s3://bucket[/prefix]."
)
NAME = typer.Option("seed-story", "--name", help="Model name.")
ENDPOINT = typer.Option(
    None, "--s3-endpoint-url", help="S3-compatible endpoint (MinIO...); default: AWS_ENDPOINT_URL, else AWS."
)
AS_JSON = typer.Option(False, "--json", help="Print JSON instead of a table or a line.")
ALIAS = typer.Option("production", "--alias", help="The alias to move.")
REASON = typer.Option("", "--reason", help="Why: kept in the alias's history.")
BY = typer.Option(None, "--by", help="Who moves it, for the history; default: user@host.")


class ModelListing(StrictModel):
    """``models list --json``: a model's complete versions, oldest first, and where each alias points."""

    name: str
    store: str
    aliases: dict[str, str]
    versions: list[ModelVersion]


def _registry(store: str, s3_endpoint_url: str | None) -> Registry:
    from seed_story.storage import S3Settings, open_store

    if s3_endpoint_url and not store.startswith("s3://"):
        raise typer.BadParameter("--s3-endpoint-url only applies to s3:// stores", param_hint="--s3-endpoint-url")
    return Registry(open_store(store, S3Settings(endpoint_url=s3_endpoint_url) if s3_endpoint_url else None))


def _version(registry: Registry, name: str, ref: str) -> ModelVersion:
    """A ``models://`` reference, or a bare version id or alias of ``name``."""
    return registry.resolve(ref if is_model_ref(ref) else f"models://{name}@{ref}")


def _who(by: str | None) -> str:
    if by:
        return by
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # a container user with no passwd entry
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def _when(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M")


def _size(n: int) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def _moved_ids(event: AliasEvent) -> str:
    return f"{event.from_version or '(unset)'} -> {event.to_version}"


def _moved(event: AliasEvent, verb: str) -> str:
    return f"{event.alias} of {event.name} {verb}: {_moved_ids(event)} (seq {event.seq})"


@app.command("list")
def list_versions(
    store: str = STORE, name: str = NAME, as_json: bool = AS_JSON, s3_endpoint_url: str | None = ENDPOINT
) -> None:
    """The complete versions of a model, oldest first, with the aliases that point at each."""
    registry = _registry(store, s3_endpoint_url)
    versions = registry.versions(name)
    aliases = {alias: event.to_version for alias, event in registry.aliases(name).items()}
    if as_json:
        listing = ModelListing(name=name, store=registry.store.uri, aliases=aliases, versions=versions)
        typer.echo(listing.model_dump_json(indent=2))
        return
    if not versions:
        typer.echo(f"no versions of {name} in {registry.store.uri}")
        return
    lineage = any(v.parent for v in versions)  # the parent column only where there is lineage to show
    table = Table(title=f"{name} in {registry.store.uri}", box=box.SIMPLE_HEAD)
    table.add_column("version", min_width=16, no_wrap=True)  # ids are what users copy: never cut
    table.add_column("created (UTC)", no_wrap=True)
    if lineage:
        table.add_column("parent", min_width=16, no_wrap=True)
    table.add_column("aliases")
    table.add_column("size", justify="right", no_wrap=True)
    table.add_column("metrics")
    for v in versions:
        pointing = ", ".join(a for a, target in aliases.items() if target == v.version_id)
        metrics = " ".join(f"{k}={value:.4g}" for k, value in sorted(v.metrics.items()))
        parent = [v.parent or ""] if lineage else []
        table.add_row(v.version_id, _when(v.created_at), *parent, pointing, _size(v.total_bytes), metrics)
    Console().print(table)


@app.command("show")
def show(
    ref: str = typer.Argument(..., help="A version id, an alias, or models://NAME@ALIAS|VERSION."),
    store: str = STORE,
    name: str = NAME,
    as_json: bool = AS_JSON,
    s3_endpoint_url: str | None = ENDPOINT,
) -> None:
    """A version's record: lineage, metrics, gate decision and files."""
    version = _version(_registry(store, s3_endpoint_url), name, ref)
    if as_json:
        typer.echo(version.model_dump_json(indent=2))
        return
    table = Table(title=f"{version.name}@{version.version_id}, created {_when(version.created_at)} UTC")
    table.add_column("file")
    table.add_column("bytes", justify="right")
    table.add_column("sha256")
    for entry in version.files:
        table.add_row(entry.path, f"{entry.bytes:,}", entry.sha256[:16])
    console = Console()
    console.print(table)
    for label, value in (("parent", version.parent), ("source", version.source), ("shards", version.data_shards)):
        console.print(f"{label}: {value or '-'}", highlight=False)
    console.print(f"metrics: {version.metrics or '-'}", highlight=False)
    if version.gate is not None:
        console.print(f"gate: {'passed' if version.gate.get('passed') else 'failed'}", highlight=False)


def _metrics(items: list[str]) -> dict[str, float]:
    metrics: dict[str, float] = {}
    for item in (part.strip() for given in items for part in given.split(",") if part.strip()):
        key, _, value = item.partition("=")
        try:
            if not key.strip():
                raise ValueError(item)
            metrics[key.strip()] = float(value)
        except ValueError:
            raise typer.BadParameter(f"expected NAME=NUMBER, got {item!r}", param_hint="--metrics") from None
    return metrics


@app.command("register")
def register(
    folder: Path = typer.Argument(..., help="A checkpoint folder of this project (has seed_story.json)."),
    store: str = STORE,
    name: str = NAME,
    parent: str | None = typer.Option(None, "--parent", help="Version id this checkpoint was fine-tuned from."),
    metrics: list[str] = typer.Option([], "--metrics", help="NAME=NUMBER (repeat, or separate with commas)."),
    as_json: bool = AS_JSON,
    s3_endpoint_url: str | None = ENDPOINT,
) -> None:
    """Store a checkpoint folder as a version (a no-op if the same files are registered already)."""
    registry = _registry(store, s3_endpoint_url)
    started = datetime.now(UTC)
    with progress_bar("uploading", enabled=not as_json) as progress:
        version = registry.register(folder, name, parent=parent, metrics=_metrics(metrics), progress=progress)
    if as_json:
        typer.echo(version.model_dump_json(indent=2))
    elif version.created_at < started:
        typer.echo(f"{name}@{version.version_id} was registered already, on {_when(version.created_at)} UTC")
    else:
        typer.echo(f"registered {name}@{version.version_id} ({len(version.files)} files, {_size(version.total_bytes)})")


@app.command("promote")
def promote(
    version: str = typer.Argument(..., help="A version id, an alias (e.g. candidate), or models://NAME@..."),
    store: str = STORE,
    name: str = NAME,
    alias: str = ALIAS,
    reason: str = REASON,
    by: str | None = BY,
    as_json: bool = AS_JSON,
    s3_endpoint_url: str | None = ENDPOINT,
) -> None:
    """Point an alias (production) at a version; fails, changing nothing, if someone moved it meanwhile."""
    registry = _registry(store, s3_endpoint_url)
    target = _version(registry, name, version)
    before = registry.alias(target.name, alias)
    event = registry.promote(target.name, target.version_id, alias, by=_who(by), reason=reason)
    if as_json:
        typer.echo(event.model_dump_json(indent=2))
    elif event == before:
        typer.echo(f"{alias} of {target.name} is at {target.version_id} already; nothing changed")
    else:
        typer.echo(_moved(event, "promoted"))


@app.command("rollback")
def rollback(
    store: str = STORE,
    name: str = NAME,
    alias: str = ALIAS,
    reason: str = REASON,
    by: str | None = BY,
    as_json: bool = AS_JSON,
    s3_endpoint_url: str | None = ENDPOINT,
) -> None:
    """Point an alias (production) back at the version it named before its last move."""
    event = _registry(store, s3_endpoint_url).rollback(name, alias, by=_who(by), reason=reason)
    typer.echo(event.model_dump_json(indent=2) if as_json else _moved(event, "rolled back"))


@app.command("history")
def history(
    store: str = STORE,
    name: str = NAME,
    alias: str | None = typer.Option(None, "--alias", help="Only this alias; default: all of them."),
    as_json: bool = AS_JSON,
    s3_endpoint_url: str | None = ENDPOINT,
) -> None:
    """Every move of a model's aliases, oldest first: when (UTC), from which version to which, who and why."""
    events = _registry(store, s3_endpoint_url).history(name, alias)
    if as_json:
        typer.echo(TypeAdapter(list[AliasEvent]).dump_json(events, indent=2).decode())
        return
    if not events:
        typer.echo(f"no alias of {name} was ever set")
        return
    for e in events:
        reason = f"  ({e.reason})" if e.reason else ""
        typer.echo(f"{_when(e.at)}  {e.alias} #{e.seq} {e.action}: {_moved_ids(e)}  by {e.by}{reason}")
