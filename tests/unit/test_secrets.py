"""No secrets in the repository: every git-tracked file is scanned for credential-like strings.

Patterns cover cloud and forge tokens, private keys, credentials inside URLs and password
assignments in configuration. A finding fails the test unless its value is one of the few
placeholders below. The scanner checks itself against synthetic secrets (assembled at run
time, so this file holds none) and the production MLflow configuration is checked to take
its secrets from the environment only.
"""

from __future__ import annotations

import configparser
import importlib.util
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import mlflow
import pytest
import yaml

from services.settings import PACKAGE_REPO

pytestmark = pytest.mark.unit

MAX_BYTES = 2_000_000  # larger tracked files (none today) are scanned up to here

TOKEN_PATTERNS: dict[str, re.Pattern[str]] = {
    "AWS access key id": re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA)[0-9A-Z]{16}\b"),
    "AWS secret access key": re.compile(
        r"aws_?secret_?access_?key\W{0,4}[:=]\s*['\"]?[A-Za-z0-9/+=]{40}\b", re.IGNORECASE
    ),
    "GitHub token": re.compile(r"\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36,}\b"),
    "GitHub fine-grained token": re.compile(r"\bgithub_pat_[A-Za-z0-9_]{22,}\b"),
    "private key": re.compile(
        r"-----BEGIN (?:RSA |EC |DSA |OPENSSH |PGP |ENCRYPTED )?PRIVATE KEY(?: BLOCK)?-----"
    ),
    "Slack token": re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"),
    "Google API key": re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b"),
    "Stripe live key": re.compile(r"\b[rs]k_live_[0-9A-Za-z]{20,}\b"),
    "JSON web token": re.compile(r"\beyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]+"),
    "credentials in a URL": re.compile(
        r"\b[a-z][a-z0-9+.-]{1,20}://(?P<user>[^\s/:@'\"<>{}$]+):(?P<value>[^\s/@'\"]+)@"
    ),
}

# `password = x`, `secret_key: x`, `token=x`, ... in configuration files and scripts
ASSIGNMENT = re.compile(
    r"(?<![\w${.-])"  # not inside ${VAR:-...} or a longer name
    r"(?P<name>[\w.-]*(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key)[\w.-]*)"
    r"\s*[:=]\s*(?P<value>\"[^\"]*\"|'[^']*'|[^\s#,;]+)",
    re.IGNORECASE,
)
CONFIG_SUFFIXES = {".ini", ".cfg", ".conf", ".env", ".yaml", ".yml", ".toml", ".sh", ".properties"}
CONFIG_NAMES = {"Dockerfile", "Makefile", ".env"}
# in Python, only quoted literals with letters and digits count (not `token=token`, nor
# constants naming a variable or a header such as API_KEY_ENV = "MLOPS_API_KEY")
PYTHON_LITERAL = re.compile(
    r"(?P<name>\b\w*(?:password|passwd|secret|token|api_?key)\w*)\s*[:=]\s*"
    r"(?P<value>([\"'])(?=[^\"'\s]*[0-9])(?=[^\"'\s]*[A-Za-z])[^\"'\s]{8,}\3)",
    re.IGNORECASE,
)
MIN_VALUE_LENGTH = 4
# values that are references or obvious placeholders, not secrets
REFERENCE = re.compile(
    r"""^(
        \$.*                       # $VAR, ${VAR:?...}, ${{ secrets.X }}, $(command)
      | <.*                         # <password>
      | \{.*                        # {password} format fields, {secretKeyRef: ...}
      | %.*                         # %s, %(name)s
      | \.{0,2}/.*                  # a file holding the value (--from-file=key=./file)
      | (os\.environ|env\.|getenv|secrets\.).*
      | (true|false|null|none|required|optional)
    )$""",
    re.IGNORECASE | re.VERBOSE,
)
PLACEHOLDERS = frozenset(
    {"", "***", "changeme", "example", "placeholder", "redacted", "xxx", "password", "secret"}
)


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    kind: str
    text: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.kind}: {self.text[:80]}"


def is_placeholder(value: str) -> bool:
    value = value.strip().strip("\"'")
    return (
        len(value) < MIN_VALUE_LENGTH
        or value.lower() in PLACEHOLDERS
        or bool(REFERENCE.match(value))
    )


def scan_text(path: str, text: str) -> list[Finding]:
    findings = []
    suffix = Path(path).suffix.lower()
    name = Path(path).name
    config_like = suffix in CONFIG_SUFFIXES or name in CONFIG_NAMES or path.startswith("infra/")
    for number, line in enumerate(text.splitlines(), start=1):
        for kind, pattern in TOKEN_PATTERNS.items():
            for match in pattern.finditer(line):
                value = match.groupdict().get("value")
                if value is not None and is_placeholder(value):
                    continue
                findings.append(Finding(path, number, kind, match.group(0)))
        assignment = ASSIGNMENT if config_like else PYTHON_LITERAL if suffix == ".py" else None
        if assignment is None or line.lstrip().startswith(("#", "//", ";")):
            continue  # comments are prose here; the token patterns above still cover them
        for match in assignment.finditer(line):
            if not is_placeholder(match["value"]):
                findings.append(Finding(path, number, "secret assignment", match.group(0)))
    return findings


