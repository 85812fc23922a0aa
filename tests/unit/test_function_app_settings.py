"""Every setting the app and the pipeline read is in local.settings.sample.json, explained."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pipeline.app_settings import AppSettings, AppSettingsError, LocalToken
from pipeline.config import (
    CONNECTION_SETTINGS,
    STORAGE_SETTINGS,
    ConfigError,
    Connections,
    PipelineSettings,
    StorageNames,
)

REPO = Path(__file__).resolve().parents[2]
SAMPLE = json.loads((REPO / "local.settings.sample.json").read_text(encoding="utf-8"))

# env.get("X"), environ.get("X"), environment.get("X"), env["X"] and helpers called (env, "X").
_READS = re.compile(
    r"""(?:\b(?:env|environ|environment)\.get\(\s*|\b(?:env|environ)\[|\(env,\s*)["']([A-Za-z_][A-Za-z0-9_]*)["']"""
)
_BINDING_EXPRESSIONS = re.compile(r"%([A-Za-z_][A-Za-z0-9_]*)%")
_CONNECTIONS = re.compile(r"""connection=["']([A-Za-z_][A-Za-z0-9_]*)["']""")
# strftime patterns are not binding expressions.
_NOT_SETTINGS = {"Y", "m", "d", "H", "M", "S"}


def settings_read() -> set[str]:
    names: set[str] = set()
    for path in [*sorted((REPO / "pipeline").rglob("*.py")), REPO / "function_app.py"]:
        if "lab" in path.relative_to(REPO).parts:
            continue  # the lab is configured by its own command-line options
        text = path.read_text(encoding="utf-8")
        names.update(_READS.findall(text))
    app = (REPO / "function_app.py").read_text(encoding="utf-8")
    names.update(set(_BINDING_EXPRESSIONS.findall(app)) - _NOT_SETTINGS)
    # Read by name from a table, not a literal.
    names.update(STORAGE_SETTINGS.values(), CONNECTION_SETTINGS.values())
    return names


def test_every_setting_read_is_in_the_sample() -> None:
    missing = settings_read() - set(SAMPLE["Values"])

    assert not missing, f"add to local.settings.sample.json: {sorted(missing)}"


def test_identity_based_connections_are_spelled_out() -> None:
    app = (REPO / "function_app.py").read_text(encoding="utf-8")
    values = SAMPLE["Values"]

    for connection in set(_CONNECTIONS.findall(app)):
        assert f"{connection}__credential" in values, connection
        assert values[f"{connection}__credential"] == "managedidentity"
    assert "DefenderStream__fullyQualifiedNamespace" in values
    assert "AzureWebJobsStorage__accountName" in values


def test_every_setting_has_a_meaning_and_no_secret() -> None:
    values, meanings = SAMPLE["Values"], SAMPLE["_meanings"]

    assert set(values) == set(meanings)
    assert all(isinstance(value, str) for value in values.values())
    assert all(len(meaning) > 10 for meaning in meanings.values())
    assert values["MDE_CLIENT_SECRET"] == ""
    assert "AccountKey" not in json.dumps(values)


def test_the_sample_is_a_valid_configuration() -> None:
    settings = AppSettings.from_env(SAMPLE["Values"])

    assert settings.storage_connection_string == "UseDevelopmentStorage=true"
    assert isinstance(settings.ingestion_credential(), LocalToken)


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ({"STREAM_UNKNOWN_DEVICES": "maybe"}, "STREAM_UNKNOWN_DEVICES"),
        ({"STREAM_CACHE_SECONDS": "soon"}, "STREAM_CACHE_SECONDS"),
        ({"LOGS_INGESTION_ENDPOINT": "http://ingest.example"}, "LOGS_INGESTION_ENDPOINT"),
        ({"AzureWebJobsStorage": ""}, "STORAGE_BLOB_ENDPOINT"),
    ],
)
def test_a_bad_setting_is_named(override: dict[str, str], named: str) -> None:
    with pytest.raises(AppSettingsError, match=named):
        AppSettings.from_env({**SAMPLE["Values"], **override})


def test_the_cycle_and_the_app_read_the_same_storage_names() -> None:
    env = {
        **SAMPLE["Values"],
        "AUDIT_TABLE_NAME": "Audit2",
        "STATE_CONTAINER": "state-2",
        "FANOUT_QUEUE": "",
    }
    app, cycle = AppSettings.from_env(env), PipelineSettings.from_env(env)

    for field in ("audit_table", "coverage_table", "blocklist_container", "state_container"):
        assert getattr(app, field) == getattr(cycle, field), field
    assert (app.audit_table, app.state_container) == ("Audit2", "state-2")
    assert app.dead_letter_container == cycle.dead_letter_container == "dead-letters"
    # Unset fan-out queue: the cycle never fans out, and re-evaluation says it is not set up.
    assert app.fanout_queue is cycle.fanout_queue is None
    with pytest.raises(AppSettingsError, match="FANOUT_QUEUE"):
        app.require_fanout_queue()
    assert AppSettings.from_env(SAMPLE["Values"]).require_fanout_queue() == "device-fanout"


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("AUDIT_TABLE_NAME", "audit-trail"),  # tables take no hyphen
        ("COVERAGE_TABLE_NAME", "1coverage"),  # nor a leading digit
        ("BLOCKLIST_CONTAINER", "Blocklists"),  # containers are lower case
        ("STATE_CONTAINER", "state--x"),  # no double hyphen
        ("COLLECTOR_QUEUE", "ab"),  # at least three characters
        ("FANOUT_QUEUE", "fan_out"),
        ("DEAD_LETTER_CONTAINER", "x" * 64),
    ],
)
def test_a_storage_name_azure_would_refuse_is_named_by_both_readers(
    setting: str, value: str
) -> None:
    env = {**SAMPLE["Values"], setting: value}
    with pytest.raises(ConfigError, match=setting):
        StorageNames.from_env(env)
    with pytest.raises(ConfigError, match=setting):
        PipelineSettings.from_env(env)
    with pytest.raises(AppSettingsError, match=setting):
        AppSettings.from_env(env)


