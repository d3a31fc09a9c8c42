"""One import root: every top-level folder is a sub-package of ``paydar``, and nothing else is installed."""

from __future__ import annotations

import importlib.util
import tomllib
from importlib.metadata import distribution
from pathlib import Path

from paydar import discover
from paydar.infra.identity import ENTRY_MODULES

ROOT = Path(__file__).resolve().parents[2]
SETUPTOOLS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_the_package_list_is_exactly_the_folders_on_disk() -> None:
    mapping = SETUPTOOLS["package-dir"]
    on_disk = set()
    for name, folder in mapping.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / folder).parts
            on_disk.add(".".join((name, *relative)))
    assert sorted(SETUPTOOLS["packages"]) == sorted(on_disk)
    packages_at_top = {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()} - {"tests"}
    assert packages_at_top == set(mapping.values()), "every top-level package folder is mapped under paydar"


def test_only_paydar_is_installed_as_a_top_level_name() -> None:
    assert (distribution("paydar").read_text("top_level.txt") or "").split() == ["paydar"]


def test_every_entry_module_runs_as_python_dash_m() -> None:
    for module in (*ENTRY_MODULES.values(), "paydar.infra.local.linkproxy", "paydar.infra.local.netjail",
                   "paydar.vault.upload"):
        spec = importlib.util.find_spec(module)
        assert spec is not None, module
        runnable = spec.submodule_search_locations is None or importlib.util.find_spec(f"{module}.__main__")
        assert runnable, f"{module} has no __main__"


def test_chaos_discovery_reports_real_argument_types() -> None:
    activities = {a["name"]: a for a in discover(discover_system=False)["activities"]}
    crash = {arg["name"]: arg.get("type") for arg in activities["crash_component"]["arguments"]}
    assert crash["component"] == "string"
    untyped = [(name, arg["name"]) for name, a in activities.items() for arg in a["arguments"] if "type" not in arg]
    assert untyped == []
