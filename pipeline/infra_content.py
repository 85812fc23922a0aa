"""Deployment content generated from the code's own definitions, for the Bicep in ``infra/``.

Bicep cannot import Python, and the custom tables and the detection content must not be spelled
twice. So this module writes them once as JSON under ``infra/generated/`` and the Bicep modules
read those files with ``loadJsonContent()``:

* ``tables.json``: the custom tables (``pipeline/tables.py``) as the workspace tables API and the
  data collection rule (DCR) want them: table columns, the DCR stream declarations and data flows.
* ``analytics-rules.json``: the Sentinel analytics rules in ``detections/rules/*.yaml`` (the
  Azure-Sentinel YAML schema) converted to the ARM shape of a ``Scheduled`` alert rule.
* ``hunting-queries.json``: ``detections/hunting/*.yaml`` as Log Analytics saved searches in the
  "Hunting Queries" category.
* ``workbooks.json``: ``detections/workbooks/*.json`` serialised for the workbook resource.

``python -m pipeline infra-content`` writes the files; ``--check`` only compares them, and a test
fails when they are stale. Bad detection files never abort the batch: each problem is returned as
a :class:`Rejected` naming the file and the field, and the other files are still converted.

:func:`embedded_kql` returns every KQL string the deployment carries, so the Kusto checks can
parse the exact text that reaches Azure.

Errors: :class:`InfraContentError` is raised only when the content cannot be produced at all
(a detections folder that cannot be read); problems in single files are reported, not raised.
"""

from __future__ import annotations

import copy
import json
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from uuid import UUID

import yaml

from pipeline.tables import ALL_TABLES, Table

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
GENERATED_DIR = Path("infra") / "generated"
GENERATED_BY = "python -m pipeline infra-content (do not edit by hand)"

TABLES_FILE = "tables.json"
RULES_FILE = "analytics-rules.json"
HUNTING_FILE = "hunting-queries.json"
WORKBOOKS_FILE = "workbooks.json"

# What the ARM alert-rule API accepts, from the Microsoft.SecurityInsights alertRules reference:
# https://learn.microsoft.com/azure/templates/microsoft.securityinsights/alertrules
SEVERITIES = frozenset({"High", "Medium", "Low", "Informational"})
TRIGGER_OPERATORS = {
    "gt": "GreaterThan",
    "lt": "LessThan",
    "eq": "Equal",
    "ne": "NotEqual",
}
TACTICS = frozenset(
    {
        "Reconnaissance",
        "ResourceDevelopment",
        "InitialAccess",
        "Execution",
        "Persistence",
        "PrivilegeEscalation",
        "DefenseEvasion",
        "CredentialAccess",
        "Discovery",
        "LateralMovement",
        "Collection",
        "Exfiltration",
        "CommandAndControl",
        "Impact",
        "PreAttack",
        "ImpairProcessControl",
        "InhibitResponseFunction",
    }
)

# Limits the Azure-Sentinel content validator applies to scheduled rule templates.
_MIN_PERIOD_MINUTES = 5
_MAX_PERIOD_MINUTES = 14 * 24 * 60
_MAX_NAME = 256
_MAX_DESCRIPTION = 5000
_MAX_QUERY = 10_000
_MAX_THRESHOLD = 10_000
_MAX_ENTITY_MAPPINGS = 5
_MAX_FIELD_MAPPINGS = 3
_MAX_CUSTOM_DETAILS = 20

_DURATION = re.compile(r"^(\d+)([mhd])$")
_TECHNIQUE = re.compile(r"^T\d{4}(\.\d{3})?$")
_CUSTOM_DETAIL_KEY = re.compile(r"^[a-zA-Z]\w{0,19}$")
_COLUMN_NAME = re.compile(r"^[a-zA-Z_]\w*$")

# Sentinel's own suppression is off; these two fields are still required by the ARM API.
_SUPPRESSION = {"suppressionEnabled": False, "suppressionDuration": "PT5H"}
_DEFAULT_INCIDENTS = {
    "createIncident": True,
    "groupingConfiguration": {
        "enabled": False,
        "reopenClosedIncident": False,
        "lookbackDuration": "PT5H",
        "matchingMethod": "AllEntities",
        "groupByEntities": [],
        "groupByAlertDetails": [],
        "groupByCustomDetails": [],
    },
}

