"""Coverage rows match the table definition; pipeline settings are validated."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pipeline.config import ConfigError, PipelineSettings
from pipeline.evaluate import Evaluator
from pipeline.matrix import load_matrix
from pipeline.model import State
from pipeline.rows import coverage_row
from pipeline.sinks.log_analytics import prepare_rows
from pipeline.tables import COVERAGE
from tests.support.devices import device, full_tenant

AT = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def test_coverage_row_has_exactly_the_table_columns_and_passes_validation() -> None:
    coverage = Evaluator(load_matrix(), full_tenant()).evaluate(device(state=State.PASSIVE))
    row = coverage_row(coverage, "cycle-1", AT)
    assert set(row) == set(COVERAGE.column_names)
    good, refused, _ = prepare_rows(COVERAGE, [row], 1_000_000)
    assert len(good) == 1
    assert not refused
    assert row["AvModeCode"] is None or row["AvModeCode"] in {"0", "1", "2", "3", "4", "5", ""}
    assert row["GapCount"] == len(row["Gaps"]) > 0


def test_row_id_is_stable_per_cycle_and_device() -> None:
    evaluator = Evaluator(load_matrix(), full_tenant())
    first = coverage_row(evaluator.evaluate(device()), "cycle-1", AT)
    again = coverage_row(evaluator.evaluate(device()), "cycle-1", AT)
    other = coverage_row(evaluator.evaluate(device()), "cycle-2", AT)
    assert first["RowId"] == again["RowId"] != other["RowId"]


BASE = {
    "LOGS_INGESTION_ENDPOINT": "https://dce.example.ingest.monitor.azure.com",
    "LOGS_INGESTION_DCR_IMMUTABLE_ID": "dcr-0123",
    "AzureWebJobsStorage": "UseDevelopmentStorage=true",
}


def test_settings_default_to_dry_run_and_undeclared_tenant_toggles() -> None:
    settings = PipelineSettings.from_env(BASE)
    assert settings.actions.actions_enabled is False
    assert settings.actions.mode.value == "dry_run"
    assert settings.tenant.custom_network_indicators is None
    assert settings.audit_table == "AuditTrail"


def test_settings_read_tenant_toggles_and_refuse_bad_values() -> None:
    settings = PipelineSettings.from_env(
        {**BASE, "TENANT_MDE_LICENSE": "p2", "TENANT_CUSTOM_NETWORK_INDICATORS": "true"}
    )
    assert settings.tenant.mde_license == "P2"
    assert settings.tenant.custom_network_indicators is True
    with pytest.raises(ConfigError, match="ACTIONS_ENABLED"):
        PipelineSettings.from_env({**BASE, "ACTIONS_ENABLED": "maybe"})
    with pytest.raises(ConfigError, match="TENANT_MDE_LICENSE"):
        PipelineSettings.from_env({**BASE, "TENANT_MDE_LICENSE": "E5"})


def test_missing_settings_are_named() -> None:
    with pytest.raises(ConfigError) as caught:
        PipelineSettings.from_env({})
    message = str(caught.value)
    assert "LOGS_INGESTION_ENDPOINT" in message
    assert "STORAGE_BLOB_ENDPOINT" in message
