"""Offline checks of the Bicep in infra/: syntax (tree-sitter-bicep) and structure (pycep-parser).

No Bicep compiler can be installed on these machines, so these checks stand in for what they
can: a parse with no error nodes, and rules over the parsed structure. Each check returns a list
of problems (empty when fine) so the tests can also prove a check catches a bad sample.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import tree_sitter
import tree_sitter_bicep
from pycep import BicepParser

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
SECRET_NAME = re.compile(r"secret|password|passwd|key|token|connectionstring|sas|credential", re.I)


def bicep_files() -> list[Path]:
    return sorted(INFRA.rglob("*.bicep"))


@functools.cache
def _tree_sitter() -> tree_sitter.Parser:
    return tree_sitter.Parser(tree_sitter.Language(tree_sitter_bicep.language()))


@functools.cache
def _pycep() -> BicepParser:
    return BicepParser()


def syntax_errors(source: str) -> list[str]:
    """Every ERROR or missing node tree-sitter-bicep finds, as 'line:column kind'."""
    tree = _tree_sitter().parse(source.encode())
    problems: list[str] = []

    def walk(node: tree_sitter.Node) -> None:
        if node.type == "ERROR" or node.is_missing:
            line, column = node.start_point
            problems.append(f"{line + 1}:{column + 1} {'missing' if node.is_missing else 'ERROR'}")
        for child in node.children:
            walk(child)

    walk(tree.root_node)
    return problems


def parse(source: str) -> dict[str, Any]:
    return dict(_pycep().parse(text=source))


@functools.cache
def parse_file(path: Path) -> dict[str, Any]:
    return parse(path.read_text(encoding="utf-8"))


def resources(parsed: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(symbolic name, resource, its body) with loops and conditions unwrapped."""
    for name, resource in (parsed.get("resources") or {}).items():
        yield name, resource, unwrap(resource["config"])


def unwrap(config: dict[str, Any]) -> dict[str, Any]:
    # A looped or conditional resource nests its body one level down.
    while (
        isinstance(config, dict)
        and "config" in config
        and ("loop_type" in config or "condition" in config)
    ):
        config = config["config"]
    return config


def function(value: Any) -> tuple[str, dict[str, Any]] | None:
    if isinstance(value, dict) and "function" in value:
        return value["function"]["type"], value["function"]["parameters"]
    return None


def accessor(value: Any) -> list[str] | None:
    """``a.b.c`` as ['a', 'b', 'c']; None when value is not a property access."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict) and value.get("operator", {}).get("type") == "property_accessor":
        operands = value["operator"]["operands"]
        left, right = accessor(operands["operand_1"]), accessor(operands["operand_2"])
        if left is not None and right is not None:
            return left + right
    return None


# --- checks ---------------------------------------------------------------------------------------


def undescribed_parameters(parsed: dict[str, Any]) -> list[str]:
    problems = []
    for name, parameter in (parsed.get("parameters") or {}).items():
        descriptions = [
            d["argument"] for d in parameter["decorators"] if d.get("type") == "description"
        ]
        if not descriptions or not str(descriptions[0]).strip():
            problems.append(name)
    return problems


def secret_defaults(parsed: dict[str, Any]) -> list[str]:
    """Parameters that look secret (by name or @secure()) yet have a default value."""
    problems = []
    for name, parameter in (parsed.get("parameters") or {}).items():
        secure = any(d.get("type") == "secure" for d in parameter["decorators"])
        if (secure or SECRET_NAME.search(name)) and parameter.get("default") not in (None, ""):
            problems.append(name)
    return problems


def role_assignment_problems(parsed: dict[str, Any], role_names: dict[str, str]) -> list[str]:
    """Each role assignment: known role GUID, its name in the description, principalType,
    a guid() name over the scope's id, the principal and the role, and one resource as scope."""
    problems = []
    declared = set((parsed.get("resources") or {}).keys())
    for name, resource, body in resources(parsed):
        if resource["type"] != "Microsoft.Authorization/roleAssignments":
            continue
        props = body.get("properties", {})
        role = function(props.get("roleDefinitionId"))
        role_guid = role[1].get("resource_name_1") if role else None
        if role is None or role[0] != "subscription_resource_id" or role_guid not in role_names:
            problems.append(f"{name}: role {role_guid!r} is not in the known role table")
            continue
        if not str(props.get("description", "")).startswith(role_names[role_guid] + ":"):
            problems.append(f"{name}: description must start with '{role_names[role_guid]}:'")
        if props.get("principalType") != "ServicePrincipal":
            problems.append(f"{name}: principalType must be ServicePrincipal")
        scope = body.get("scope")
        if not isinstance(scope, str) or scope not in declared:
            problems.append(f"{name}: scope must be one resource declared in the file")
        guid_call = function(body.get("name"))
        arguments = list(guid_call[1].values()) if guid_call and guid_call[0] == "guid" else []
        if (
            [scope, "id"] not in [accessor(a) for a in arguments]
            or "principalId" not in arguments
            or role_guid not in arguments
        ):
            problems.append(f"{name}: name must be guid(<scope>.id, principalId, '<role guid>')")
    return problems


def literal_kql(parsed: dict[str, Any]) -> list[str]:
    """Resource properties that carry KQL as a literal string instead of generated content."""
    problems = []
    for name, _resource, body in resources(parsed):
        for key, value in _walk(body.get("properties", {})):
            if key in ("query", "transformKql") and isinstance(value, str):
                problems.append(f"{name}.{key}")
    return problems


def _walk(value: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for key, inner in value.items():
            yield key, unwrap(inner) if isinstance(inner, dict) else inner
            yield from _walk(unwrap(inner) if isinstance(inner, dict) else inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _walk(inner)


def module_parameter_problems(main_path: Path) -> list[str]:
    """Modules main.bicep uses: the file exists, every parameter passed exists there, and
    every parameter without a default is passed."""
    problems = []
    for name, module in (parse_file(main_path).get("modules") or {}).items():
        path = main_path.parent / module["detail"]["path"]
        if not path.is_file():
            problems.append(f"{name}: {path} does not exist")
            continue
        declared = parse_file(path).get("parameters") or {}
        passed = unwrap(module["config"]).get("params", {})
        problems += [f"{name}: passes unknown parameter {p}" for p in passed if p not in declared]
        problems += [
            f"{name}: does not pass required parameter {p}"
            for p, spec in declared.items()
            if spec.get("default") is None and p not in passed
        ]
    return problems
