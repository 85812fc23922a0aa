"""Every setting the app and the pipeline read is in local.settings.sample.json, explained."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pipeline.app_settings import AppSettings, AppSettingsError, LocalToken

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
