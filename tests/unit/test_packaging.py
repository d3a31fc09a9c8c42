"""One import root: everything is a sub-package of ``paydar``, and nothing else is installed."""

from __future__ import annotations

import importlib.util
from importlib.metadata import distribution
from pathlib import Path

from setuptools import find_packages

from paydar import discover
from paydar.model.identity import ENTRY_MODULES

ROOT = Path(__file__).resolve().parents[2]
TOP_LEVEL_FOLDERS = ("infra", "failover", "probes", "chaos", "runbooks")
"""The folders a newcomer looks for at the top of the checkout: each is a link into paydar/."""


def test_every_top_level_folder_is_a_link_into_the_one_import_root() -> None:
    for name in TOP_LEVEL_FOLDERS:
        folder = ROOT / name
        assert folder.is_symlink() and folder.resolve() == ROOT / "paydar" / name, name
    stray = [p.name for p in ROOT.iterdir() if (p / "__init__.py").exists() and not p.is_symlink()]
    assert sorted(stray) == ["paydar", "tests"], "no package outside paydar/ but the tests"


def test_only_paydar_is_installed_as_a_top_level_name() -> None:
    assert (distribution("paydar").read_text("top_level.txt") or "").split() == ["paydar"]
    found = find_packages(str(ROOT), include=["paydar*"])
    assert {p.split(".")[0] for p in found} == {"paydar"}
    assert {f"paydar.{name}" for name in TOP_LEVEL_FOLDERS} <= set(found)


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
