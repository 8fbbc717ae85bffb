"""The deployment files in `deploy/` agree with the app and keep victims anonymous.

Docker is not needed: the compose file is parsed, the Dockerfile and nginx.conf are read as text
and checked for what matters (settings that exist, no baked-in secrets, a non-root user, no
client addresses passed on or logged, websockets passed through).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from click import Group
from pydantic import SecretStr

from helpline.cli import main
from helpline.core.config import ENV_PREFIX, Settings
from helpline.core.routes import core_routes

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
ENV_EXAMPLE = DEPLOY / "helpline.env.example"
DOCKERFILE = DEPLOY / "Dockerfile"
NGINX_CONF = DEPLOY / "nginx.conf"
DOCKERIGNORE = ROOT / ".dockerignore"

HELPLINE_VARIABLE = re.compile(r"(?<![A-Za-z0-9_])HELPLINE_[A-Z0-9_]+")
COMPOSE_INTERPOLATION = re.compile(r"\$\{[^}]*\}")
ENV_LINE = re.compile(r"^#?\s*(HELPLINE_[A-Z0-9_]+)=(.*)$")

# Headers that carry the client's address to the app.
ADDRESS_HEADERS = ("x-forwarded-for", "x-real-ip", "forwarded")
# nginx variables that identify a client or reveal what it asked for.
IDENTIFYING_VARIABLES = {
    "$remote_addr",
    "$binary_remote_addr",
    "$remote_port",
    "$realip_remote_addr",
    "$proxy_add_x_forwarded_for",
    "$http_x_forwarded_for",
    "$http_x_real_ip",
    "$http_forwarded",
    "$http_user_agent",
    "$http_referer",
    "$http_cookie",
    "$request",
    "$request_uri",
    "$uri",
    "$document_uri",
    "$args",
    "$query_string",
}


# --- helpers ---------------------------------------------------------------------------------


def setting_name(variable: str) -> str:
    return variable[len(ENV_PREFIX) :].lower()


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's `environment`, in either of Compose's two spellings."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(key): "" if value is None else str(value) for key, value in env.items()}


def env_files(service: dict[str, Any]) -> list[str]:
    files = service.get("env_file") or []
    if isinstance(files, str | dict):
        files = [files]
    return [entry["path"] if isinstance(entry, dict) else entry for entry in files]


def depends_on(service: dict[str, Any]) -> dict[str, str]:
    """Dependency name -> condition (`service_started` when none is given)."""
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {name: "service_started" for name in deps}
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def uses_app_image(service: dict[str, Any]) -> bool:
    build = service.get("build")
    return isinstance(build, dict) and build.get("dockerfile") == "deploy/Dockerfile"


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with comments dropped and continuation lines joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, arguments = (pending + line).partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        pending = ""
    assert not pending, "Dockerfile ends inside a continued line"
    return instructions


NginxDirective = tuple[tuple[str, ...], str, list[str]]


def nginx_directives() -> list[NginxDirective]:
    """Every directive of nginx.conf as (enclosing blocks, name, arguments)."""
    text = "\n".join(
        line.split("#", 1)[0] if not line.lstrip().startswith("#") else ""
        for line in NGINX_CONF.read_text(encoding="utf-8").splitlines()
    )
    tokens = re.findall(r"\"[^\"]*\"|'[^']*'|[{};]|[^\s{};]+", text)
    directives: list[NginxDirective] = []
    blocks: list[str] = []
    statement: list[str] = []
    for token in tokens:
        if token == ";":
            directives.append((tuple(blocks), statement[0], statement[1:]))
            statement = []
        elif token == "{":
            directives.append((tuple(blocks), statement[0], statement[1:]))
            blocks.append(" ".join(statement))
            statement = []
        elif token == "}":
            assert not statement, f"unterminated directive {statement}"
            blocks.pop()
        else:
            statement.append(token)
    assert not blocks and not statement, "nginx.conf has unbalanced braces"
    return directives


def seconds(value: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    match = re.fullmatch(r"(\d+)(ms|s|m|h|d)?", value)
    assert match, f"not an nginx time: {value}"
    return int(match[1]) * units[match[2] or "s"]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(data, dict) and isinstance(data.get("services"), dict)
    return data


@pytest.fixture(scope="module")
def app_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services that run `helpline serve` from the project's image (the image's CMD)."""
    return {
        name: service
        for name, service in compose["services"].items()
        if uses_app_image(service) and "command" not in service
    }


