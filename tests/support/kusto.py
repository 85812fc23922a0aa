"""KQL checks with Microsoft's Kusto.Language parser, driven through node.

Kusto.Language (npm ``@kusto/language-service-next``) is the parser the Azure Data Explorer and
Log Analytics editors use. It reports syntax errors and, given the tables a query may read,
semantic errors too: an unknown table or column, a function called with the wrong types. The
Defender tables are not built into it, so every check declares them: the Defender tables from
``detections/schemas/mde-tables.json``, our own tables from ``pipeline/tables.py``, and the
Sentinel functions our queries call (``_GetWatchlist`` with the watchlists of
``detections/schemas/watchlists.json``).

Two databases are declared, because a query runs in exactly one place:

* ``sentinel``: a Sentinel workspace fed by the Defender XDR connector, plus our custom tables;
* ``defender_xdr``: Defender XDR advanced hunting, which also has the ``DeviceTvm*`` tables that
  Sentinel never receives.

Starting node and loading the parser takes about two seconds, so :func:`check_queries` checks a
whole batch in one node process; tests share one batch per session.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.tables import ALL_TABLES, Table

REPO = Path(__file__).resolve().parents[2]
SCHEMAS = REPO / "detections" / "schemas"
KUSTO_MODULE = REPO / "node_modules" / "@kusto" / "language-service-next"
CHECK_SCRIPT = Path(__file__).with_name("kusto_check.js")

SENTINEL = "sentinel"
DEFENDER_XDR = "defender_xdr"

# The columns Sentinel's _GetWatchlist adds to every watchlist's own columns.
WATCHLIST_SYSTEM_COLUMNS = {
    "_DTItemId": "string",
    "LastUpdatedTimeUTC": "datetime",
    "SearchKey": "string",
}

# Kusto.Language spells some of the workspace API's type names differently.
_KUSTO_TYPE = {"boolean": "bool", "int": "int", "long": "long", "real": "real"}


class KustoCheckerError(RuntimeError):
    """The checker itself could not run: node or the parser package is missing, or it crashed."""


@dataclass(frozen=True)
class KqlQuery:
    """One query to check: where it came from, its text, and the database it runs in."""

    id: str
    text: str
    database: str = SENTINEL
    # Tables only this query sees, e.g. a DCR transform's ``source`` stream.
    extra_tables: Mapping[str, Mapping[str, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Diagnostic:
    severity: str
    code: str
    message: str
    start: int
    length: int

    def where(self, text: str) -> str:
        """``line:column`` of the diagnostic in *text*, both counted from 1."""
        before = text[: self.start]
        line = before.count("\n") + 1
        column = self.start - (before.rfind("\n") + 1) + 1
        return f"{line}:{column}"


@dataclass(frozen=True)
class QueryCheck:
    """What Kusto.Language said about one query, and the columns its result has."""

    query: KqlQuery
    diagnostics: tuple[Diagnostic, ...]
    columns: dict[str, str]
    tabular: bool

    @property
    def errors(self) -> tuple[Diagnostic, ...]:
        return tuple(d for d in self.diagnostics if d.severity == "Error")

    def explain(self) -> str:
        """Every diagnostic with its position and the text it points at, one per line."""
        lines = []
        for d in self.diagnostics:
            snippet = self.query.text[d.start : d.start + max(d.length, 1)]
            lines.append(
                f"{self.query.id} {d.where(self.query.text)} {d.severity} {d.code}: "
                f"{d.message} [{snippet!r}]"
            )
        return "\n".join(lines)


def defender_tables() -> dict[str, dict[str, dict[str, str]]]:
    """The Defender tables per database: ``{"sentinel": {...}, "defender_xdr": {...}}``."""
    data = json.loads((SCHEMAS / "mde-tables.json").read_text(encoding="utf-8"))
    sentinel = data["sentinel"]
    # Advanced hunting has the Sentinel-connected Device* tables too, but without the
    # workspace's own columns (TimeGenerated, TenantId, Type, SourceSystem).
    workspace_only = {"TimeGenerated", "TenantId", "Type", "SourceSystem"}
    hunting = {
        name: {c: t for c, t in columns.items() if c not in workspace_only}
        for name, columns in sentinel.items()
    }
    hunting.update(data["defender_xdr_only"])
    return {SENTINEL: sentinel, DEFENDER_XDR: hunting}


def custom_table_columns(table: Table) -> dict[str, str]:
    """One of our tables as the checker declares it, from ``pipeline/tables.py``."""
    return {c.name: _KUSTO_TYPE.get(c.type, c.type) for c in table.columns}


def watchlists() -> dict[str, dict[str, str]]:
    """Watchlist alias to its columns (as ``_GetWatchlist`` returns them, system columns first)."""
    data = json.loads((SCHEMAS / "watchlists.json").read_text(encoding="utf-8"))
    return {
        alias: {**WATCHLIST_SYSTEM_COLUMNS, **spec["columns"]}
        for alias, spec in data["watchlists"].items()
    }


def _watchlist_function() -> dict[str, str]:
    # Kusto.Language needs one fixed result schema for a function, while the real _GetWatchlist
    # returns whatever columns the named watchlist has. Declaring the union of our watchlists'
    # columns keeps a misspelled watchlist column an error.
    columns: dict[str, str] = {}
    for spec in watchlists().values():
        columns.update(spec)
    schema = ", ".join(f"['{name}']:{kind}" for name, kind in columns.items())
    return {
        "name": "_GetWatchlist",
        "parameters": "(watchlistAlias:string)",
        "body": "{ datatable(" + schema + ")[] }",
    }


def declared_databases() -> dict[str, dict[str, Any]]:
    """Both databases as the node script takes them: tables and functions."""
    defender = defender_tables()
    ours = {table.name: custom_table_columns(table) for table in ALL_TABLES}
    return {
        SENTINEL: {"tables": {**defender[SENTINEL], **ours}, "functions": [_watchlist_function()]},
        DEFENDER_XDR: {"tables": defender[DEFENDER_XDR], "functions": []},
    }


def check_queries(queries: Sequence[KqlQuery], timeout: float = 120.0) -> dict[str, QueryCheck]:
    """Parse and analyse every query in one node process; results keyed by query id."""
    ids = [q.id for q in queries]
    if len(set(ids)) != len(ids):
        raise ValueError("query ids must be unique within one batch")

    node = shutil.which("node")
    if node is None:
        raise KustoCheckerError("node is not on PATH; install Node.js to run the KQL checks")
    if not KUSTO_MODULE.is_dir():
        raise KustoCheckerError(
            f"{KUSTO_MODULE} is missing; run `npm install` (scripts/bootstrap --full)"
        )

    request = {
        "modulePath": str(KUSTO_MODULE),
        "databases": declared_databases(),
        "queries": [
            {"id": q.id, "text": q.text, "database": q.database, "tables": dict(q.extra_tables)}
            for q in queries
        ],
    }
    completed = subprocess.run(
        [node, str(CHECK_SCRIPT)],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if completed.returncode != 0:
        raise KustoCheckerError(
            f"kusto_check.js exited {completed.returncode}: {completed.stderr.strip()[-2000:]}"
        )

    by_id = {q.id: q for q in queries}
    results = json.loads(completed.stdout)["results"]
    return {
        r["id"]: QueryCheck(
            query=by_id[r["id"]],
            diagnostics=tuple(Diagnostic(**d) for d in r["diagnostics"]),
            columns={c["name"]: c["type"] for c in r["columns"]},
            tabular=bool(r["tabular"]),
        )
        for r in results
    }
