"""The Bicep in infra/, checked without a Bicep compiler: syntax, structure, least privilege."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from pipeline.tables import ALL_TABLES
from tests.support import infra as bicep

INFRA = bicep.INFRA
MODULES = INFRA / "modules"

# Built-in role ids, https://learn.microsoft.com/azure/role-based-access-control/built-in-roles
ROLE_NAMES = {
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "Storage Table Data Contributor",
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": "Storage Queue Data Contributor",
    "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
    "a638d3c7-ab3a-418d-83e6-5f17a39d4fde": "Azure Event Hubs Data Receiver",
    "ab8e14d6-4a74-4a29-9ba8-549422addade": "Microsoft Sentinel Contributor",
}
# rbac.bicep holds the assignments in the app's resource group; rbac-workspace.bicep the one on
# the workspace, which may live in another resource group.
RBAC_FILES = (MODULES / "rbac.bicep", MODULES / "rbac-workspace.bicep")

FILES = bicep.bicep_files()
FILE_IDS = [str(p.relative_to(INFRA)) for p in FILES]


def _resource(path: Path, name: str) -> dict:
    parsed = bicep.parse_file(path)
    return bicep.unwrap(parsed["resources"][name]["config"])


def test_the_expected_modules_exist() -> None:
    assert {p.name for p in FILES} >= {
        "main.bicep",
        "rbac.bicep",
        "storage.bicep",
        "function-app.bicep",
        "app-insights.bicep",
        "workspace.bicep",
        "custom-tables.bicep",
        "ingestion.bicep",
        "sentinel.bicep",
        "event-hubs.bicep",
        "identity.bicep",
    }


# --- syntax ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", FILES, ids=FILE_IDS)
def test_parses_with_tree_sitter_without_error_nodes(path: Path) -> None:
    assert bicep.syntax_errors(path.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize("path", FILES, ids=FILE_IDS)
def test_parses_with_pycep(path: Path) -> None:
    parsed = bicep.parse_file(path)

    assert parsed.get("resources") or parsed.get("modules")


def test_syntax_check_catches_a_missing_brace() -> None:
    broken = "resource x 'Microsoft.Storage/storageAccounts@2023-05-01' = {\n  name: 'x'\n"

    assert bicep.syntax_errors(broken) != []


# --- parameters -----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", FILES, ids=FILE_IDS)
def test_every_parameter_is_described_and_none_looks_secret_with_a_default(path: Path) -> None:
    parsed = bicep.parse_file(path)

    assert bicep.undescribed_parameters(parsed) == []
    assert bicep.secret_defaults(parsed) == []


def test_parameter_checks_catch_bad_samples() -> None:
    parsed = bicep.parse(
        "@description('described')\nparam fine string\n"
        "param bare string\n"
        "@description('a key with a default')\nparam storageKey string = 'abc'\n"
        "@secure()\n@description('secure with a default')\nparam other string = 'x'\n"
    )

    assert bicep.undescribed_parameters(parsed) == ["bare"]
    assert bicep.secret_defaults(parsed) == ["storageKey", "other"]


def test_parameters_file_names_only_parameters_main_declares() -> None:
    parameters = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    declared = bicep.parse_file(INFRA / "main.bicep")["parameters"]

    assert set(parameters) <= set(declared)
    required = {name for name, spec in declared.items() if spec.get("default") is None}
    assert required <= set(parameters)


def test_modules_receive_exactly_their_parameters() -> None:
    assert bicep.module_parameter_problems(INFRA / "main.bicep") == []


# --- role assignments -----------------------------------------------------------------------------


def test_role_assignments_live_only_in_rbac_bicep() -> None:
    holders = {
        path.name
        for path in FILES
        for _, resource, _ in bicep.resources(bicep.parse_file(path))
        if resource["type"] == "Microsoft.Authorization/roleAssignments"
    }

    assert holders == {path.name for path in RBAC_FILES}


@pytest.mark.parametrize("path", RBAC_FILES, ids=[p.name for p in RBAC_FILES])
def test_every_role_assignment_is_named_scoped_and_deterministic(path: Path) -> None:
    parsed = bicep.parse_file(path)

    assert bicep.role_assignment_problems(parsed, ROLE_NAMES) == []


def test_each_role_sits_on_the_single_resource_that_needs_it() -> None:
    granted = set()
    for path in RBAC_FILES:
        parsed = bicep.parse_file(path)
        scope_types = {name: r["type"] for name, r, _ in bicep.resources(parsed)}
        for _, resource, body in bicep.resources(parsed):
            if resource["type"] == "Microsoft.Authorization/roleAssignments":
                role = bicep.function(body["properties"]["roleDefinitionId"])
                assert role is not None
                granted.add((ROLE_NAMES[role[1]["resource_name_1"]], scope_types[body["scope"]]))

    assert granted == {
        ("Storage Blob Data Owner", "Microsoft.Storage/storageAccounts"),
        ("Storage Table Data Contributor", "Microsoft.Storage/storageAccounts"),
        ("Storage Queue Data Contributor", "Microsoft.Storage/storageAccounts"),
        ("Monitoring Metrics Publisher", "Microsoft.Insights/dataCollectionRules"),
        ("Monitoring Metrics Publisher", "Microsoft.Insights/components"),
        ("Azure Event Hubs Data Receiver", "Microsoft.EventHub/namespaces/eventhubs"),
        ("Microsoft Sentinel Contributor", "Microsoft.OperationalInsights/workspaces"),
    }


def test_role_assignment_check_catches_a_bad_sample() -> None:
    parsed = bicep.parse(
        "resource st 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {\n  name: 'x'\n}\n"
        "resource bad 'Microsoft.Authorization/roleAssignments@2022-04-01' = {\n"
        "  name: 'fixed-name'\n  scope: st\n  properties: {\n"
        "    description: 'Owner of everything'\n"
        "    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions',"
        " 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b')\n"
        "    principalId: principalId\n  }\n}\n"
    )

    problems = bicep.role_assignment_problems(parsed, ROLE_NAMES)

    assert any("description" in p for p in problems)
    assert any("principalType" in p for p in problems)
    assert any("guid(" in p for p in problems)


# --- storage, identity, no keys -------------------------------------------------------------------


def test_storage_refuses_shared_keys_old_tls_and_public_blobs() -> None:
    props = _resource(MODULES / "storage.bicep", "storage")["properties"]

    assert props["allowSharedKeyAccess"] is False
    assert props["minimumTlsVersion"] == "TLS1_2"
    assert props["allowBlobPublicAccess"] is False
    assert props["supportsHttpsTrafficOnly"] is True
    container = _resource(MODULES / "storage.bicep", "containers")
    assert container["properties"]["publicAccess"] == "None"


def test_local_authentication_is_off_everywhere_it_exists() -> None:
    app_insights = _resource(MODULES / "app-insights.bicep", "appInsights")["properties"]
    event_hubs = _resource(MODULES / "event-hubs.bicep", "namespace")["properties"]
    workspace = _resource(MODULES / "workspace.bicep", "workspace")["properties"]

    assert app_insights["DisableLocalAuth"] is True
    assert event_hubs["disableLocalAuth"] is True
    assert event_hubs["minimumTlsVersion"] == "1.2"
    assert workspace["features"]["disableLocalAuth"] is True


def test_function_app_is_flex_python_311_on_its_user_assigned_identity() -> None:
    site = _resource(MODULES / "function-app.bicep", "site")
    plan = _resource(MODULES / "function-app.bicep", "plan")
    config = site["properties"]["functionAppConfig"]

    assert plan["sku"] == {"name": "FC1", "tier": "FlexConsumption"}
    assert config["runtime"] == {"name": "python", "version": "3.11"}
    assert site["identity"]["type"] == "UserAssigned"
    assert config["deployment"]["storage"]["authentication"]["type"] == "UserAssignedIdentity"
    assert site["properties"]["httpsOnly"] is True
    for policy in ("ftpCredentials", "scmCredentials"):
        assert _resource(MODULES / "function-app.bicep", policy)["properties"]["allow"] is False


def test_app_settings_are_identity_based_and_hold_no_secret() -> None:
    main = bicep.parse_file(INFRA / "main.bicep")["variables"]
    settings = {**main["baseSettings"]["value"], **main["streamingSettings"]["value"]}

    assert settings["AzureWebJobsStorage__credential"] == "managedidentity"
    assert bicep.accessor(settings["AzureWebJobsStorage__clientId"]) == [
        "identity",
        "outputs",
        "clientId",
    ]
    assert "AzureWebJobsStorage__accountName" in settings
    assert settings["DefenderStream__credential"] == "managedidentity"
    assert "FUNCTIONS_WORKER_RUNTIME" not in settings  # Flex Consumption rejects it
    # The App Insights connection string is an address; local auth is off, so it grants nothing.
    # `__credential: managedidentity` names the identity to use; it is not a secret.
    suspicious = [
        key
        for key, value in settings.items()
        if bicep.SECRET_NAME.search(key)
        and value != "managedidentity"
        and key != "APPLICATIONINSIGHTS_CONNECTION_STRING"
    ]
    assert suspicious == []


@pytest.mark.parametrize("path", FILES, ids=FILE_IDS)
def test_no_keys_are_read_anywhere(path: Path) -> None:
    text = path.read_text(encoding="utf-8")

    assert "listKeys" not in text
    assert "AccountKey=" not in text
    assert "SharedAccessKey" not in text


# --- tables, DCR, detections: generated content only ----------------------------------------------


def _loaded_json(path: Path) -> set[str]:
    loaded = set()
    for variable in (bicep.parse_file(path).get("variables") or {}).values():
        call = bicep.function(variable["value"])
        if call and call[0] == "load_json_content":
            loaded.add(call[1]["file_path"])
    return loaded


def test_tables_and_dcr_read_the_generated_schema() -> None:
    assert _loaded_json(MODULES / "custom-tables.bicep") == {"../generated/tables.json"}
    assert _loaded_json(MODULES / "ingestion.bicep") == {"../generated/tables.json"}
    rule = _resource(MODULES / "ingestion.bicep", "rule")["properties"]
    table = _resource(MODULES / "custom-tables.bicep", "tables")["properties"]["schema"]

    assert bicep.accessor(rule["streamDeclarations"]) == ["content", "streamDeclarations"]
    assert bicep.accessor(rule["dataFlows"]) == ["content", "dataFlows"]
    assert bicep.accessor(table["columns"]) == ["table", "columns"]

    generated = json.loads((INFRA / "generated" / "tables.json").read_text())
    assert generated["streamDeclarations"] == {
        t.stream_name: t.stream_declaration() for t in ALL_TABLES
    }


def test_the_dcr_is_created_after_the_tables() -> None:
    modules = bicep.parse_file(INFRA / "main.bicep")["modules"]

    assert "customTables" in bicep.unwrap(modules["ingestion"]["config"])["dependsOn"]
    assert "customTables" in bicep.unwrap(modules["sentinel"]["config"])["dependsOn"]


def test_sentinel_content_comes_from_the_generated_files() -> None:
    assert _loaded_json(MODULES / "sentinel.bicep") == {
        "../generated/analytics-rules.json",
        "../generated/hunting-queries.json",
        "../generated/workbooks.json",
    }
    rules = bicep.parse_file(MODULES / "sentinel.bicep")["resources"]["analyticsRules"]
    assert rules["config"]["loop_type"]["detail"]["array_name"] == "rulesToDeploy"


@pytest.mark.parametrize("path", FILES, ids=FILE_IDS)
def test_no_bicep_file_carries_its_own_kql(path: Path) -> None:
    assert bicep.literal_kql(bicep.parse_file(path)) == []


def test_literal_kql_check_catches_a_literal_query() -> None:
    parsed = bicep.parse(
        "resource r 'Microsoft.SecurityInsights/alertRules@2023-02-01' = {\n"
        "  name: 'r'\n  kind: 'Scheduled'\n  properties: {\n"
        "    query: 'MdeAvCoverage_CL | take 1'\n  }\n}\n"
    )

    assert bicep.literal_kql(parsed) == ["r.query"]


# --- azd ------------------------------------------------------------------------------------------


def test_azure_yaml_provisions_infra_and_deploys_the_python_function_app() -> None:
    azure = yaml.safe_load((bicep.REPO / "azure.yaml").read_text())

    assert azure["infra"] == {"provider": "bicep", "path": "infra", "module": "main"}
    assert azure["services"]["api"] == {"project": ".", "language": "python", "host": "function"}
    function_app = bicep.parse_file(INFRA / "main.bicep")["modules"]["functionApp"]
    assert bicep.unwrap(function_app["config"])["params"]["serviceName"] == "api"
    hook = azure["hooks"]["postprovision"]["posix"]["run"]
    assert (bicep.REPO / hook).is_file()


def test_outputs_the_scripts_and_the_app_read_are_there() -> None:
    outputs = bicep.parse_file(INFRA / "main.bicep")["outputs"]

    assert {
        "AZURE_FUNCTION_APP_NAME",
        "MANAGED_IDENTITY_PRINCIPAL_ID",
        "LOGS_INGESTION_ENDPOINT",
        "LOGS_INGESTION_DCR_IMMUTABLE_ID",
        "STREAMING_EVENT_HUB_NAMESPACE_ID",
    } <= set(outputs)