def tracked_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=PACKAGE_REPO, check=True, capture_output=True
    ).stdout.decode()
    return [p for p in listed.split("\0") if p and (PACKAGE_REPO / p).is_file()]


def read_text(path: str) -> str | None:
    data = (PACKAGE_REPO / path).read_bytes()[:MAX_BYTES]
    if b"\0" in data[:8_192]:
        return None  # binary
    return data.decode("utf-8", errors="replace")


def test_no_tracked_file_holds_a_secret():
    files = tracked_files()
    assert len(files) > 50 and "pyproject.toml" in files
    findings = []
    for path in files:
        text = read_text(path)
        if text is not None:
            findings.extend(scan_text(path, text))
    assert not findings, "secret-looking strings:\n" + "\n".join(map(str, findings))


# --- the scanner finds what it should (samples built at run time) --------------------------


def _sample(*parts: str) -> str:
    return "".join(parts)


LEAKS = {
    "AWS access key id": ("config.py", _sample("key = '", "AKIA", "Q" * 8, "7" * 8, "'")),
    "AWS secret access key": (
        "infra/x.env",
        _sample("AWS_SECRET_ACCESS_KEY=", "wJalrXUtnFEMI/K7MDENG/bPxRfiCY", "1234567890"),
    ),
    "GitHub token": ("notes.md", _sample("token ", "ghp", "_", "a1B2" * 9)),
    "GitHub fine-grained token": ("x.txt", _sample("github", "_pat_", "11ABCDEFG0" * 4)),
    "private key": ("key.pem", _sample("-----BEGIN ", "RSA PRIVATE", " KEY-----")),
    "openssh private key": ("id", _sample("-----BEGIN ", "OPENSSH PRIVATE", " KEY-----")),
    "Slack token": ("a.md", _sample("xox", "b-", "123456789012-abcdefABCDEF")),
    "credentials in a URL": (
        "infra/mlflow/x.yaml",
        _sample("uri: postgresql://mlflow:", "hunter2", "@db:5432/mlflow"),
    ),
    "password in ini": ("infra/mlflow/basic_auth.ini", _sample("admin_pass", "word = ", "S3cure!")),
    "password in yaml": ("deploy/values.yaml", _sample("pass", "word: ", "'correct-horse'")),
    "secret in a script": ("tools/run.sh", _sample("export API_", "TOKEN=", "abc123def456")),
    "python literal": ("mlops/x.py", _sample("api_", "key = ", '"sk-', "abcdef123456", '"')),
}


@pytest.mark.parametrize("case", sorted(LEAKS))
def test_the_scanner_finds_each_kind_of_leak(case):
    path, line = LEAKS[case]
    findings = scan_text(path, f"# context\n{line}\n")
    assert findings and findings[0].line == 2, (case, line)


SAFE = [
    ("infra/mlflow/x.yaml", "uri: postgresql://mlflow@mlflow-postgres:5432/mlflow"),
    ("infra/mlflow/x.yaml", "valueFrom: {secretKeyRef: {name: mlflow-server, key: flask-key}}"),
    ("infra/x.sh", 'require PGPASSWORD "${PGPASSWORD:?set it}"'),
    ("infra/x.sh", "PGPASSWORD=$PGPASSWORD"),
    (".github/workflows/x.yml", "GITHUB_TOKEN: ${{ secrets.GITHUB_TOKEN }}"),
    ("README.md", "postgresql://<user>:<password>@<host>/db"),
    ("x.py", "client = Github(token=token)"),
    ("x.py", "token = os.environ['GITHUB_TOKEN']"),
    ("uv.lock", 'hash = "sha256:8f4f1ad3e54c6b1f6c4c3c0e3d9a5b7c8e9f0a1b2c3d4e5f60718293a4b5c6d7"'),
    ("infra/x.ini", "admin_password ="),
]


@pytest.mark.parametrize(("path", "line"), SAFE)
def test_references_and_placeholders_are_not_findings(path, line):
    assert scan_text(path, line) == []


# --- the production MLflow configuration takes its secrets from the environment ---------------

MLFLOW = PACKAGE_REPO / "infra" / "mlflow"