# --- compose.yaml ----------------------------------------------------------------------------


def test_compose_runs_at_least_two_app_instances_of_one_image(
    app_services: dict[str, dict[str, Any]],
) -> None:
    assert len(app_services) >= 2, sorted(app_services)
    images = {(s.get("image"), repr(s["build"])) for s in app_services.values()}
    assert len(images) == 1, images
    build = next(iter(app_services.values()))["build"]
    assert (DEPLOY / build["context"]).resolve() == ROOT
    assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE


def test_app_instances_share_postgres_and_redis(app_services: dict[str, dict[str, Any]]) -> None:
    for name, service in app_services.items():
        env = environment(service)
        assert env["HELPLINE_DATABASE_URL"].startswith("postgresql+asyncpg://"), name
        assert "@postgres:5432/" in env["HELPLINE_DATABASE_URL"], name
        assert env["HELPLINE_REDIS_URL"] == "redis://redis:6379/0", name
        assert "helpline.env" in env_files(service), name


def test_apps_start_after_migrations_and_redis(
    compose: dict[str, Any], app_services: dict[str, dict[str, Any]]
) -> None:
    services = compose["services"]
    migrate = services["migrate"]
    assert uses_app_image(migrate)
    assert migrate["command"] == ["helpline", "migrate"]
    assert depends_on(migrate)["postgres"] == "service_healthy"
    assert services["postgres"]["image"].startswith("postgres:16")
    assert "healthcheck" in services["postgres"]
    assert services["redis"]["image"].startswith("redis:7")
    for name, service in app_services.items():
        deps = depends_on(service)
        assert deps.get("migrate") == "service_completed_successfully", name
        assert "redis" in deps, name


def test_only_the_proxy_is_reachable_from_outside(compose: dict[str, Any]) -> None:
    services = compose["services"]
    proxy = services["proxy"]
    assert str(proxy["image"]).startswith("nginx:")
    assert "./nginx.conf:/etc/nginx/nginx.conf:ro" in proxy["volumes"]
    assert any(str(port).endswith(":443") for port in proxy["ports"])
    published = sorted(name for name, service in services.items() if service.get("ports"))
    assert published == ["proxy"]


@pytest.mark.parametrize(
    "path",
    [COMPOSE, ENV_EXAMPLE, DOCKERFILE, NGINX_CONF, DEPLOY / "README.md"],
    ids=lambda path: path.name,
)
def test_every_helpline_variable_is_a_setting(path: Path) -> None:
    names = set(HELPLINE_VARIABLE.findall(path.read_text(encoding="utf-8")))
    unknown = sorted(name for name in names if setting_name(name) not in Settings.model_fields)
    assert not unknown, f"{path.name} uses variables Settings does not know: {unknown}"
    if path in (COMPOSE, ENV_EXAMPLE):
        assert names, f"{path.name} configures nothing?"


