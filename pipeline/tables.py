"""The custom Log Analytics tables, defined once.

Everything that needs a column name reads it from here: the rows the pipeline uploads, the data
collection rule's stream declaration, the Bicep table resource (``infra/`` checks compare against
``bicep_columns``), and the schemas the KQL checks give the Kusto parser. Nothing else spells a
column of ours.

Column types are the ones the Logs Ingestion API and the workspace tables API accept: ``string``,
``int``, ``long``, ``real``, ``boolean``, ``datetime``, ``dynamic``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ColumnType = Literal["string", "int", "long", "real", "boolean", "datetime", "dynamic"]

# Names the workspace reserves for itself; a custom column may not use them.
RESERVED_COLUMN_NAMES = frozenset(
    {"_ResourceId", "id", "_SubscriptionId", "TenantId", "Type", "UniqueId", "Title"}
)


@dataclass(frozen=True)
class Column:
    name: str
    type: ColumnType
    description: str


@dataclass(frozen=True)
class Table:
    name: str  # ends in _CL, as every custom Log Analytics table must
    description: str
    columns: tuple[Column, ...]

    @property
    def stream_name(self) -> str:
        """The DCR input stream that feeds this table."""
        return f"Custom-{self.name}"

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def stream_declaration(self) -> dict[str, list[dict[str, str]]]:
        """The DCR ``streamDeclarations`` entry's body for this table."""
        return {"columns": [{"name": c.name, "type": c.type} for c in self.columns]}

    def bicep_columns(self) -> list[dict[str, str]]:
        """Columns as the workspace tables API spells them (``dateTime``, not ``datetime``)."""
        spelled = {"datetime": "dateTime"}
        return [{"name": c.name, "type": spelled.get(c.type, c.type)} for c in self.columns]

    def kql_schema(self) -> str:
        """``(Name:type, ...)`` as Kusto.Language's TableSymbol takes it."""
        return "(" + ", ".join(f"{c.name}:{c.type}" for c in self.columns) + ")"


COVERAGE = Table(
    name="MdeAvCoverage_CL",
    description="One row per device per pipeline cycle: Defender AV mode and what really enforces.",
    columns=(
        Column("TimeGenerated", "datetime", "When the cycle evaluated the device (UTC)."),
        Column("RowId", "string", "Deterministic id of cycle and device; a re-run repeats it."),
        Column("CycleId", "string", "The pipeline cycle that produced the row."),
        Column("DeviceId", "string", "MDE machine id."),
        Column("DeviceName", "string", "Computer DNS name as MDE reports it."),
        Column("AadDeviceId", "string", "Entra device id, when MDE knows it."),
        Column("Platform", "string", "windows_client, windows_server, macos, linux, ..."),
        Column(
            "AvModeCode",
            "string",
            "Microsoft's numeric AV mode code: 0 active, 1 passive, 2 disabled, 3 or empty other, "
            "4 EDR in block mode, 5 passive audit.",
        ),
        Column("AvState", "string", "The pipeline's state name (active, passive, edr_block, ...)."),
        Column(
            "ModeSource", "string", "Where the mode came from: deviceavinfo, hunting, collector."
        ),
        Column("ModeReason", "string", "Why the pipeline decided that state."),
        Column("AvPlatformVersion", "string", "Defender AV platform (AMProductVersion)."),
        Column("AvEngineVersion", "string", "Defender AV engine (AMEngineVersion)."),
        Column("NetworkProtectionMode", "string", "off, block, audit or unknown."),
        Column("Capabilities", "dynamic", "Capability id to status (enforced, not_enforced, ...)."),
        Column("Gaps", "dynamic", "Capabilities the tenant configures that do not enforce here."),
        Column("GapCount", "int", "Number of entries in Gaps."),
        Column("UnknownCount", "int", "Capabilities whose status is unknown, with a reason."),
        Column("Findings", "dynamic", "Findings that explain the state: [{code, message}]."),
        Column("FindingCodes", "dynamic", "Just the finding codes, for simple filtering."),
        Column("MatrixVersion", "string", "Version of the capability matrix used."),
    ),
)

DETECTIONS = Table(
    name="MdeBlockedAccess_CL",
    description=(
        "One row per connection from a device whose Defender AV cannot enforce network blocks "
        "to a resource the tenant blocks (from the Defender streaming API)."
    ),
    columns=(
        Column("TimeGenerated", "datetime", "When the detection was emitted (UTC)."),
        Column("EventTime", "datetime", "When the device made the connection."),
        Column("DetectionId", "string", "Deterministic id of the event and match."),
        Column("DeviceId", "string", "MDE machine id."),
        Column("DeviceName", "string", "Device name from the event."),
        Column("AvModeCode", "string", "Microsoft's numeric AV mode code at the time."),
        Column("AvState", "string", "The pipeline's state name at the time."),
        Column("RemoteUrl", "string", "URL or host the device reached, if any."),
        Column("RemoteIP", "string", "Remote IP address, if any."),
        Column("RemotePort", "int", "Remote port."),
        Column("MatchedValue", "string", "The blocklist entry that matched."),
        Column("MatchedType", "string", "domain, url or ip."),
        Column("IndicatorId", "string", "The MDE indicator id behind the entry."),
        Column("IndicatorAction", "string", "Block, BlockAndRemediate or Warn."),
        Column("MatchedApp", "string", "Unsanctioned cloud app, when the entry came from one."),
        Column("InitiatingProcessFileName", "string", "Process that made the connection."),
        Column("InitiatingProcessAccountName", "string", "Account of that process."),
        Column("SourceCategory", "string", "Streaming API category of the event."),
    ),
)

ALL_TABLES: tuple[Table, ...] = (COVERAGE, DETECTIONS)


def _check(tables: tuple[Table, ...]) -> None:
    # Checked at import: a wrong definition must fail every test, not a deployment.
    for table in tables:
        if not table.name.endswith("_CL"):
            raise ValueError(f"custom table {table.name!r} must end in _CL")
        names = table.column_names
        if len(set(names)) != len(names):
            raise ValueError(f"table {table.name} repeats a column")
        if names[0] != "TimeGenerated":
            raise ValueError(f"table {table.name} must start with TimeGenerated")
        for name in names:
            if name in RESERVED_COLUMN_NAMES or not name[0].isalpha() or len(name) > 45:
                raise ValueError(f"table {table.name}: column name {name!r} is not allowed")


_check(ALL_TABLES)