def test_the_sample_names_are_the_defaults() -> None:
    names = StorageNames.from_env(SAMPLE["Values"])
    defaults = StorageNames()

    for field, setting in STORAGE_SETTINGS.items():
        if field != "fanout_queue":
            assert getattr(names, field) == getattr(defaults, field), setting


def test_both_readers_find_storage_and_ingestion_in_the_same_settings() -> None:
    env = {
        **SAMPLE["Values"],
        "AzureWebJobsStorage": "",
        "STORAGE_BLOB_ENDPOINT": " https://acct.blob.core.windows.net/ ",
        "STORAGE_QUEUE_ENDPOINT": "https://acct.queue.core.windows.net/",
        "STORAGE_TABLE_ENDPOINT": "https://acct.table.core.windows.net/",
        "AZURE_CLIENT_ID": "11111111-2222-3333-4444-555555555555",
        "LOGS_INGESTION_ENDPOINT": "https://dce.ingest.monitor.azure.com",
    }
    where = Connections.from_env(env)
    app, cycle = AppSettings.from_env(env), PipelineSettings.from_env(env)

    assert where.storage_connection_string is None
    assert where.blob_endpoint == "https://acct.blob.core.windows.net/"  # trimmed
    for field in ("blob_endpoint", "queue_endpoint", "table_endpoint"):
        assert getattr(app, field) == getattr(cycle, field) == getattr(where, field)
    assert app.client_id == cycle.managed_identity_client_id == where.client_id
    assert app.ingestion_endpoint == cycle.ingestion_endpoint == where.ingestion_endpoint
    assert app.dcr_immutable_id == cycle.dcr_immutable_id == where.dcr_immutable_id
    with pytest.raises(ConfigError, match="LOGS_INGESTION_DCR_IMMUTABLE_ID"):
        PipelineSettings.from_env({**env, "LOGS_INGESTION_DCR_IMMUTABLE_ID": "  "})