# Defender vulnerability-management tables exist only in Defender XDR advanced hunting; Sentinel
# has no such table, so a hunting query over them cannot be deployed as a saved search.
_XDR_ONLY_TABLE_PREFIX = "DeviceTvm"
_XDR_ONLY_RE = re.compile(rf"\b{_XDR_ONLY_TABLE_PREFIX}\w+")

# Defender table names the KQL checks declare; used to tell which rules need the Defender XDR
# connector. Optional: without it only requiredDataConnectors decides.
SCHEMAS_FILE = Path("detections") / "schemas" / "mde-tables.json"

QueryKind = Literal["dcr_transform", "analytics_rule", "hunting_query", "workbook"]


class InfraContentError(Exception):
    """The generated content could not be produced at all (e.g. an unreadable folder)."""


@dataclass(frozen=True)
class Rejected:
    """One problem in one detection file: the file, the field, and what is wrong."""

    source: str
    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.source}: {self.field}: {self.reason}"


class _FieldError(Exception):
    def __init__(self, field_name: str, reason: str) -> None:
        super().__init__(f"{field_name}: {reason}")
        self.field_name = field_name
        self.reason = reason


@dataclass
class GeneratedContent:
    """The documents to write under ``infra/generated/`` and what was rejected on the way."""

    documents: dict[str, dict[str, Any]] = field(default_factory=dict)
    rejected: list[Rejected] = field(default_factory=list)

    def rendered(self) -> dict[str, str]:
        """File name to exact file text, as written and as compared by ``--check``."""
        return {name: render_json(doc) for name, doc in sorted(self.documents.items())}


@dataclass(frozen=True)
class EmbeddedQuery:
    """A KQL string the deployment carries.

    ``location`` names the generated file and entry it sits in. For ``dcr_transform`` queries the
    input table is called ``source`` and has the columns in ``source_schema`` (the
    ``(Name:type, ...)`` form Kusto.Language takes); other kinds run against the workspace.
    Workbook queries may contain workbook parameters such as ``{TimeRange}``, which the workbook
    replaces before the query runs.
    """

    location: str
    kind: QueryKind
    name: str
    query: str
    source_schema: str | None = None