def mlflow_auth_config() -> ModuleType:
    """MLflow's reader of basic_auth.ini, loaded alone: the auth package's __init__ needs
    Flask-WTF, a server-side extra this project's environment does not install."""
    path = Path(mlflow.__file__).parent / "server" / "auth" / "config.py"
    spec = importlib.util.spec_from_file_location("mlflow_auth_config", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_basic_auth_ini_has_no_admin_password_and_uses_postgresql(monkeypatch):
    read_auth_config = mlflow_auth_config().read_auth_config
    parser = configparser.ConfigParser()
    parser.read(MLFLOW / "basic_auth.ini")
    assert "admin_password" not in parser["mlflow"]
    monkeypatch.setenv("MLFLOW_AUTH_CONFIG_PATH", str(MLFLOW / "basic_auth.ini"))
    monkeypatch.setenv("MLFLOW_AUTH_ADMIN_USERNAME", "from-env")
    monkeypatch.delenv("MLFLOW_AUTH_ADMIN_PASSWORD", raising=False)
    config = read_auth_config()  # MLflow's own reader accepts the file
    assert config.database_uri.startswith("postgresql://")
    user_info = config.database_uri.split("://", 1)[1].split("@", 1)[0]
    assert user_info == "mlflow"  # a user, no password (libpq reads PGPASSWORD)
    assert (config.admin_username, config.admin_password) == ("from-env", None)
    assert config.authorization_function.endswith("authenticate_request_basic_auth")


def test_the_start_script_runs_the_basic_auth_app_on_postgresql_and_s3():
    script = (MLFLOW / "start.sh").read_text()
    for flag in (
        '--backend-store-uri "$MLFLOW_BACKEND_STORE_URI"',
        '--artifacts-destination "$MLFLOW_ARTIFACTS_DESTINATION"',
        "--app-name basic-auth",
    ):
        assert flag in script
    for variable in ("MLFLOW_BACKEND_STORE_URI", "MLFLOW_FLASK_SERVER_SECRET_KEY"):
        assert f"require {variable}" in script


def run_start(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """start.sh with `echo` standing in for mlflow: shows the command it would run."""
    base = {"PATH": "/usr/bin:/bin", "MLFLOW_BIN": "echo", "HOME": str(tmp_path)}
    return subprocess.run(
        ["sh", str(MLFLOW / "start.sh")], env=base | env, capture_output=True, text=True
    )


COMPLETE = {
    "MLFLOW_BACKEND_STORE_URI": "postgresql://mlflow@db:5432/mlflow",
    "MLFLOW_ARTIFACTS_DESTINATION": "s3://bucket/mlflow",
    "MLFLOW_FLASK_SERVER_SECRET_KEY": "k",
    "MLFLOW_AUTH_ADMIN_USERNAME": "admin",
    "PGPASSWORD": "p",
}


def test_the_start_script_builds_the_command_from_the_environment(tmp_path):
    result = run_start(tmp_path, **COMPLETE)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "server",
        "--backend-store-uri",
        "postgresql://mlflow@db:5432/mlflow",
        "--artifacts-destination",
        "s3://bucket/mlflow",
        "--serve-artifacts",
        "--app-name",
        "basic-auth",
        "--host",
        "127.0.0.1",
        "--port",
        "5000",
        "--workers",
        "2",
    ]


@pytest.mark.parametrize("missing", sorted(COMPLETE))
def test_the_start_script_refuses_a_missing_variable(tmp_path, missing):
    env = {k: v for k, v in COMPLETE.items() if k != missing}
    result = run_start(tmp_path, **env)
    assert result.returncode == 2 and result.stdout == ""
    assert missing in result.stderr


def test_the_start_script_refuses_a_password_in_a_uri(tmp_path):
    leaky = "postgresql://mlflow:" + "pw" + "@db:5432/mlflow"
    for variable in ("MLFLOW_BACKEND_STORE_URI", "MLFLOW_AUTH_DATABASE_URI"):
        result = run_start(tmp_path, **(COMPLETE | {variable: leaky}))
        assert result.returncode == 2 and result.stdout == ""
        assert f"{variable} carries a password" in result.stderr
        assert "pw@" not in result.stderr


def test_the_deployment_takes_every_secret_from_a_secret_ref():
    docs = {d["kind"]: d for d in yaml.safe_load_all((MLFLOW / "deployment.yaml").read_text())}
    assert set(docs) == {"ConfigMap", "Deployment", "Service"}
    (container,) = docs["Deployment"]["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    for name in (
        "PGPASSWORD",
        "MLFLOW_FLASK_SERVER_SECRET_KEY",
        "MLFLOW_AUTH_ADMIN_PASSWORD",
        "AWS_SECRET_ACCESS_KEY",
    ):
        assert "value" not in env[name] and "secretKeyRef" in env[name]["valueFrom"], name
    config = docs["ConfigMap"]["data"]
    assert config["backend-store-uri"].startswith("postgresql://")
    assert config["artifacts-destination"].startswith("s3://")
    assert not any(scan_text("infra/mlflow/configmap", f"{k}: {v}") for k, v in config.items())
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