def test_compose_environment_is_valid_settings(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        env = environment(service)
        values: dict[str, Any] = {
            setting_name(key): COMPOSE_INTERPOLATION.sub("placeholder", value)
            for key, value in env.items()
            if key.startswith(ENV_PREFIX)
        }
        # Builds through the real validators: a malformed URL or value fails here.
        Settings(**values)
        assert "HELPLINE_MASTER_KEY" not in env, f"{name}: the master key belongs in helpline.env"


def test_env_example_is_valid_and_holds_no_real_key() -> None:
    text = ENV_EXAMPLE.read_text(encoding="utf-8")
    values = {
        match[1]: match[2] for line in text.splitlines() if (match := ENV_LINE.match(line.strip()))
    }
    assert "HELPLINE_MASTER_KEY" in values
    settings: dict[str, Any] = {setting_name(name): value for name, value in values.items()}
    Settings(**settings)
    try:
        key = base64.b64decode(values["HELPLINE_MASTER_KEY"], validate=True)
    except binascii.Error:
        key = b""
    assert len(key) != 32, "helpline.env.example must hold a placeholder, not a usable key"
    assert "base64.b64encode(os.urandom(32)).decode()" in text


# --- Dockerfile ------------------------------------------------------------------------------


def test_dockerfile_is_multi_stage_on_python_slim() -> None:
    instructions = dockerfile_instructions()
    stages = [arguments for keyword, arguments in instructions if keyword == "FROM"]
    assert len(stages) >= 2
    assert all(stage.startswith("python:3.11-slim") for stage in stages)
    assert ("EXPOSE", "8000") in instructions
    healthcheck = next(arguments for keyword, arguments in instructions if keyword == "HEALTHCHECK")
    assert "urllib" in healthcheck and "/healthz" in healthcheck
    cmd = [arguments for keyword, arguments in instructions if keyword == "CMD"][-1]
    assert cmd == '["helpline", "serve", "--host", "0.0.0.0", "--port", "8000"]'


def test_dockerfile_runs_as_non_root_user() -> None:
    instructions = dockerfile_instructions()
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    users = [arguments for keyword, arguments in instructions[last_from:] if keyword == "USER"]
    assert users, "the final stage must switch to a non-root USER"
    user = users[-1].split(":", 1)[0]
    assert user not in ("root", "0")


def secret_variables() -> set[str]:
    """HELPLINE_ names of settings that hold secrets (plus the database URL's password)."""
    secret = {
        ENV_PREFIX + name.upper()
        for name, field in Settings.model_fields.items()
        if field.annotation is SecretStr or SecretStr in typing.get_args(field.annotation)
    }
    return secret | {"HELPLINE_DATABASE_URL"}


def test_dockerfile_bakes_in_no_secret() -> None:
    assert "HELPLINE_MASTER_KEY" in secret_variables()
    for keyword, arguments in dockerfile_instructions():
        assert "HELPLINE_MASTER_KEY" not in arguments, f"{keyword} {arguments}"
        if keyword in ("ENV", "ARG"):
            named = set(HELPLINE_VARIABLE.findall(arguments))
            assert not named & secret_variables(), f"{keyword} {arguments}"


def test_dockerignore_keeps_local_state_and_secrets_out() -> None:
    patterns = {
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".venv", ".git"} <= patterns
    assert patterns & {"var", "var/", "**/var"}
    assert patterns & {"**/*.env", "**/helpline.env", "deploy/helpline.env"}


# --- nginx.conf ------------------------------------------------------------------------------


def test_nginx_uses_no_identifying_variable() -> None:
    text = NGINX_CONF.read_text(encoding="utf-8")
    assert "remote_addr" not in text
    used = {
        variable
        for _, _, args in nginx_directives()
        for arg in args
        for variable in re.findall(r"\$\w+", arg)
    }
    assert not used & {"$remote_addr", "$binary_remote_addr", "$proxy_add_x_forwarded_for"}
    names = {name for _, name, _ in nginx_directives()}
    assert not names & {"set_real_ip_from", "real_ip_header"}


def test_nginx_forwards_no_client_address() -> None:
    headers: dict[str, list[str]] = {}
    for blocks, name, args in nginx_directives():
        if name == "proxy_set_header":
            # Set once for all locations: a proxy_set_header inside a location would silently
            # drop the inherited ones, including the lines that strip address headers.
            assert blocks == ("http",), f"proxy_set_header {args} inside {blocks}"
            headers[args[0].lower()] = args[1:]
    for header in ADDRESS_HEADERS:
        value = headers.get(header)
        assert value is None or value in (['""'], ["''"]), f"{header} set to {value}"
    # The client's own address headers must be removed, not passed through untouched.
    assert headers["x-forwarded-for"] == ['""']
    assert headers["x-real-ip"] == ['""']


def test_nginx_logs_no_client_details() -> None:
    directives = nginx_directives()
    formats = {args[0]: " ".join(args[1:]) for _, name, args in directives if name == "log_format"}
    for format_name, spec in formats.items():
        leaked = set(re.findall(r"\$\w+", spec)) & IDENTIFYING_VARIABLES
        assert not leaked, f"log_format {format_name} logs {sorted(leaked)}"
    access_logs = [args for _, name, args in directives if name == "access_log"]
    assert access_logs, "say explicitly what is logged (or `access_log off`)"
    for args in access_logs:
        # Without a format name nginx uses "combined", which starts with $remote_addr.
        assert args == ["off"] or (len(args) >= 2 and args[1] in formats), args
    for _, name, args in directives:
        if name == "error_log":
            # Below "alert" nginx appends "client: <address>" to its messages.
            assert len(args) == 2 and args[1] in ("alert", "emerg"), args


def test_nginx_passes_websockets_with_long_timeouts() -> None:
    directives = nginx_directives()
    headers = {
        args[0].lower(): args[1] for _, name, args in directives if name == "proxy_set_header"
    }
    assert headers["upgrade"] == "$http_upgrade"
    assert headers["connection"].startswith("$")
    assert (("http",), "proxy_http_version", ["1.1"]) in directives
    ws = [(name, args) for blocks, name, args in directives if blocks[-1:] == ("location /ws/",)]
    assert ("proxy_pass", ["http://helpline"]) in ws
    timeouts = {name: seconds(args[0]) for name, args in ws if name.endswith("_timeout")}
    assert timeouts.get("proxy_read_timeout", 0) >= 600


def test_nginx_balances_over_the_app_services(app_services: dict[str, dict[str, Any]]) -> None:
    upstream_hosts = {
        args[0].split(":", 1)[0]
        for blocks, name, args in nginx_directives()
        if blocks[-1:] == ("upstream helpline",) and name == "server"
    }
    assert upstream_hosts == set(app_services)


def test_nginx_terminates_tls_and_redirects_http() -> None:
    directives = nginx_directives()
    listens = {tuple(args) for _, name, args in directives if name == "listen"}
    assert ("443", "ssl", "default_server") in listens or ("443", "ssl") in listens
    certificates = [args[0] for _, name, args in directives if name.startswith("ssl_certificate")]
    assert len(certificates) == 2
    assert all(path.startswith("/etc/nginx/certs/") for path in certificates)
    redirects = [args for _, name, args in directives if name == "return"]
    assert ["301", "https://$host$request_uri"] in redirects


# --- every YAML file, and the variables they use ------------------------------------------------

K8S = DEPLOY / "k8s"
COMPOSE_MAIL = DEPLOY / "compose.mail.yaml"
YAML_FILES = sorted([*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml")])
WEB_LABELS = {"app.kubernetes.io/name": "helpline", "app.kubernetes.io/component": "web"}


def yaml_documents(path: Path) -> list[dict[str, Any]]:
    """The documents of a (multi-document) YAML file, without the empty ones."""
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]


def k8s_objects() -> list[dict[str, Any]]:
    return [doc for path in sorted(K8S.glob("*.yaml")) for doc in yaml_documents(path)]


def k8s_object(kind: str, name: str) -> dict[str, Any]:
    found = [o for o in k8s_objects() if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def cli_command_exists(words: list[str]) -> bool:
    command: Any = main
    for word in words:
        if not isinstance(command, Group):
            return True  # the rest are arguments
        if word not in command.commands:
            return False
        command = command.commands[word]
    return True


def test_the_yaml_files_are_found() -> None:
    names = {path.relative_to(DEPLOY).as_posix() for path in YAML_FILES}
    assert {"compose.yaml", "compose.mail.yaml", "k8s/kustomization.yaml"} <= names
    assert {"k8s/deployment.yaml", "k8s/ingress.yaml", "k8s/networkpolicy.yaml"} <= names


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda path: path.relative_to(DEPLOY).as_posix())
def test_every_yaml_file_parses(path: Path) -> None:
    documents = yaml_documents(path)
    assert documents, f"{path.name} holds no document"
    assert all(isinstance(doc, dict) for doc in documents)
    if path.parent == K8S and path.name != "kustomization.yaml":
        for doc in documents:
            assert {"apiVersion", "kind", "metadata"} <= set(doc), path.name
            assert "namespace" not in doc["metadata"] or path.name.startswith("ingress-nginx")


@pytest.mark.parametrize(
    "path",
    [COMPOSE_MAIL, *sorted(K8S.glob("*.yaml")), DEPLOY / "tor" / "torrc"],
    ids=lambda path: path.relative_to(DEPLOY).as_posix(),
)
def test_every_helpline_variable_of_compose_mail_and_k8s_is_a_setting(path: Path) -> None:
    names = set(HELPLINE_VARIABLE.findall(path.read_text(encoding="utf-8")))
    unknown = sorted(name for name in names if setting_name(name) not in Settings.model_fields)
    assert not unknown, f"{path.name} uses variables Settings does not know: {unknown}"


# --- compose.yaml: worker, secrets, object storage, onion --------------------------------------


def test_background_work_runs_in_one_worker_not_in_the_web_instances(
    compose: dict[str, Any], app_services: dict[str, dict[str, Any]]
) -> None:
    for name, service in app_services.items():
        assert environment(service)["HELPLINE_RUN_WORKERS"] == "false", name
    workers = [
        s for s in compose["services"].values() if s.get("command") == ["helpline", "worker"]
    ]
    assert len(workers) == 1
    worker = workers[0]
    assert uses_app_image(worker)
    assert environment(worker).get("HELPLINE_RUN_WORKERS", "true") != "false"
    assert depends_on(worker)["migrate"] == "service_completed_successfully"
    assert worker["healthcheck"] == {"disable": True}  # it serves no /healthz
    assert cli_command_exists(["worker"])


def test_the_master_key_is_a_compose_secret_file(
    compose: dict[str, Any], app_services: dict[str, dict[str, Any]]
) -> None:
    assert compose["secrets"]["master_key"] == {"file": "./secrets/master.key"}
    for name, service in compose["services"].items():
        if not uses_app_image(service):
            continue
        assert service["secrets"] == ["master_key"], name
        env = environment(service)
        assert env["HELPLINE_MASTER_KEY_FILE"] == "/run/secrets/master_key", name
        assert "HELPLINE_MASTER_KEY" not in env, name
    dockerignore = DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
    assert "**/*.key" in dockerignore


def test_evidence_goes_to_the_minio_bucket_that_setup_creates(
    compose: dict[str, Any], app_services: dict[str, dict[str, Any]]
) -> None:
    services = compose["services"]
    assert services["minio"]["image"].startswith("minio/minio:RELEASE.")
    assert services["minio"]["networks"] == ["backend"]
    setup = services["minio-setup"]
    assert depends_on(setup)["minio"] == "service_healthy"
    script = setup["command"][0]
    for name, service in app_services.items():
        env = environment(service)
        assert env["HELPLINE_BLOB_BACKEND"] == "s3", name
        assert env["HELPLINE_S3_ENDPOINT_URL"] == "http://minio:9000", name
        bucket = env["HELPLINE_S3_BUCKET"]
        assert f"mc mb --ignore-existing store/{bucket}" in script
        assert f"mc admin user add store {env['HELPLINE_S3_ACCESS_KEY_ID']} " in script
        assert env["HELPLINE_S3_SECRET_ACCESS_KEY"].startswith("${S3_SECRET_ACCESS_KEY:?")
        assert depends_on(service)["minio-setup"] == "service_completed_successfully", name
    policy = json.loads((DEPLOY / "minio" / "helpline-evidence.json").read_text())
    resources = {r for statement in policy["Statement"] for r in statement["Resource"]}
    assert resources == {"arn:aws:s3:::helpline-evidence", "arn:aws:s3:::helpline-evidence/*"}


def test_the_onion_service_is_optional_and_reaches_only_the_proxy(compose: dict[str, Any]) -> None:
    onion = compose["services"]["onion"]
    assert onion["profiles"] == ["onion"]
    assert onion["network_mode"] == "service:proxy"
    assert "ports" not in onion
    assert "tor-data:/var/lib/tor" in onion["volumes"]
    dockerfile = (DEPLOY / onion["build"]["context"] / "Dockerfile").read_text(encoding="utf-8")
    assert "apt-get install -y --no-install-recommends tor" in dockerfile
    assert "USER debian-tor" in dockerfile
    torrc = (DEPLOY / "tor" / "torrc").read_text(encoding="utf-8").splitlines()
    assert "HiddenServicePort 80 127.0.0.1:8080" in torrc
    assert "SocksPort 0" in torrc
    # nginx's onion server listens on loopback only, and passes websockets like the TLS one
    onion_blocks = [
        blocks
        for blocks, name, args in nginx_directives()
        if name == "listen" and args == ["127.0.0.1:8080"]
    ]
    assert len(onion_blocks) == 1
    listens = [args for _, name, args in nginx_directives() if name == "listen"]
    assert not [a for a in listens if a[0].endswith("8080") and a[0] != "127.0.0.1:8080"]


def test_inbound_mail_listens_on_the_hosts_loopback_only() -> None:
    mail = yaml_documents(COMPOSE_MAIL)[0]
    smtp = mail["services"]["smtp"]
    assert smtp["command"][:2] == ["helpline", "smtp"]
    assert cli_command_exists(["smtp"])
    assert smtp["ports"] == ["127.0.0.1:2525:2525"]
    env = environment(smtp)
    assert env["HELPLINE_MASTER_KEY_FILE"] == "/run/secrets/master_key"
    assert "HELPLINE_MASTER_KEY" not in env
    Settings(**{setting_name(k): COMPOSE_INTERPOLATION.sub("x", v) for k, v in env.items()})


# --- k8s/ ------------------------------------------------------------------------------------


def test_kustomization_lists_every_manifest_but_the_templates() -> None:
    kustomization = yaml_documents(K8S / "kustomization.yaml")[0]
    resources = kustomization["resources"]
    manifests = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    # templates: applying them would overwrite real secrets or another namespace's controller
    templates = {"secret.yaml", "ingress-nginx-controller.yaml"}
    assert set(resources) == manifests - templates
    assert "namespace" not in kustomization
    assert [image["name"] for image in kustomization["images"]] == ["helpline"]


def pod_specs() -> dict[str, dict[str, Any]]:
    """kind/name -> pod spec of every workload."""
    specs = {}
    for obj in k8s_objects():
        if obj["kind"] in ("Deployment", "Job"):
            specs[f"{obj['kind']}/{obj['metadata']['name']}"] = obj["spec"]["template"]["spec"]
    return specs


def test_every_pod_runs_non_root_on_a_read_only_root_filesystem() -> None:
    specs = pod_specs()
    assert set(specs) == {
        "Deployment/helpline-web",
        "Deployment/helpline-worker",
        "Job/helpline-migrate",
    }
    for name, spec in specs.items():
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True, name
        assert pod["runAsUser"] not in (0, None) and pod["runAsGroup"] != 0, name
        assert spec["automountServiceAccountToken"] is False, name
        for container in spec["containers"]:
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, name
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["capabilities"]["drop"] == ["ALL"], name
            assert container["image"] == "helpline", name
            assert {"configMapRef": {"name": "helpline-config"}} in container["envFrom"], name
            assert {"secretRef": {"name": "helpline-secrets"}} in container["envFrom"], name
            mounts = {m["mountPath"] for m in container["volumeMounts"]}
            assert "/tmp" in mounts, name
            tmp = next(v for v in spec["volumes"] if v["name"] == "tmp")
            assert tmp["emptyDir"]["medium"] == "Memory", "spooled uploads stay off the disk"


def test_the_web_deployment_is_replicated_and_probed_on_the_health_endpoints() -> None:
    web = k8s_object("Deployment", "helpline-web")
    assert web["spec"]["replicas"] >= 2
    assert web["spec"]["selector"]["matchLabels"] == WEB_LABELS
    template = web["spec"]["template"]
    assert selects(WEB_LABELS, template["metadata"]["labels"])
    (container,) = template["spec"]["containers"]
    assert container["command"][:2] == ["helpline", "serve"]
    assert {"name": "HELPLINE_RUN_WORKERS", "value": "false"} in container["env"]
    paths = {getattr(r, "path", None) for r in core_routes()}
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert {"/healthz", "/readyz"} <= paths
    assert container["ports"] == [{"name": "http", "containerPort": 8000}]
    worker = k8s_object("Deployment", "helpline-worker")
    assert worker["spec"]["template"]["spec"]["containers"][0]["command"] == ["helpline", "worker"]
    job = k8s_object("Job", "helpline-migrate")
    assert job["spec"]["template"]["spec"]["containers"][0]["command"] == ["helpline", "migrate"]
    for words in (["serve"], ["worker"], ["migrate"]):
        assert cli_command_exists(words)


def test_service_and_ingress_reach_the_web_pods_with_websocket_timeouts() -> None:
    service = k8s_object("Service", "helpline")
    assert service["spec"]["selector"] == WEB_LABELS
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    ingress = k8s_object("Ingress", "helpline")
    annotations = ingress["metadata"]["annotations"]
    prefix = "nginx.ingress.kubernetes.io/"
    assert int(annotations[prefix + "proxy-read-timeout"]) >= 600
    assert int(annotations[prefix + "proxy-send-timeout"]) >= 600
    assert annotations[prefix + "enable-access-log"] == "false"
    assert annotations[prefix + "proxy-request-buffering"] == "off"
    # snippets could set or log anything, forwarded headers would carry the client address
    assert not [a for a in annotations if "snippet" in a or "forwarded" in a or "real-ip" in a]
    assert ingress["spec"]["tls"]
    backends = [
        path["backend"]["service"]["name"]
        for rule in ingress["spec"]["rules"]
        for path in rule["http"]["paths"]
    ]
    assert backends == ["helpline"]
    controller = yaml_documents(K8S / "ingress-nginx-controller.yaml")[0]["data"]
    assert controller["error-log-level"] in ("alert", "emerg")
    assert controller["use-forwarded-headers"] == "false"
    leaked = set(re.findall(r"\$\w+", controller["log-format-upstream"])) & IDENTIFYING_VARIABLES
    assert not leaked


def test_the_secret_template_holds_no_real_key() -> None:
    secret = yaml_documents(K8S / "secret.yaml")[0]
    assert secret["kind"] == "Secret"
    values = secret["stringData"]
    for name, value in values.items():
        assert setting_name(name) in Settings.model_fields, name
        assert "REPLACE_ME" in value, f"{name} must be a clear placeholder"
    try:
        key = base64.b64decode(values["HELPLINE_MASTER_KEY"], validate=True)
    except binascii.Error:
        key = b""
    assert len(key) != 32
    # the master key and other secrets never sit in the ConfigMap
    config = k8s_object("ConfigMap", "helpline-config")["data"]
    assert not set(config) & secret_variables()
    assert not set(config) & set(values)
    Settings(**{setting_name(k): v for k, v in config.items()})


def test_pdb_hpa_and_network_policies_select_the_app() -> None:
    web_labels = k8s_object("Deployment", "helpline-web")["spec"]["template"]["metadata"]["labels"]
    pod_labels = [
        obj["spec"]["template"]["metadata"]["labels"]
        for obj in k8s_objects()
        if obj["kind"] in ("Deployment", "Job")
    ]
    pdb = k8s_object("PodDisruptionBudget", "helpline-web")
    assert selects(pdb["spec"]["selector"]["matchLabels"], web_labels)
    assert pdb["spec"]["minAvailable"] >= 1
    hpa = k8s_object("HorizontalPodAutoscaler", "helpline-web")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "helpline-web",
    }
    assert hpa["spec"]["minReplicas"] >= 2
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]

    policies = [o for o in k8s_objects() if o["kind"] == "NetworkPolicy"]
    deny = k8s_object("NetworkPolicy", "helpline-deny-ingress")["spec"]
    assert deny["policyTypes"] == ["Ingress"] and "ingress" not in deny
    assert all(selects(deny["podSelector"]["matchLabels"], labels) for labels in pod_labels)
    # the only way in: the ingress controller, to the web pods
    allowed = [p["spec"] for p in policies if p["spec"].get("ingress")]
    assert len(allowed) == 1
    assert selects(allowed[0]["podSelector"]["matchLabels"], web_labels)
    (rule,) = allowed[0]["ingress"]
    (peer,) = rule["from"]
    assert peer["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "ingress-nginx"
    }
    assert rule["ports"] == [{"protocol": "TCP", "port": 8000}]
    # the way out, for every Helpline pod
    egress = k8s_object("NetworkPolicy", "helpline-egress")["spec"]
    assert egress["policyTypes"] == ["Egress"]
    assert all(selects(egress["podSelector"]["matchLabels"], labels) for labels in pod_labels)
    ports = {port["port"] for rule in egress["egress"] for port in rule["ports"]}
    assert {53, 5432, 6379, 587, 443} <= ports
    assert ports <= {53, 5432, 6379, 9000, 25, 465, 587, 443, 80}
    public = [
        block["ipBlock"]
        for rule in egress["egress"]
        for block in rule["to"]
        if "ipBlock" in block and 443 in {p["port"] for p in rule["ports"]}
    ]
    assert public and all("10.0.0.0/8" in b["except"] for b in public if b["cidr"] == "0.0.0.0/0")
