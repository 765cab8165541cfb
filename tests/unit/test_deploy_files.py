"""The deploy files (Dockerfile, .dockerignore, fly.toml) say what the code does.

Every command they run parses with the real CLI parser, every health path is the one the web app serves, the
ports agree, no secret is written down, and Fly waits longer than the bridge's graceful shutdown. No Docker engine
or Fly account is needed: the files are read as text (the Dockerfile) or TOML (fly.toml).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from thred_bridge.entrypoints.cli import _parser
from thred_bridge.settings import Settings
from thred_bridge.store import schema

ROOT = Path(__file__).resolve().parents[2]
SECRETS = (
    "BRIDGE_DATABASE_URL",
    "THRED_API_URL",
    "THRED_PARTNER_ID",
    "THRED_API_KEY",
    "BRIDGE_SECRET_KEY",
    "BRIDGE_ADMIN_TOKEN",
)
COMPILERS = ("gcc", "g++", "clang", "build-essential", "apt-get", "apk add", "-dev ")


# --- a small Dockerfile reader (also used by tests/integration/test_image_install.py) ------------------------


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]

    def last(self, keyword: str) -> str:
        found = self.all(keyword)
        assert found, f"no {keyword} in the stage FROM {self.base}"
        return found[-1]

    def env(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for args in self.all("ENV"):
            for word in shlex.split(args):
                name, sep, value = word.partition("=")
                assert sep, f"ENV {args!r}: write ENV NAME=value"
                values[name] = value
        return values


def instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction: continuations joined, comment lines (also inside them) dropped."""
    found: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1].strip() + " "
            continue
        whole = (pending + stripped).strip()
        pending = ""
        keyword, _, args = whole.partition(" ")
        found.append((keyword.upper(), args.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return found


def stages(text: str) -> list[Stage]:
    result: list[Stage] = []
    for keyword, args in instructions(text):
        if keyword == "FROM":
            words = args.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            assert len(words) in (1, 3), f"FROM {args!r}"
            result.append(Stage(base=words[0], name=name))
        else:
            assert result, f"{keyword} before the first FROM"
            result[-1].instructions.append((keyword, args))
    return result


def dockerfile(root: Path = ROOT) -> list[Stage]:
    return stages((root / "Dockerfile").read_text())


def exec_form(args: str) -> list[str]:
    """A CMD or HEALTHCHECK CMD in exec (JSON array) form: signals reach the process, no shell in between."""
    value = json.loads(args)
    assert isinstance(value, list), f"not a JSON array: {args}"
    assert all(isinstance(word, str) for word in value), args
    return [str(word) for word in value]


def healthcheck_command(stage: Stage) -> list[str]:
    check = stage.last("HEALTHCHECK")
    options, sep, command = check.partition("CMD ")
    assert sep, f"HEALTHCHECK without CMD: {check}"
    assert all(word.startswith("--") for word in options.split()), options
    return exec_form(command)


# --- the CLI ---------------------------------------------------------------------------------------------


def parse(argv: list[str]) -> argparse.Namespace:
    """``thred-bridge ARGS`` as the real CLI parses it; a command the CLI does not know fails the test."""
    assert argv, "an empty command"
    assert argv[0] == "thred-bridge", f"{argv}: not the thred-bridge command"
    try:
        return _parser().parse_args(argv[1:])
    except SystemExit as exc:
        pytest.fail(f"{shlex.join(argv)} does not parse with thred-bridge's CLI (exit {exc.code})")


def test_parse_refuses_what_the_cli_does_not_know() -> None:
    with pytest.raises(pytest.fail.Exception):
        parse(["thred-bridge", "serv"])
    with pytest.raises(pytest.fail.Exception):
        parse(["thred-bridge", "serve", "--workers", "0"])
    with pytest.raises(AssertionError):
        parse(["python", "-m", "thred_bridge", "serve"])


# --- Dockerfile --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def docker() -> list[Stage]:
    return dockerfile()


@pytest.fixture(scope="module")
def final(docker: list[Stage]) -> Stage:
    return docker[-1]


@pytest.fixture(scope="module")
def fly() -> dict[str, Any]:
    return tomllib.loads((ROOT / "fly.toml").read_text())


def test_multi_stage_on_pinned_slim_python(docker: list[Stage]) -> None:
    assert len(docker) >= 2
    for stage in docker:
        assert stage.base == "python:3.11-slim", f"FROM {stage.base}: every stage on python:3.11-slim"
    assert docker[0].name == "build"
    assert docker[-1].name is None or docker[-1].name != "build"


def test_build_stage_makes_wheels_and_installs_them_offline(docker: list[Stage]) -> None:
    runs = " && ".join(docker[0].all("RUN"))
    assert re.search(r"\bpip wheel\b.*--wheel-dir", runs), runs
    install = re.search(r"\bpip install\b(.*)", runs)
    assert install is not None, runs
    assert "--no-index" in install.group(1)
    assert "--find-links" in install.group(1)
    assert "thred-bridge" in install.group(1)
    copied = [shlex.split(args)[:-1] for args in docker[0].all("COPY")]
    assert sorted(word for words in copied for word in words) == ["README.md", "pyproject.toml", "src"]


def test_final_stage_runs_serve_on_8080(final: Stage) -> None:
    command = exec_form(final.last("CMD"))
    args = parse(command)
    assert args.command == "serve"
    assert (args.host, args.port) == ("0.0.0.0", 8080)
    assert final.all("ENTRYPOINT") == [], "no ENTRYPOINT: fly.toml's process commands replace CMD"
    assert final.all("EXPOSE") == ["8080"]


def test_final_stage_is_not_root(final: Stage) -> None:
    user = final.last("USER").split(":")[0]
    assert user not in ("root", "0", ""), f"USER {user}"
    # and it is the user the image creates, with a fixed uid
    runs = " ".join(final.all("RUN"))
    uid = user if user.isdigit() else None
    if uid is None:
        match = re.search(rf"useradd\b[^&]*--uid (\d+)[^&]*\b{re.escape(user)}\b", runs)
        assert match, f"USER {user} is not created by useradd --uid"
        uid = match.group(1)
    assert re.search(rf"useradd\b[^&]*--uid {uid}\b", runs), f"no useradd --uid {uid}"


def test_final_stage_has_no_compilers_and_no_wheels(final: Stage) -> None:
    text = " ".join(args for _kw, args in final.instructions).lower()
    for word in COMPILERS:
        assert word not in text, f"{word!r} in the runtime stage"
    assert "/wheels" not in text, "the wheels stay in the build stage"
    assert final.all("COPY") == ["--from=build /opt/venv /opt/venv"]


def test_runtime_environment(final: Stage) -> None:
    env = final.env()
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["PATH"].startswith("/opt/venv/bin:")
    for name in SECRETS[1:]:
        assert name not in env, f"{name} is a secret: it comes from the environment at run time"
    # the default database is a SQLite file in the working directory, which the non-root user owns
    path = schema.sqlite_path(env["BRIDGE_DATABASE_URL"])
    assert path is not None
    assert path.is_absolute()
    workdir = final.last("WORKDIR")
    assert str(path.parent) == workdir
    assert re.search(rf"chown [^&]*\s{re.escape(workdir)}(\s|$)", " ".join(final.all("RUN"))), f"{workdir} not chowned"


def test_healthcheck_asks_healthz_with_python(final: Stage) -> None:
    command = healthcheck_command(final)
    assert command[:2] == ["python", "-c"], "slim has no curl: the stdlib does the request"
    assert "http://127.0.0.1:8080/healthz" in command[2]
    assert "timeout=" in command[2]
    compile(command[2], "<HEALTHCHECK>", "exec")


def test_dockerignore_keeps_only_the_build_inputs(docker: list[Stage]) -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]

    def ignored(path: str) -> bool:
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        result = False
        for pattern in patterns:
            negate = pattern.startswith("!")
            body = pattern.removeprefix("!").strip("/")
            candidates = [body]
            if body.startswith("**/"):
                candidates += [body.removeprefix("**/")]
            if any(fnmatch.fnmatchcase(p, c) for p in prefixes for c in candidates):
                result = not negate
        return result

    for stage in docker:
        for args in stage.all("COPY"):
            if args.startswith("--from="):
                continue
            for source in shlex.split(args)[:-1]:
                assert not ignored(source), f"COPY {source}: excluded by .dockerignore"
    for path in ("src/thred_bridge/__init__.py", "src/thred_bridge/store/migrations/versions/0001.py"):
        assert not ignored(path), path
    for path in (
        ".git",
        ".venv",
        ".env",
        "thred-bridge.db",
        ".bridge-secret-key",
        "tests",
        "bench",
        "src/thred_bridge/__pycache__",
        "src/thred_bridge/x.pyc",
        "src/thred_bridge.egg-info",
        "src/.env",
    ):
        assert ignored(path), f"{path} would be sent to the build"


# --- fly.toml ----------------------------------------------------------------------------------------------


def test_every_process_is_a_real_command(fly: dict[str, Any]) -> None:
    processes = fly["processes"]
    assert set(processes) == {"web", "worker"}
    parsed = {name: parse(shlex.split(command)) for name, command in processes.items()}
    assert parsed["web"].command == "serve"
    assert parsed["worker"].command == "worker"
    assert parsed["web"].port == fly["http_service"]["internal_port"]
    assert parsed["web"].host == "0.0.0.0"


def test_release_command_migrates(fly: dict[str, Any]) -> None:
    assert parse(shlex.split(fly["deploy"]["release_command"])).command == "migrate"


def test_builds_this_dockerfile_and_ports_agree(fly: dict[str, Any], final: Stage) -> None:
    assert (ROOT / fly["build"]["dockerfile"]).is_file()
    assert str(fly["http_service"]["internal_port"]) == final.last("EXPOSE")
    assert "8080" in healthcheck_command(final)[2]


def test_web_gets_no_in_process_workers_and_every_env_value_is_a_setting(
    fly: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    env: dict[str, str] = fly["env"]
    known = {info.alias for info in Settings.model_fields.values() if info.alias}
    assert set(env) <= known, f"not settings of the bridge: {sorted(set(env) - known)}"
    for name, value in env.items():
        assert isinstance(value, str), f"{name}: fly.toml [env] values are strings"
    for name in known:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = Settings(_env_file=None)
    assert settings.workers == 0
    assert settings.env == "production"
    assert settings.public_url.startswith("https://")


def test_no_secret_is_written_down(fly: dict[str, Any]) -> None:
    def keys(value: Any) -> list[str]:
        if isinstance(value, dict):
            return [k for key, item in value.items() for k in (key, *keys(item))]
        if isinstance(value, list):
            return [k for item in value for k in keys(item)]
        return []

    written = set(keys(fly))
    text = (ROOT / "fly.toml").read_text()
    comments = "\n".join(line for line in text.splitlines() if line.lstrip().startswith("#"))
    for name in SECRETS:
        assert name not in written, f"{name} is a secret: `fly secrets set`, not fly.toml"
    for name in SECRETS[:5]:
        assert name in comments, f"{name}: list it in fly.toml's comments for `fly secrets set`"
    assert "postgresql://" not in "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))


def test_http_service_is_for_web_only(fly: dict[str, Any]) -> None:
    http = fly["http_service"]
    assert http["processes"] == ["web"]
    assert "services" not in fly, "the worker group has no service, so Fly never auto-stops it"
    assert http["force_https"] is True
    assert http["auto_start_machines"] is True
    assert http["min_machines_running"] >= 1
    concurrency = http["concurrency"]
    assert concurrency["type"] == "requests"
    assert 0 < concurrency["soft_limit"] <= concurrency["hard_limit"]


def _seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+)(ms|s|m)", duration)
    assert match, f"not a duration: {duration!r}"
    return int(match.group(1)) * {"ms": 0.001, "s": 1.0, "m": 60.0}[match.group(2)]


def test_checks_cover_healthz_and_readyz(fly: dict[str, Any]) -> None:
    checks = fly["http_service"]["checks"]
    assert sorted(check["path"] for check in checks) == ["/healthz", "/readyz"]
    for check in checks:
        assert check["method"] == "GET"
        assert 0 < _seconds(check["timeout"]) < _seconds(check["interval"])
        assert _seconds(check["grace_period"]) > 0


def test_fly_waits_out_the_graceful_shutdown(fly: dict[str, Any]) -> None:
    default = Settings.model_fields["shutdown_seconds"].default
    assert isinstance(default, float)
    assert fly["kill_signal"] == "SIGTERM"
    assert isinstance(fly["kill_timeout"], int)
    assert fly["kill_timeout"] >= default + 5, "kill_timeout: BRIDGE_SHUTDOWN_SECONDS and a margin"
    assert fly["kill_timeout"] <= 300, "Fly's maximum"


def test_app_name_is_a_real_default(fly: dict[str, Any]) -> None:
    assert re.fullmatch(r"[a-z0-9][a-z0-9-]*", fly["app"])
    assert isinstance(fly["primary_region"], str)
    assert len(fly["primary_region"]) == 3


def test_every_process_group_is_scraped_where_it_serves_metrics(fly: dict[str, Any]) -> None:
    scraped = {group: m["port"] for m in fly["metrics"] for group in m["processes"]}
    assert set(scraped) == {"web", "worker"}
    assert scraped["web"] == fly["http_service"]["internal_port"]
    assert str(scraped["worker"]) == fly["env"]["BRIDGE_METRICS_PORT"], "the worker serves where it is scraped"
    assert all(m["path"] == "/metrics" for m in fly["metrics"])


@pytest.mark.parametrize(
    ("given", "read"),
    [
        ("postgres://u:p@db.internal:5432/bridge", "postgresql://u:p@db.internal:5432/bridge"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        ("sqlite:///data/thred-bridge.db", "sqlite:///data/thred-bridge.db"),
    ],
)
def test_the_database_url_fly_postgres_attach_gives_is_understood(given: str, read: str) -> None:
    settings = Settings.model_validate({"BRIDGE_DATABASE_URL": given})
    assert settings.database_url == read
    assert schema.dialect_of(settings.database_url) in ("postgresql", "sqlite")