def render_json(document: Mapping[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


# --- tables -------------------------------------------------------------------------------------


def tables_content(tables: Sequence[Table] = ALL_TABLES) -> dict[str, Any]:
    """The custom tables as the table resources and the DCR declare them, from ``tables.py``."""
    entries = []
    for table in tables:
        descriptions = {column.name: column.description for column in table.columns}
        columns = [
            {**column, "description": descriptions[column["name"]]}
            for column in table.bicep_columns()
        ]
        entries.append(
            {
                "name": table.name,
                "description": table.description,
                "columns": columns,
                "streamName": table.stream_name,
            }
        )

    # Stream declarations and data flows are written whole, so Bicep only copies them.
    stream_declarations = {table.stream_name: table.stream_declaration() for table in tables}
    data_flows = [
        {
            "streams": [table.stream_name],
            "destinations": ["workspace"],
            # The stream already has the table's columns and types, so rows pass through as sent.
            "transformKql": "source",
            "outputStream": f"Custom-{table.name}",
        }
        for table in tables
    ]
    return {
        "generatedBy": GENERATED_BY,
        "tables": entries,
        "streamDeclarations": stream_declarations,
        "dataFlows": data_flows,
    }


# --- analytics rules ----------------------------------------------------------------------------


def load_analytics_rules(
    folder: Path, repo_root: Path, external_tables: Iterable[str] = ()
) -> tuple[dict[str, Any], list[Rejected]]:
    """``detections/rules/*.yaml`` as ARM ``Scheduled`` alert rules, split by the tables they need.

    Sentinel refuses to create a rule whose query reads a table the workspace does not have, so
    rules over Defender XDR tables (``DeviceEvents``, ...) are kept apart: the deployment creates
    them only when the Defender XDR connector already feeds the workspace. A rule needs them when
    its ``requiredDataConnectors`` name a table that is not ours, or its query names one of
    ``external_tables`` as a word.
    """
    own = frozenset(table.name for table in ALL_TABLES)
    external = frozenset(external_tables)
    on_own: list[dict[str, Any]] = []
    on_xdr: list[dict[str, Any]] = []
    rejected: list[Rejected] = []
    seen: dict[str, str] = {}

    for path, document in _yaml_documents(folder, repo_root, rejected):
        source = _relative(path, repo_root)
        try:
            rule = _analytics_rule(document, source)
        except _FieldError as error:
            rejected.append(Rejected(source, error.field_name, error.reason))
            continue

        if rule["name"] in seen:
            rejected.append(
                Rejected(source, "id", f"{rule['name']} is also the id of {seen[rule['name']]}")
            )
            continue
        seen[rule["name"]] = source

        if _data_types(document) - own or _names_any(rule["properties"]["query"], external):
            on_xdr.append(rule)
        else:
            on_own.append(rule)

    document_out = {
        "generatedBy": GENERATED_BY,
        "onOwnTables": on_own,
        "onDefenderXdrTables": on_xdr,
    }
    logger.info(
        "analytics rules: %d on own tables, %d on Defender XDR tables, %d rejected",
        len(on_own),
        len(on_xdr),
        len(rejected),
    )
    return document_out, rejected


def _analytics_rule(document: Mapping[str, Any], source: str) -> dict[str, Any]:
    kind = _required_str(document, "kind")
    if kind != "Scheduled":
        raise _FieldError("kind", f"only Scheduled rules are deployed, not {kind!r}")

    rule_id = _guid(document, "id")
    frequency = _minutes(document, "queryFrequency")
    period = _minutes(document, "queryPeriod")
    if period < frequency:
        raise _FieldError("queryPeriod", "must be at least queryFrequency")

    operator = _required_str(document, "triggerOperator")
    if operator not in TRIGGER_OPERATORS:
        raise _FieldError("triggerOperator", f"{operator!r} is not one of gt, lt, eq, ne")

    threshold = document.get("triggerThreshold")
    if not isinstance(threshold, int) or isinstance(threshold, bool):
        raise _FieldError("triggerThreshold", "must be an integer")
    if not 0 <= threshold <= _MAX_THRESHOLD:
        raise _FieldError("triggerThreshold", f"must be between 0 and {_MAX_THRESHOLD}")

    severity = _required_str(document, "severity")
    if severity not in SEVERITIES:
        raise _FieldError("severity", f"{severity!r} is not one of {sorted(SEVERITIES)}")

    properties: dict[str, Any] = {
        "displayName": _required_str(document, "name", _MAX_NAME),
        "description": _required_str(document, "description", _MAX_DESCRIPTION).strip(),
        "severity": severity,
        "enabled": True,
        "query": _required_str(document, "query", _MAX_QUERY),
        "queryFrequency": _iso_duration(frequency),
        "queryPeriod": _iso_duration(period),
        "triggerOperator": TRIGGER_OPERATORS[operator],
        "triggerThreshold": threshold,
        **_SUPPRESSION,
        "tactics": _tactics(document),
        "techniques": _techniques(document),
        "entityMappings": _entity_mappings(document),
        "eventGroupingSettings": {"aggregationKind": _aggregation_kind(document)},
        "incidentConfiguration": _incident_configuration(document),
    }
    custom_details = _custom_details(document)
    if custom_details:
        properties["customDetails"] = custom_details
    override = document.get("alertDetailsOverride")
    if override is not None:
        if not isinstance(override, dict):
            raise _FieldError("alertDetailsOverride", "must be a mapping")
        properties["alertDetailsOverride"] = override

    return {"name": rule_id, "sourceFile": source, "properties": properties}


def _tactics(document: Mapping[str, Any]) -> list[str]:
    tactics = _str_list(document, "tactics")
    unknown = [t for t in tactics if t not in TACTICS]
    if unknown:
        raise _FieldError("tactics", f"unknown tactic(s) {unknown}")
    return tactics


def _techniques(document: Mapping[str, Any]) -> list[str]:
    # The stable alert-rule API takes technique ids only (T1562); a sub-technique (T1562.001)
    # is deployed as its parent technique and stays visible in the YAML.
    techniques: list[str] = []
    for technique in _str_list(document, "relevantTechniques"):
        if not _TECHNIQUE.match(technique):
            raise _FieldError("relevantTechniques", f"{technique!r} is not a MITRE technique id")
        parent = technique.split(".")[0]
        if parent not in techniques:
            techniques.append(parent)
    return techniques


def _entity_mappings(document: Mapping[str, Any]) -> list[dict[str, Any]]:
    mappings = document.get("entityMappings")
    if mappings is None:
        return []
    if not isinstance(mappings, list) or not 1 <= len(mappings) <= _MAX_ENTITY_MAPPINGS:
        raise _FieldError("entityMappings", f"must be a list of 1 to {_MAX_ENTITY_MAPPINGS}")

    result = []
    for index, mapping in enumerate(mappings):
        where = f"entityMappings[{index}]"
        if not isinstance(mapping, dict) or not isinstance(mapping.get("entityType"), str):
            raise _FieldError(where, "needs an entityType")
        fields = mapping.get("fieldMappings")
        if not isinstance(fields, list) or not 1 <= len(fields) <= _MAX_FIELD_MAPPINGS:
            raise _FieldError(where, f"needs 1 to {_MAX_FIELD_MAPPINGS} fieldMappings")
        field_out = []
        for field_mapping in fields:
            identifier = (
                field_mapping.get("identifier") if isinstance(field_mapping, dict) else None
            )
            column = field_mapping.get("columnName") if isinstance(field_mapping, dict) else None
            if not isinstance(identifier, str) or not isinstance(column, str):
                raise _FieldError(where, "each field mapping needs identifier and columnName")
            field_out.append({"identifier": identifier, "columnName": column})
        result.append({"entityType": mapping["entityType"], "fieldMappings": field_out})
    return result


def _custom_details(document: Mapping[str, Any]) -> dict[str, str]:
    details = document.get("customDetails")
    if details is None:
        return {}
    if not isinstance(details, dict) or len(details) > _MAX_CUSTOM_DETAILS:
        raise _FieldError("customDetails", f"must be a mapping of at most {_MAX_CUSTOM_DETAILS}")
    for key, column in details.items():
        if not isinstance(key, str) or not _CUSTOM_DETAIL_KEY.match(key):
            raise _FieldError("customDetails", f"key {key!r} is not a valid detail name")
        if not isinstance(column, str) or not _COLUMN_NAME.match(column):
            raise _FieldError("customDetails", f"{key}: {column!r} is not a column name")
    return dict(details)


def _aggregation_kind(document: Mapping[str, Any]) -> str:
    settings = document.get("eventGroupingSettings") or {}
    kind = settings.get("aggregationKind", "SingleAlert") if isinstance(settings, dict) else None
    if kind not in ("SingleAlert", "AlertPerResult"):
        raise _FieldError(
            "eventGroupingSettings", "aggregationKind is SingleAlert or AlertPerResult"
        )
    return str(kind)


def _incident_configuration(document: Mapping[str, Any]) -> dict[str, Any]:
    configured = document.get("incidentConfiguration")
    if configured is None:
        return copy.deepcopy(_DEFAULT_INCIDENTS)
    if not isinstance(configured, dict) or not isinstance(configured.get("createIncident"), bool):
        raise _FieldError("incidentConfiguration", "must be a mapping with createIncident")
    return dict(configured)


def _data_types(document: Mapping[str, Any]) -> set[str]:
    types: set[str] = set()
    connectors = document.get("requiredDataConnectors") or []
    if not isinstance(connectors, list):
        return types
    for connector in connectors:
        if isinstance(connector, dict):
            types.update(t for t in connector.get("dataTypes") or [] if isinstance(t, str))
    return types


# --- hunting queries ----------------------------------------------------------------------------


def load_hunting_queries(
    folder: Path, repo_root: Path, xdr_only_tables: Iterable[str] = ()
) -> tuple[dict[str, Any], list[Rejected]]:
    """``detections/hunting/*.yaml`` as saved searches in Sentinel's "Hunting Queries" category.

    Queries marked ``runsIn: DefenderXDR`` or reading Defender XDR-only tables (``DeviceTvm*``
    and ``xdr_only_tables``) are listed under ``notDeployed`` with the reason: they run in the
    Defender portal's advanced hunting, not in the workspace. Subfolders are searched too.
    """
    xdr_only = frozenset(xdr_only_tables)
    queries: list[dict[str, Any]] = []
    not_deployed: list[dict[str, str]] = []
    rejected: list[Rejected] = []
    seen: dict[str, str] = {}

    for path, document in _yaml_documents(folder, repo_root, rejected, recursive=True):
        source = _relative(path, repo_root)
        try:
            query = _hunting_query(document, source)
        except _FieldError as error:
            rejected.append(Rejected(source, error.field_name, error.reason))
            continue

        if query["name"] in seen:
            rejected.append(
                Rejected(source, "id", f"{query['name']} is also the id of {seen[query['name']]}")
            )
            continue
        seen[query["name"]] = source

        declared = {t for t in _data_types(document) if t.startswith(_XDR_ONLY_TABLE_PREFIX)}
        marked = document.get("runsIn") == "DefenderXDR"
        if (
            marked
            or declared
            or _names_any(query["query"], xdr_only)
            or _XDR_ONLY_RE.search(query["query"])
        ):
            reason = "runs in Defender XDR advanced hunting only (e.g. DeviceTvm* tables)"
            not_deployed.append({"sourceFile": source, "reason": reason})
            continue
        queries.append(query)

    document_out = {"generatedBy": GENERATED_BY, "queries": queries, "notDeployed": not_deployed}
    logger.info(
        "hunting queries: %d deployed, %d Defender XDR only, %d rejected",
        len(queries),
        len(not_deployed),
        len(rejected),
    )
    return document_out, rejected


def _hunting_query(document: Mapping[str, Any], source: str) -> dict[str, Any]:
    techniques = []
    for technique in _str_list(document, "relevantTechniques"):
        if not _TECHNIQUE.match(technique):
            raise _FieldError("relevantTechniques", f"{technique!r} is not a MITRE technique id")
        techniques.append(technique)

    description = _required_str(document, "description", _MAX_DESCRIPTION).strip()
    return {
        "name": _guid(document, "id"),
        "sourceFile": source,
        "displayName": _required_str(document, "name", _MAX_NAME),
        "query": _required_str(document, "query", _MAX_QUERY),
        # Sentinel's hunting blade reads these three tags.
        "tags": [
            {"name": "description", "value": description},
            {"name": "tactics", "value": ",".join(_tactics(document))},
            {"name": "techniques", "value": ",".join(techniques)},
        ],
    }


# --- workbooks ----------------------------------------------------------------------------------


def load_workbooks(folder: Path, repo_root: Path) -> tuple[dict[str, Any], list[Rejected]]:
    """``detections/workbooks/*.json`` (gallery template JSON) serialised for the workbook resource.

    The display name is the first Markdown heading of the workbook's first text item, or else
    the file name; the key (the file name without ``.json`` or ``.workbook.json``) seeds the
    workbook's deterministic resource name in Bicep.
    """
    workbooks: list[dict[str, Any]] = []
    rejected: list[Rejected] = []
    for path in _files(folder, "*.json"):
        source = _relative(path, repo_root)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            rejected.append(Rejected(source, "(file)", f"not readable JSON: {error}"))
            continue
        if not isinstance(data, dict) or data.get("version") != "Notebook/1.0":
            rejected.append(Rejected(source, "version", "a workbook must be Notebook/1.0 JSON"))
            continue
        if not isinstance(data.get("items"), list):
            rejected.append(Rejected(source, "items", "a workbook needs a list of items"))
            continue

        key = path.name.removesuffix(".json").removesuffix(".workbook")
        workbooks.append(
            {
                "key": key,
                "sourceFile": source,
                "displayName": _workbook_title(data) or key.replace("-", " ").capitalize(),
                "serializedData": json.dumps(data, separators=(",", ":"), ensure_ascii=False),
            }
        )
    return {"generatedBy": GENERATED_BY, "workbooks": workbooks}, rejected


def _workbook_title(data: Mapping[str, Any]) -> str | None:
    for item in data["items"]:
        if isinstance(item, dict) and item.get("type") == 1:
            text = (item.get("content") or {}).get("json", "")
            for line in str(text).splitlines():
                if line.startswith("#"):
                    return line.lstrip("#").strip() or None
            return None
    return None


def _workbook_queries(serialized: str) -> list[tuple[str, str]]:
    """``(item name, KQL)`` for every query item and query-backed parameter in a workbook."""
    found: list[tuple[str, str]] = []

    def walk(items: Any) -> None:
        for item in items if isinstance(items, list) else []:
            if not isinstance(item, dict):
                continue
            content = item.get("content") or {}
            name = str(item.get("name") or content.get("title") or "item")
            if isinstance(content.get("query"), str):
                found.append((name, content["query"]))
            for parameter in content.get("parameters") or []:
                if isinstance(parameter, dict) and isinstance(parameter.get("query"), str):
                    found.append(
                        (f"{name}/{parameter.get('name', 'parameter')}", parameter["query"])
                    )
            walk(content.get("items"))  # groups nest their items

    walk(json.loads(serialized).get("items"))
    return found


# --- the whole set ------------------------------------------------------------------------------


def build_content(repo_root: Path = REPO_ROOT) -> GeneratedContent:
    """Every generated document, from ``pipeline/tables.py`` and ``detections/`` under repo_root."""
    detections = repo_root / "detections"
    content = GeneratedContent()
    content.documents[TABLES_FILE] = tables_content()

    sentinel_tables, xdr_only_tables = _defender_tables(repo_root / SCHEMAS_FILE)
    rules, rejected = load_analytics_rules(
        detections / "rules", repo_root, sentinel_tables | xdr_only_tables
    )
    content.documents[RULES_FILE] = rules
    content.rejected.extend(rejected)

    hunting, rejected = load_hunting_queries(detections / "hunting", repo_root, xdr_only_tables)
    content.documents[HUNTING_FILE] = hunting
    content.rejected.extend(rejected)

    workbooks, rejected = load_workbooks(detections / "workbooks", repo_root)
    content.documents[WORKBOOKS_FILE] = workbooks
    content.rejected.extend(rejected)
    return content


def write_content(content: GeneratedContent, out_dir: Path) -> list[str]:
    """Write the documents whose text changed; return the names written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in content.rendered().items():
        target = out_dir / name
        if target.is_file() and target.read_text(encoding="utf-8") == text:
            continue
        # Write beside the target and rename, so a failed write never leaves half a file.
        partial = target.with_suffix(".json.partial")
        partial.write_text(text, encoding="utf-8")
        partial.replace(target)
        written.append(name)
    logger.info("infra content: %d file(s) written to %s", len(written), out_dir)
    return written


def stale_files(content: GeneratedContent, out_dir: Path) -> list[str]:
    """Names of generated files that are missing or differ from what the sources produce now."""
    stale = []
    for name, text in content.rendered().items():
        target = out_dir / name
        if not target.is_file() or target.read_text(encoding="utf-8") != text:
            stale.append(name)
    return stale


def embedded_kql(repo_root: Path = REPO_ROOT) -> list[EmbeddedQuery]:
    """Every KQL string in the generated files that the Bicep deploys, with where it sits.

    The Bicep modules hold no KQL of their own (a test checks that), so this is every query the
    deployment sends to Azure: DCR transforms, analytics rules, hunting queries, workbook items.
    """
    generated = repo_root / GENERATED_DIR
    found: list[EmbeddedQuery] = []

    tables = _read_generated(generated / TABLES_FILE)
    schemas = {table.stream_name: table.kql_schema() for table in ALL_TABLES}
    for index, flow in enumerate(tables.get("dataFlows", [])):
        stream = flow["streams"][0]
        found.append(
            EmbeddedQuery(
                location=f"{TABLES_FILE}:dataFlows[{index}]",
                kind="dcr_transform",
                name=stream,
                query=flow["transformKql"],
                source_schema=schemas.get(stream),
            )
        )

    rules = _read_generated(generated / RULES_FILE)
    for group in ("onOwnTables", "onDefenderXdrTables"):
        for index, rule in enumerate(rules.get(group, [])):
            found.append(
                EmbeddedQuery(
                    location=f"{RULES_FILE}:{group}[{index}]",
                    kind="analytics_rule",
                    name=rule["properties"]["displayName"],
                    query=rule["properties"]["query"],
                )
            )

    hunting = _read_generated(generated / HUNTING_FILE)
    for index, query in enumerate(hunting.get("queries", [])):
        found.append(
            EmbeddedQuery(
                location=f"{HUNTING_FILE}:queries[{index}]",
                kind="hunting_query",
                name=query["displayName"],
                query=query["query"],
            )
        )

    workbooks = _read_generated(generated / WORKBOOKS_FILE)
    for index, workbook in enumerate(workbooks.get("workbooks", [])):
        for item_name, kql in _workbook_queries(workbook["serializedData"]):
            found.append(
                EmbeddedQuery(
                    location=f"{WORKBOOKS_FILE}:workbooks[{index}]:{item_name}",
                    kind="workbook",
                    name=f"{workbook['displayName']}: {item_name}",
                    query=kql,
                )
            )
    return found


# --- helpers ------------------------------------------------------------------------------------


def _defender_tables(path: Path) -> tuple[frozenset[str], frozenset[str]]:
    """(tables Sentinel has, tables only Defender XDR has) from the KQL checks' schema file."""
    if not path.is_file():
        return frozenset(), frozenset()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InfraContentError(f"cannot read {path}: {error}") from error

    def names(key: str) -> frozenset[str]:
        tables = data.get(key) if isinstance(data, dict) else None
        return (
            frozenset(str(name) for name in tables)
            if isinstance(tables, dict | list)
            else frozenset()
        )

    return names("sentinel"), names("defender_xdr_only")


def _names_any(query: str, tables: frozenset[str]) -> bool:
    words = set(re.findall(r"\b[A-Za-z_]\w*\b", query))
    return not words.isdisjoint(tables)


def _read_generated(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise InfraContentError(f"cannot read generated file {path}: {error}") from error
    if not isinstance(data, dict):
        raise InfraContentError(f"generated file {path} is not a JSON object")
    return data


def _files(folder: Path, pattern: str) -> list[Path]:
    if not folder.exists():
        return []
    if not folder.is_dir():
        raise InfraContentError(f"{folder} is not a folder")
    try:
        return sorted(p for p in folder.glob(pattern) if p.is_file())
    except OSError as error:
        raise InfraContentError(f"cannot list {folder}: {error}") from error


def _yaml_documents(
    folder: Path, repo_root: Path, rejected: list[Rejected], *, recursive: bool = False
) -> list[tuple[Path, dict[str, Any]]]:
    """Each ``*.yaml``/``*.yml`` file's mapping; unreadable files become rejections.

    Files named ``*.cases.yaml`` hold a rule's test cases, not content, and are skipped.
    """
    documents = []
    prefix = "**/" if recursive else ""
    paths = sorted({*_files(folder, f"{prefix}*.yaml"), *_files(folder, f"{prefix}*.yml")})
    for path in paths:
        if path.name.endswith((".cases.yaml", ".cases.yml")):
            continue
        source = _relative(path, repo_root)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
            rejected.append(Rejected(source, "(file)", f"not readable YAML: {error}"))
            continue
        if not isinstance(data, dict):
            rejected.append(Rejected(source, "(file)", "the YAML document is not a mapping"))
            continue
        documents.append((path, data))
    return documents


def _relative(path: Path, repo_root: Path) -> str:
    try:
        return path.resolve().relative_to(repo_root.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def _required_str(document: Mapping[str, Any], name: str, max_length: int | None = None) -> str:
    value = document.get(name)
    if not isinstance(value, str) or not value.strip():
        raise _FieldError(name, "is required and must be a non-empty string")
    if max_length is not None and len(value) > max_length:
        raise _FieldError(name, f"is {len(value)} characters; the limit is {max_length}")
    return value


def _str_list(document: Mapping[str, Any], name: str) -> list[str]:
    value = document.get(name)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _FieldError(name, "must be a list of strings")
    return list(value)


def _guid(document: Mapping[str, Any], name: str) -> str:
    value = document.get(name)
    if value is None:
        raise _FieldError(name, "is required")
    try:
        return str(UUID(str(value)))
    except ValueError as error:
        raise _FieldError(name, f"{value!r} is not a GUID") from error


def _minutes(document: Mapping[str, Any], name: str) -> int:
    value = document.get(name)
    match = _DURATION.match(value) if isinstance(value, str) else None
    if match is None:
        raise _FieldError(name, f"{value!r} is not a duration such as 5m, 1h or 1d")
    minutes = int(match.group(1)) * {"m": 1, "h": 60, "d": 1440}[match.group(2)]
    if not _MIN_PERIOD_MINUTES <= minutes <= _MAX_PERIOD_MINUTES:
        raise _FieldError(name, f"{value} is outside 5m to 14d")
    return minutes


def _iso_duration(minutes: int) -> str:
    if minutes % 1440 == 0:
        return f"P{minutes // 1440}D"
    if minutes % 60 == 0:
        return f"PT{minutes // 60}H"
    return f"PT{minutes}M"
