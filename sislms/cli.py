"""``sislms``: the command line. Settings are built here, once, and passed down."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from streams.errors import SislmsError
from streams.logs import configure_logging
from streams.settings import Settings

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__, pretty_exceptions_enable=False)
stack_app = typer.Typer(no_args_is_help=True, help="The local Kafka, registry and PostgreSQL.")
topology_app = typer.Typer(no_args_is_help=True, help="Topics and schemas as code.")
app.add_typer(stack_app, name="stack")
app.add_typer(topology_app, name="topology")

Components = Annotated[list[str] | None, typer.Argument(help="kafka, registry, postgres (default: all)")]
JsonFlag = Annotated[bool, typer.Option("--json", help="One JSON document for scripts.")]


def _settings() -> Settings:
    settings = Settings()
    configure_logging(settings.log_level, settings.log_json)
    return settings


def _fail(exc: Exception, code: int = 1) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(code)


# --- stack ------------------------------------------------------------------------------
@stack_app.command("up")
def stack_up(components: Components = None, as_json: JsonFlag = False) -> None:
    """Start what is not running (harmless to repeat) and wait until it answers."""
    from sislms.stack import Stack

    stack = Stack(_settings())
    statuses = stack.up(components)
    _print_status(stack, statuses, as_json)


@stack_app.command("down")
def stack_down(components: Components = None) -> None:
    """Stop the components this stack started (external services are left alone)."""
    from sislms.stack import Stack

    stack = Stack(_settings())
    stopped = stack.down(components)
    typer.echo(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")


@stack_app.command("status")
def stack_status(components: Components = None, as_json: JsonFlag = False) -> None:
    """Each component's health and endpoint; exit 1 if any is not healthy."""
    from sislms.stack import Stack

    stack = Stack(_settings())
    statuses = stack.status(components)
    _print_status(stack, statuses, as_json)
    if not all(s.healthy for s in statuses):
        raise typer.Exit(1)


@stack_app.command("fetch")
def stack_fetch() -> None:
    """Fetch the Kafka and registry jars from Maven Central into the cache (once)."""
    from sislms.stack.jars import fetch_jars

    jars = fetch_jars(_settings())
    typer.echo(
        f"jars ready in {jars.root} (Kafka {jars.kafka_version}, Apicurio Registry {jars.registry_version})"
    )


# --- topology ---------------------------------------------------------------------------
@topology_app.command("plan")
def topology_plan(as_json: JsonFlag = False) -> None:
    """Show how the cluster and the registry differ from the topology file."""
    from sislms.wiring import Kernel
    from streams.topology import plan

    settings = _settings()
    k = Kernel(settings)
    p = plan(k.catalog, k.admin, k.registry, settings.replication_factor_cap)
    typer.echo(json.dumps(p.as_dict(), indent=2) if as_json else p.render())
    if p.refusals:
        raise typer.Exit(1)


@topology_app.command("apply")
def topology_apply(as_json: JsonFlag = False) -> None:
    """Make the topology true: create topics, add partitions, fix configs, register schemas."""
    from sislms.wiring import Kernel
    from streams.topology import apply, plan

    settings = _settings()
    k = Kernel(settings)
    p = plan(k.catalog, k.admin, k.registry, settings.replication_factor_cap)
    if not as_json:
        typer.echo(p.render())
    result = apply(k.catalog, k.admin, k.registry, the_plan=p)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "ok": result.ok,
                    "applied": [a.line() for a in result.applied],
                    "failed": result.failed,
                    "notes": p.notes,
                },
                indent=2,
            )
        )
    else:
        typer.echo(f"applied {len(result.applied)} change(s)")
        for target, reason in result.failed.items():
            typer.echo(f"FAILED {target}: {reason}", err=True)
    if not result.ok:
        raise typer.Exit(1)


@topology_app.command("docs")
def topology_docs() -> None:
    """Print the topic catalog as a Markdown table (README carries it)."""
    from sislms.wiring import Kernel
    from streams.docs import topic_catalog_markdown

    typer.echo(topic_catalog_markdown(Kernel(_settings()).catalog))


@app.command("docs")
def docs_cmd(
    check: Annotated[bool, typer.Option("--check", help="Exit 1 if README is stale.")] = False,
) -> None:
    """Regenerate README's settings table and topic catalog from the code."""
    from sislms.wiring import Kernel
    from streams.docs import render_readme
    from streams.settings import PROJECT_ROOT

    readme = PROJECT_ROOT / "README.md"
    text = readme.read_text()
    try:
        new = render_readme(text, Kernel(_settings()).catalog)
    except ValueError as exc:
        raise _fail(exc) from None
    if check:
        if new != text:
            typer.echo("README.md is stale: run `make docs`", err=True)
            raise typer.Exit(1)
        return
    readme.write_text(new)
    typer.echo("README.md: settings table and topic catalog regenerated")


@app.command("settings")
def settings_cmd(markdown: Annotated[bool, typer.Option(help="README's table")] = False) -> None:
    """Print the current settings (secrets redacted), or the documented table."""
    from streams.docs import settings_markdown

    settings = _settings()
    if markdown:
        typer.echo(settings_markdown())
    else:
        typer.echo(json.dumps(settings.as_dict(), indent=2, default=str))


@app.command("schemas")
def schemas_check() -> None:
    """Check every contract against each committed version of it (backward compatibility)."""
    from streams.schemas import SchemaSet, check_history

    settings = _settings()
    current = SchemaSet.load(settings.schemas_dir)
    problems = check_history(settings.schemas_dir, current)
    for where, found in problems.items():
        typer.echo(f"INCOMPATIBLE {where}:", err=True)
        for f in found:
            typer.echo(f"  - {f}", err=True)
    typer.echo(f"{len(current.contracts)} contracts; {len(problems)} incompatible change(s)")
    if problems:
        raise typer.Exit(1)


def _print_status(stack: object, statuses: list, as_json: bool) -> None:
    from sislms.stack import Stack

    assert isinstance(stack, Stack)
    if as_json:
        doc = {
            "healthy": all(s.healthy for s in statuses),
            "endpoints": stack.endpoints.public(),
            "components": {s.name: s.as_dict() for s in statuses},
        }
        typer.echo(json.dumps(doc, indent=2))
        return
    for s in statuses:
        pid = f" pid {s.pid}" if s.pid else ""
        typer.echo(f"{s.name:<9} {s.state:<11} {s.endpoint}{pid}")
        if s.detail:
            typer.echo(f"          {s.detail}")
        if s.log_tail:
            typer.echo(f"          --- {s.log_file} (last lines) ---")
            for line in s.log_tail.splitlines():
                typer.echo(f"          | {line}")


def main() -> None:
    try:
        app()
    except SislmsError as exc:  # every expected failure ends as one line, no traceback
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
