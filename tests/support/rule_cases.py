"""Runs an analytics rule's query over the rows of its test cases, with duckdb-kql.

Each rule ``detections/rules/<rule>.yaml`` has ``detections/rules/cases/<rule>.cases.yaml``::

    rule: <rule>.yaml
    now: 2026-03-02T12:00:00Z        # the query's now(); ago() counts back from it
    cases:
      - name: what the case shows
        fires: true                  # false: the query must return no row
        tables:
          MdeAvCoverage_CL:
            - {TimeGenerated: -30m, DeviceId: d1, AvModeCode: "1"}
        watchlists:
          MdeBlockedResources:
            - {Value: evil.example, Type: domain}
        expect:                      # optional: the rows, compared on the columns named here
          - {DeviceId: d1}

Times are ISO 8601 or an offset from ``now`` such as ``-30m``, ``-2h``, ``-1d``. A column a row
leaves out is empty, as Log Analytics stores it: ``""`` for a string, null for anything else.
A Defender table's ``Timestamp`` defaults to the row's ``TimeGenerated``.

duckdb-kql (third-party, pre-alpha) translates KQL to DuckDB SQL and refuses constructs it
cannot translate faithfully; the Kusto.Language checks stay the authority on syntax. Sentinel's
``_GetWatchlist`` is stood in for by a stored function over a table of watchlist rows.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb_kql
import yaml

from tests.support.detections import CASES, RULES
from tests.support.kusto import SENTINEL, declared_databases, watchlists

WATCHLIST_TABLE = "WatchlistItems_"
_OFFSET = re.compile(r"^([+-])(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


class CaseError(ValueError):
    """A cases file is malformed; the message names the file, case and field."""


@dataclass(frozen=True)
class RuleCase:
    name: str
    fires: bool
    tables: dict[str, list[dict[str, Any]]]
    watchlists: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    expect: list[dict[str, Any]] | None = None


@dataclass(frozen=True)
class RuleCases:
    path: Path
    rule_path: Path
    now: datetime
    cases: tuple[RuleCase, ...]


def cases_path(rule_path: Path) -> Path:
    return CASES / f"{rule_path.stem}.cases.yaml"


def load_cases(path: Path) -> RuleCases:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    where = path.name
    if not isinstance(data, dict) or not isinstance(data.get("cases"), list):
        raise CaseError(f"{where}: expected a mapping with a 'cases' list")

    now = data.get("now")
    if not isinstance(now, datetime):
        raise CaseError(f"{where}: 'now' must be an ISO 8601 timestamp")
    now = now if now.tzinfo else now.replace(tzinfo=UTC)

    cases = []
    for index, raw in enumerate(data["cases"]):
        label = f"{where} case {index}"
        if not isinstance(raw, dict) or "name" not in raw or "fires" not in raw:
            raise CaseError(f"{label}: each case needs 'name' and 'fires'")
        if not isinstance(raw.get("tables", {}), dict):
            raise CaseError(f"{label} ({raw['name']}): 'tables' must map table to rows")
        cases.append(
            RuleCase(
                name=str(raw["name"]),
                fires=bool(raw["fires"]),
                tables=raw.get("tables") or {},
                watchlists=raw.get("watchlists") or {},
                expect=raw.get("expect"),
            )
        )
    return RuleCases(path, RULES / str(data["rule"]), now, tuple(cases))


def run_case(query: str, case: RuleCase, now: datetime) -> list[dict[str, Any]]:
    """The rows *query* returns over the case's tables, as plain Python values."""
    tables = declared_databases()[SENTINEL]["tables"]
    con = duckdb_kql.connect()
    try:
        unknown = set(case.tables) - set(tables)
        if unknown:
            raise CaseError(f"{case.name}: no such table {sorted(unknown)}")
        for name, columns in tables.items():
            rows = case.tables.get(name, [])
            if not rows and not re.search(rf"\b{re.escape(name)}\b", query):
                continue  # a table the query does not read need not exist
            _create_table(
                con, name, columns=columns, rows=rows, now=now, where=f"{case.name}: {name}"
            )
        _create_watchlists(con, case, now)

        relation = duckdb_kql.kql(con, query, query_now=now, functions=[_watchlist_function()])
        names = [d[0] for d in relation.description]
        return [dict(zip(names, row, strict=True)) for row in relation.fetchall()]
    finally:
        con.close()


