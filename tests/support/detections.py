"""The repository's KQL content, gathered for the Kusto checks and the rule behaviour tests.

Sources of KQL:

* ``detections/rules/*.yaml``: Sentinel analytics rules (Azure-Sentinel YAML schema);
* ``detections/hunting/**/*.yaml``: hunting queries; ``runsIn: DefenderXDR`` marks a query that
  only Defender XDR advanced hunting can run (it reads tables Sentinel never receives);
* ``detections/workbooks/*.workbook.json``: every query item of a workbook, with workbook
  parameters replaced by a representative value;
* ``pipeline.infra_content.embedded_kql()``, when that module exists: KQL written into the
  infrastructure (analytics rules in the Bicep input, DCR transforms);
* ``pipeline.sources.hunting``: the advanced-hunting query the collector sends, whole and in
  each shape of its device-id split (Defender XDR: it reads a TVM table).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pipeline.sources.hunting import DevicePart, tvm_info_gathering_query
from pipeline.tables import ALL_TABLES
from tests.support.kusto import DEFENDER_XDR, SENTINEL, KqlQuery, custom_table_columns

REPO = Path(__file__).resolve().parents[2]
DETECTIONS = REPO / "detections"
RULES = DETECTIONS / "rules"
CASES = RULES / "cases"
HUNTING = DETECTIONS / "hunting"
WORKBOOKS = DETECTIONS / "workbooks"

# What a workbook parameter stands for when its query is checked outside the workbook.
WORKBOOK_PARAMETER_VALUES = {"{TimeRange}": "> ago(30d)"}

# A DCR transform reads its input stream under this name.
_TRANSFORM_SOURCE = re.compile(r"^\s*source\b")


@dataclass(frozen=True)
class Content:
    """A YAML detection file: where it is, and what it says."""

    path: Path
    data: dict[str, Any]

    @property
    def query(self) -> str:
        return str(self.data["query"])

    @property
    def database(self) -> str:
        return DEFENDER_XDR if self.data.get("runsIn") == "DefenderXDR" else SENTINEL

    @property
    def label(self) -> str:
        return str(self.path.relative_to(REPO))


def _load_yaml(path: Path) -> Content:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    return Content(path, data)


def rules() -> list[Content]:
    return [_load_yaml(p) for p in sorted(RULES.glob("*.yaml"))]


def hunting_queries() -> list[Content]:
    return [_load_yaml(p) for p in sorted(HUNTING.rglob("*.yaml"))]


def workbook_queries() -> list[KqlQuery]:
    queries = []
    for path in sorted(WORKBOOKS.glob("*.workbook.json")):
        workbook = json.loads(path.read_text(encoding="utf-8"))
        for index, item in enumerate(_workbook_items(workbook["items"])):
            content = item.get("content", {})
            if item.get("type") != 3 or "query" not in content:
                continue
            text = _with_workbook_parameters(content["query"])
            name = item.get("name", str(index))
            queries.append(KqlQuery(f"{path.relative_to(REPO)}#{name}", text))
    return queries


def _workbook_items(items: Iterable[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
    # Groups (type 12) nest their own items.
    for item in items:
        yield item
        nested = item.get("content", {}).get("items")
        if nested:
            yield from _workbook_items(nested)


def embedded_kql() -> list[KqlQuery]:
    """KQL the infrastructure embeds, if ``pipeline.infra_content`` exists yet.

    Each item carries ``location``, ``kind``, ``query`` and, for a DCR transform, the
    ``source_schema`` of the stream it reads as ``source``.
    """
    if importlib.util.find_spec("pipeline.infra_content") is None:
        return []
    module = importlib.import_module("pipeline.infra_content")

    queries = []
    for item in module.embedded_kql():
        label = f"infra:{item.location}"
        text = _with_workbook_parameters(item.query)
        schema = getattr(item, "source_schema", None)
        if schema:
            queries.append(KqlQuery(label, text, extra_tables={"source": parse_schema(schema)}))
        elif _TRANSFORM_SOURCE.search(text):
            queries.extend(_transform_variants(label, text))
        else:
            queries.append(KqlQuery(label, text))
    return queries


def parse_schema(schema: str) -> dict[str, str]:
    """``(Name:type, ...)`` to ``{Name: type}``."""
    body = schema.strip().removeprefix("(").removesuffix(")")
    columns = {}
    for part in body.split(","):
        name, _, kind = part.strip().partition(":")
        if not name or not kind:
            raise ValueError(f"cannot read column {part!r} of schema {schema!r}")
        columns[name.strip().strip("[]'\"")] = kind.strip()
    return columns


def _with_workbook_parameters(text: str) -> str:
    for parameter, value in WORKBOOK_PARAMETER_VALUES.items():
        text = text.replace(parameter, value)
    return text


def _transform_variants(label: str, text: str) -> list[KqlQuery]:
    # A transform that does not say which stream it reads is checked against each of our
    # tables; the test requires it to be valid for at least one.
    return [
        KqlQuery(
            f"{label}@{table.name}",
            text,
            extra_tables={"source": custom_table_columns(table)},
        )
        for table in ALL_TABLES
    ]


def all_queries() -> list[KqlQuery]:
    """Every KQL query in the repository, each with the database it runs in."""
    queries = [KqlQuery(c.label, c.query, c.database) for c in rules() + hunting_queries()]
    queries += workbook_queries()
    queries += embedded_kql()
    queries += collector_queries()
    return queries


def collector_queries() -> list[KqlQuery]:
    """The hunting queries the pipeline itself sends: the whole question and one of each shape
    of part (a one- and two-digit prefix, and the two kinds of rest part)."""
    parts = {
        "whole": DevicePart(),
        "prefix": DevicePart("a"),
        "prefix2": DevicePart("a0"),
        "rest": DevicePart("", rest=True),
        "rest2": DevicePart("a", rest=True),
    }
    return [
        KqlQuery(
            f"pipeline:tvm-info-gathering:{name}", tvm_info_gathering_query(part), DEFENDER_XDR
        )
        for name, part in parts.items()
    ]
