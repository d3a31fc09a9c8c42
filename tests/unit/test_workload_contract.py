"""The workload contract: the registry is one implementation of it, and the parts that judge,
promote and back up instances speak only the contract, never the registry's own modules."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from paydar.node.runtime import NodeRuntime
from paydar.workload.contract import PATHS, InstanceState, Workload

ROOT = Path(__file__).resolve().parents[2]


def test_the_registry_implements_the_contract() -> None:
    implementation: type[Workload] = NodeRuntime  # mypy --strict checks the structure
    assert all(hasattr(implementation, name) for name in ("table", "offer_table", "state", "mark_compromised"))
    assert set(PATHS.values()) == {"/livez", "/readyz", "/state", "/v1/routing-table"}
    assert "compromised" in InstanceState.model_fields and "acked_position" in InstanceState.model_fields


@pytest.mark.parametrize("folder", ["probes", "failover", "vault"])
def test_probers_controllers_and_the_vault_import_nothing_of_the_registry(folder: str) -> None:
    imported = {
        (path.name, node.module if isinstance(node, ast.ImportFrom) else alias.name)
        for path in sorted((ROOT / "paydar" / folder).rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert [pair for pair in imported if (pair[1] or "").startswith("paydar.node")] == []
