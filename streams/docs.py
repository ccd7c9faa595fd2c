"""Tables that README carries, generated from the code so they cannot drift."""

from __future__ import annotations

from pathlib import Path

from streams.catalog import Catalog
from streams.settings import Settings

__all__ = ["settings_markdown", "topic_catalog_markdown"]


def _retention(ms: int | None) -> str:
    if ms is None:
        return "default"
    if ms < 0:
        return "forever"
    days = ms / 86_400_000
    return f"{days:g} days" if days >= 1 else f"{ms} ms"


def topic_catalog_markdown(catalog: Catalog) -> str:
    rows = [
        "| topic | partitions | cleanup | retention | value schema | owner | what it carries |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for t in catalog:
        retention = "compacted" if t.cleanup_policy == "compact" else _retention(t.retention_ms)
        rows.append(
            f"| `{t.name}` | {catalog.partitions(t)} | {t.cleanup_policy} | {retention} | "
            f"`schemas/{t.value_schema}` | {t.owner} | {t.description} |"
        )
    return "\n".join(rows)


def settings_markdown() -> str:
    rows = [
        "| environment variable | default | secret | what it sets |",
        "| --- | --- | --- | --- |",
    ]
    for name, f in Settings.model_fields.items():
        default = f.get_default(call_default_factory=True)
        if isinstance(default, Path):
            default = _portable(default)
        shown = "(unset)" if default in (None, {}) else f"`{default}`"
        secret = "yes" if "SecretStr" in repr(f.annotation) else "no"
        rows.append(f"| `SISLMS_{name.upper()}` | {shown} | {secret} | {f.description or ''} |")
    return "\n".join(rows)


def _portable(p: Path) -> str:
    from streams.settings import PROJECT_ROOT

    home = Path.home()
    if p.is_relative_to(PROJECT_ROOT):
        return f"<checkout>/{p.relative_to(PROJECT_ROOT)}"
    if p.is_relative_to(PROJECT_ROOT.parent):
        return f"<checkout>/../{p.relative_to(PROJECT_ROOT.parent)}"
    if p.is_relative_to(home):
        return f"~/{p.relative_to(home)}"
    return str(p)