def matches(actual: list[dict[str, Any]], expected: list[dict[str, Any]]) -> bool:
    """Same rows as *expected*, in any order, comparing only the columns *expected* names."""
    keys = sorted({k for row in expected for k in row})
    return Counter(_row_key(r, keys) for r in actual) == Counter(
        _row_key(r, keys) for r in expected
    )


def _row_key(row: dict[str, Any], keys: list[str]) -> str:
    return json.dumps({k: _plain(row.get(k)) for k in keys}, sort_keys=True, default=str)


def _plain(value: Any) -> Any:
    # duckdb-kql hands dynamic values back as JSON text and datetimes as naive UTC.
    if isinstance(value, str) and value[:1] in ("[", "{"):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return value
    if isinstance(value, list):
        return sorted((_plain(v) for v in value), key=lambda v: json.dumps(v, default=str))
    if isinstance(value, datetime):
        return value.replace(tzinfo=None).isoformat()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _watchlist_function() -> str:
    return (
        "function _GetWatchlist(watchlistAlias:string) "
        f"{{ {WATCHLIST_TABLE} | where WatchlistAlias == watchlistAlias "
        "| project-away WatchlistAlias }"
    )


def _create_watchlists(con: Any, case: RuleCase, now: datetime) -> None:
    declared = watchlists()
    search_keys = _search_keys()
    columns: dict[str, str] = {"WatchlistAlias": "string"}
    for spec in declared.values():
        columns.update(spec)

    rows = []
    for alias, items in case.watchlists.items():
        if alias not in declared:
            raise CaseError(f"{case.name}: no such watchlist {alias!r}")
        for item in items:
            row = {"WatchlistAlias": alias, "LastUpdatedTimeUTC": "-1d", **item}
            row.setdefault("SearchKey", item.get(search_keys[alias], ""))
            rows.append(row)
    _create_table(
        con, WATCHLIST_TABLE, columns=columns, rows=rows, now=now, where=f"{case.name}: watchlists"
    )


def _search_keys() -> dict[str, str]:
    from tests.support.kusto import SCHEMAS

    data = json.loads((SCHEMAS / "watchlists.json").read_text(encoding="utf-8"))
    return {alias: spec["searchKey"] for alias, spec in data["watchlists"].items()}


def _create_table(
    con: Any,
    name: str,
    *,
    columns: dict[str, str],
    rows: list[dict[str, Any]],
    now: datetime,
    where: str,
) -> None:
    header = ", ".join(f"['{column}']:{kind}" for column, kind in columns.items())
    values = []
    for index, given in enumerate(rows):
        unknown = set(given) - set(columns)
        if unknown:
            raise CaseError(f"{where} row {index}: no such column {sorted(unknown)}")
        row = dict(given)
        if "Timestamp" in columns and "TimeGenerated" in row:
            row.setdefault("Timestamp", row["TimeGenerated"])
        for column, kind in columns.items():
            values.append(_literal(row.get(column), kind, now, f"{where} row {index} {column}"))
    body = ", ".join(values)
    duckdb_kql.script(con, f".set-or-replace ['{name}'] <| datatable({header})[{body}]")


def _literal(value: Any, kind: str, now: datetime, where: str) -> str:
    if kind == "string":
        text = "" if value is None else str(value)
        return json.dumps(text)
    if value is None:
        return f"{kind}(null)"
    if kind == "datetime":
        moment = _timestamp(value, now, where).astimezone(UTC)
        return f"datetime({moment.strftime('%Y-%m-%dT%H:%M:%S.%fZ')})"
    if kind == "dynamic":
        return f"dynamic({json.dumps(value)})"
    if kind == "bool":
        return "true" if value else "false"
    if kind in ("int", "long", "real"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise CaseError(f"{where}: {value!r} is not a number")
        return f"{kind}({value})"
    raise CaseError(f"{where}: cannot write a value of type {kind}")


def _timestamp(value: Any, now: datetime, where: str) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    offset = _OFFSET.match(str(value))
    if offset:
        sign, amount, unit = offset.groups()
        delta = timedelta(**{_UNITS[unit]: int(amount)})
        return now + delta if sign == "+" else now - delta
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError as error:
        raise CaseError(f"{where}: {value!r} is neither ISO 8601 nor an offset") from error
