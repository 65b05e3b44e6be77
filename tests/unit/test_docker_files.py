"""What can be checked of docker/ without a Docker engine: the compose file against the Compose
specification's JSON schema, every service's command against the real CLI, one principal per
component, and the Kafka service secured as the local broker is."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import typer.main
import yaml
from typer.testing import CliRunner

from featurebus.cli import app
from featurebus.platform.kafka.credentials import ADMIN_USER, Component, load_or_create_credentials
from featurebus.platform.kafka.runtime import KAFKA_VERSION, server_properties

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
COMPOSE: dict[str, Any] = yaml.safe_load((DOCKER / "compose.yaml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
FEATUREBUS_SERVICES = {name: s for name, s in SERVICES.items() if s.get("image") == "featurebus:latest"}
# The service that runs each component (the rest: kafka, and setup with the admin's credentials).
COMPONENT_OF_SERVICE = {
    "control": Component.CONTROL,
    "worker": Component.WORKER,
    "serving": Component.SERVING,
    "offline": Component.OFFLINE,
    "jobs": Component.JOBS,
}


def test_compose_file_is_valid_against_the_compose_specification() -> None:
    schema = json.loads((ROOT / "tests" / "fixtures" / "compose-spec.json").read_text())
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    errors = sorted(validator_class(schema).iter_errors(COMPOSE), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_the_schema_check_catches_a_broken_file() -> None:
    schema = json.loads((ROOT / "tests" / "fixtures" / "compose-spec.json").read_text())
    broken = {**COMPOSE, "services": {**SERVICES, "worker": {**SERVICES["worker"], "restart": ["always"]}}}
    assert list(jsonschema.validators.validator_for(schema)(schema).iter_errors(broken))


def _parse(args: list[str]) -> Any:
    """Resolve ``featurebus ARGS`` down to its command and parse (and type-convert) every option
    and argument, as the CLI does before running it (raises its usage errors); returns the context.

    Typer vendors its own click, so groups are recognised by what they do, not by class."""
    command: Any = typer.main.get_command(app)
    context = command.make_context("featurebus", list(args))
    while hasattr(command, "resolve_command"):
        name, sub, rest = command.resolve_command(context, [*context._protected_args, *context.args])
        assert sub is not None and name is not None, args
        command, context = sub, sub.make_context(name, rest, parent=context)
    return context


@pytest.mark.parametrize("service", sorted(FEATUREBUS_SERVICES))
def test_every_service_runs_a_valid_featurebus_command(service: str) -> None:
    command = FEATUREBUS_SERVICES[service]["command"]
    assert isinstance(command, list) and all(isinstance(part, str) for part in command), command
    context = _parse(command)
    assert context.command.callback is not None  # a command that runs, not a group
    shown = CliRunner().invoke(app, [*command, "--help"])  # and its --help exits 0, as in the image
    assert shown.exit_code == 0, shown.output


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["worker", "--workspac", "default"], "NoSuchOption"),
        (["serve", "--port", "not-a-port"], "BadParameter"),
        (["jobs", "runn"], "UsageError"),
    ],
)
def test_a_wrong_command_is_caught(args: list[str], error: str) -> None:
    with pytest.raises(Exception) as caught:
        _parse(args)
    assert error in {cls.__name__ for cls in type(caught.value).__mro__}, caught.value


def test_each_component_runs_as_its_own_principal() -> None:
    assert set(COMPONENT_OF_SERVICE) | {"setup"} == set(FEATUREBUS_SERVICES)
    for service, component in COMPONENT_OF_SERVICE.items():
        environment = FEATUREBUS_SERVICES[service]["environment"]
        assert environment["FEATUREBUS_KAFKA_SASL_USERNAME"] == component.username, service
        assert f"FEATUREBUS_KAFKA_PASSWORD_{component.value.upper()}" in environment["FEATUREBUS_KAFKA_SASL_PASSWORD"]
        assert environment["FEATUREBUS_KAFKA_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT"
    setup = FEATUREBUS_SERVICES["setup"]["environment"]
    assert setup["FEATUREBUS_KAFKA_SASL_USERNAME"] == ADMIN_USER
    assert {f"FEATUREBUS_KAFKA_PASSWORD_{c.value.upper()}" for c in Component} <= set(setup)
    published = {name for name, s in SERVICES.items() if s.get("ports")}
    assert published == {"control", "serving"}


def _properties(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


def test_the_kafka_service_is_secured_as_the_local_broker(tmp_path: Path) -> None:
    assert SERVICES["kafka"]["image"] == f"apache/kafka:{KAFKA_VERSION}"
    script = (DOCKER / "kafka" / "start.sh").read_text()
    heredoc = re.search(r"cat > \"\$config\" <<PROPERTIES\n(.*?)\nPROPERTIES", script, re.S)
    assert heredoc is not None
    compose_broker = _properties(heredoc.group(1))
    local_broker = _properties(
        server_properties(tmp_path, 9092, 9093, load_or_create_credentials(tmp_path)).replace("\\\n", "")
    )
    security_keys = {k for k in local_broker if "sasl" in k or k in ("authorizer.class.name", "super.users")}
    security_keys |= {"allow.everyone.if.no.acl.found", "listener.security.protocol.map"}
    assert security_keys <= set(compose_broker)
    for key in security_keys - {k for k in security_keys if k.endswith("jaas.config")}:
        assert compose_broker[key] == local_broker[key], key
    assert "--add-scram" in script and f"name={ADMIN_USER}" in script
