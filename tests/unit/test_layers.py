"""The layers flow one way, and importing a low layer loads neither the SDK nor pandas."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("check_layers", ROOT / "tools" / "check_layers.py")
assert _spec is not None and _spec.loader is not None
check_layers = importlib.util.module_from_spec(_spec)
sys.modules["check_layers"] = check_layers  # dataclasses and typing resolve the module by name
_spec.loader.exec_module(check_layers)


def test_the_repository_has_no_upward_or_cyclic_import() -> None:
    assert check_layers.check(check_layers.discover_modules(ROOT)) == []


def test_an_upward_import_is_reported() -> None:
    modules = check_layers.discover_modules(ROOT)
    modules["featurebus.schemas.specs"] += "\nfrom featurebus.platform.registry import KafkaRegistry\n"
    violations = check_layers.check(modules)
    assert any("featurebus.schemas.specs imports featurebus.platform.registry" in v for v in violations)


def test_a_kernel_module_importing_a_runtime_is_reported() -> None:
    modules = check_layers.discover_modules(ROOT)
    modules["featurebus.streams.tiles"] += "\ndef f():\n    from featurebus.streams.runtime import engine\n"
    assert any("layer 'kernel' may not import the higher layer 'runtimes'" in v for v in check_layers.check(modules))


def test_the_two_runtimes_may_not_import_each_other() -> None:
    modules = check_layers.discover_modules(ROOT)
    modules["featurebus.serving.app"] += "\nimport featurebus.streams.runtime.worker\n"
    assert any("independent" in v for v in check_layers.check(modules))


def test_a_cycle_between_packages_of_one_layer_is_reported() -> None:
    modules = check_layers.discover_modules(ROOT)
    modules["featurebus.platform.offline.store"] += "\nfrom featurebus.platform.batch import compute\n"
    assert any(
        v.startswith("import cycle between packages")
        and "featurebus.platform.batch" in v
        and "featurebus.platform.offline" in v
        for v in check_layers.check(modules)
    )


def _loaded_after_import(module: str) -> set[str]:
    code = f"import sys, {module}; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return set(out.split())


@pytest.mark.parametrize(
    "module", ["featurebus", "featurebus.schemas.specs", "featurebus.exceptions", "featurebus.streams.windows"]
)
def test_low_layers_load_no_pandas_pyarrow_or_sdk(module: str) -> None:
    loaded = _loaded_after_import(module)
    assert not {"pandas", "pyarrow"} & loaded
    sdk_modules = {
        name
        for name in loaded
        if name.startswith("featurebus.") and name.split(".")[1] not in ("schemas", "streams", "platform", "serving")
    }
    assert sdk_modules <= {module}


def test_public_names_still_load_on_first_use() -> None:
    import featurebus

    assert featurebus.Entity.__module__ == "featurebus.definitions"
    assert "StreamFeatureView" in featurebus.__all__ and "AutoscalingConfig" in featurebus.__all__
    with pytest.raises(AttributeError, match="no attribute 'NoSuchName'"):
        _ = featurebus.NoSuchName  # type: ignore[attr-defined]
