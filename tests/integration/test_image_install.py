"""The image's install steps work, without a Docker engine: the Dockerfile's own instructions, replayed.

A clean ``git clone`` of the repository is the build context. The build stage's instructions (WORKDIR, COPY,
ENV, RUN) are read from the clone's Dockerfile and run in a scratch directory that stands for the image's
filesystem (``/wheels`` is ``<root>/wheels``), with a fresh virtual environment standing for the base image's
Python. Then everything the runtime stage does not ``COPY --from=build`` is deleted, and the image's commands
run on the runtime stage's ENV, PATH and WORKDIR only: ``--help``, fly.toml's release command (``migrate``),
the default CMD (``serve``, on a free loopback port) with its HEALTHCHECK, and fly.toml's ``worker``; each stops
in order on SIGTERM. So the Dockerfile and this test cannot drift apart.

It clones HEAD, so it tests what is committed, not the working tree: a HEAD without a Dockerfile is skipped.
``BRIDGE_TEST_IMAGE_REPO`` names another repository to clone (e.g. a scratch copy with a commit on top).
``pip wheel`` downloads the dependencies from the package index pip is configured with.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.unit.test_deploy_files import Stage, dockerfile, exec_form, healthcheck_command

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

ROOT = Path(__file__).resolve().parents[2]
STEP_TIMEOUT = 900  # seconds: `pip wheel` downloads every dependency
STOP_TIMEOUT = 30  # seconds from SIGTERM to exit, as fly.toml's kill_timeout allows
USER_MANAGEMENT = ("groupadd", "useradd", "chown")  # needs root; tests/unit/test_deploy_files.py checks them


def _inherited_env() -> dict[str, str]:
    """This machine's environment (pip's index configuration) without the bridge's settings or a venv."""
    return {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("BRIDGE_", "THRED_")) and name not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
    }


def _run(argv: list[str], *, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=STEP_TIMEOUT, check=False
    )  # fmt: skip
    assert result.returncode == 0, f"{shlex.join(argv)}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


@dataclass
class Image:
    """The image's filesystem under ``root``, the build context, and a Python standing for the base image's."""

    root: Path
    context: Path
    base_python: Path
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    outputs: list[str] = field(default_factory=list)

    def path(self, container_path: str) -> Path:
        assert container_path.startswith("/"), container_path
        return self.root / container_path.lstrip("/")

    def word(self, word: str) -> str:
        """A shell word with its container path moved under ``root`` (also ``--option=/path``)."""
        if word.startswith("/"):
            return str(self.path(word))
        option, sep, value = word.partition("=")
        if sep and option.startswith("--") and value.startswith("/"):
            return f"{option}={self.path(value)}"
        return word

    def value(self, name: str, value: str) -> str:
        """An ENV value as the host sees it."""
        if name == "PATH":
            parts = [os.environ["PATH"] if part == "$PATH" else self.word(part) for part in value.split(":")]
            return ":".join(parts)
        if value.startswith("sqlite:////"):
            return f"sqlite:///{self.path(value.removeprefix('sqlite:///'))}"
        assert "$" not in value, f"ENV {name}={value}: teach this test the expansion"
        return value

    def set_env(self, args: str) -> None:
        for name, value in Stage("", None, [("ENV", args)]).env().items():
            self.env[name] = self.value(name, value)

    def workdir(self, args: str) -> None:
        self.cwd = self.path(args)
        self.cwd.mkdir(parents=True, exist_ok=True)

    def build(self, stage: Stage) -> None:
        """Replay the build stage: WORKDIR, COPY from the context, ENV, RUN (``python``/``pip``: the base's)."""
        self.env = _inherited_env()
        for keyword, args in stage.instructions:
            if keyword == "WORKDIR":
                self.workdir(args)
            elif keyword == "ENV":
                self.set_env(args)
            elif keyword == "COPY":
                *sources, target = shlex.split(args)
                assert self.cwd is not None, "COPY before WORKDIR"
                assert not target.startswith("/"), f"COPY {args}: relative to WORKDIR"
                for source in sources:
                    into = self.cwd / target / Path(source).name if target.endswith("/") else self.cwd / target
                    src = self.context / source
                    if src.is_dir():
                        shutil.copytree(src, into)
                    else:
                        into.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copy2(src, into)
            elif keyword == "RUN":
                for command in args.split("&&"):
                    self.run_build(shlex.split(command))
            else:
                pytest.fail(f"{keyword} in the build stage: teach this test what it does")

    def run_build(self, argv: list[str]) -> None:
        assert self.cwd is not None, "RUN before WORKDIR"
        program, *rest = argv
        if program == "python":
            head = [str(self.base_python)]
        elif program == "pip":
            head = [str(self.base_python), "-m", "pip"]
        else:
            head = [self.word(program)]
        result = _run([*head, *map(self.word, rest)], cwd=self.cwd, env=self.env)
        self.outputs.append(result.stdout + result.stderr)

    def runtime(self, stage: Stage, build_name: str) -> None:
        """Keep what the runtime stage copies from the build stage, delete the rest; then its RUN, ENV, WORKDIR."""
        kept: list[Path] = []
        for args in stage.all("COPY"):
            source, target = args.removeprefix(f"--from={build_name} ").split()
            assert args.startswith(f"--from={build_name} "), f"COPY {args}: only from the build stage"
            assert source == target, f"COPY {args}: a virtual environment stays where it was made"
            kept.append(self.path(source))

        def prune(directory: Path) -> None:
            for entry in directory.iterdir():
                if entry in kept:
                    continue
                if any(entry in k.parents for k in kept):
                    prune(entry)
                elif entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()

        prune(self.root)
        self.env = {"HOME": str(self.path("/data")), "LANG": "C.UTF-8", "PATH": "/usr/bin:/bin"}
        self.cwd = None
        for keyword, args in stage.instructions:
            if keyword == "RUN":
                for command in args.split("&&"):
                    program, *rest = shlex.split(command)
                    if program == "mkdir":
                        for word in rest:
                            Path(self.word(word)).mkdir(parents=True)
                    else:
                        assert program in USER_MANAGEMENT, f"RUN {command}: teach this test what it does"
            elif keyword == "ENV":
                self.set_env(args)
            elif keyword == "WORKDIR":
                self.workdir(args)
            else:
                assert keyword in ("COPY", "USER", "EXPOSE", "HEALTHCHECK", "CMD"), f"{keyword}: teach this test"

    def which(self, program: str) -> str:
        found = shutil.which(program, path=self.env["PATH"])
        assert found is not None, f"{program} not on the image's PATH"
        assert Path(found).is_relative_to(self.root), f"{program} is {found}, not the image's"
        return found

    def run(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        assert self.cwd is not None
        return subprocess.run(
            [self.which(argv[0]), *argv[1:]], cwd=self.cwd, env=self.env, capture_output=True, text=True,
            timeout=120, check=False,
        )  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=3) as answer:  # noqa: S310 - a loopback http URL
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def _stops_cleanly(proc: subprocess.Popen[bytes], log: Path, *, codes: tuple[int, ...] = (0,)) -> None:
    """SIGTERM: the process drains, says ``process.stopped`` (its claims given back) and exits with ``codes``."""
    proc.send_signal(signal.SIGTERM)
    started = time.monotonic()
    try:
        code = proc.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail(f"{proc.args!r} still running {STOP_TIMEOUT} s after SIGTERM\n{log.read_text()}")
    assert code in codes, f"{proc.args!r}: exit {code} after SIGTERM\n{log.read_text()}"
    assert time.monotonic() - started < STOP_TIMEOUT
    assert '"process.stopped"' in log.read_text(), f"no orderly stop\n{log.read_text()}"


def _unavailable(reason: str) -> None:
    """In CI (a clean clone with git) this cannot happen: fail there, skip with the reason elsewhere."""
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def test_image_install_steps_in_clean_virtual_environments(tmp_path: Path) -> None:
    repo = Path(os.environ.get("BRIDGE_TEST_IMAGE_REPO", str(ROOT)))
    if shutil.which("git") is None or not (repo / ".git").exists():
        _unavailable(f"needs git and a git repository at {repo}")
    context = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(repo), str(context)], check=True, timeout=120)
    if not (context / "Dockerfile").is_file():
        _unavailable("HEAD has no Dockerfile yet: this test replays the committed one (commit it first)")
    build, final = dockerfile(context)[0], dockerfile(context)[-1]
    assert build.name is not None
    fly = tomllib.loads((context / "fly.toml").read_text())

    base = tmp_path / "base-python"
    _run([sys.executable, "-m", "venv", str(base)], cwd=tmp_path, env=_inherited_env())
    image = Image(root=tmp_path / "image", context=context, base_python=base / "bin" / "python")
    image.root.mkdir()

    image.build(build)
    built = {name for output in image.outputs for name in re.findall(r"Building wheel for (\S+)", output)}
    assert built == {"thred-bridge"}, f"built from source: {built}"
    wheels = sorted(path.name for path in image.root.rglob("*.whl"))
    assert any(name.startswith("thred_bridge-") for name in wheels), wheels
    # a wheel tagged plain linux_* was compiled here: the slim build stage has no compiler to do that
    assert not [w for w in wheels if re.search(r"-linux_\w+\.whl$", w)], wheels

    image.runtime(final, build.name)
    assert not list(image.root.rglob("*.whl")), "the wheels stay in the build stage"
    assert image.cwd is not None

    assert image.run(["thred-bridge", "--help"]).returncode == 0
    migrate = image.run(shlex.split(fly["deploy"]["release_command"]))
    assert migrate.returncode == 0, migrate.stderr
    assert "migrated" in migrate.stdout
    database = Path(image.env["BRIDGE_DATABASE_URL"].removeprefix("sqlite:///"))
    assert database.is_file()
    assert database.parent == image.cwd

    # the default command on a free loopback port (the image binds 0.0.0.0:8080), and the HEALTHCHECK against it
    port = _free_port()
    command = exec_form(final.last("CMD"))
    command[command.index("--host") + 1] = "127.0.0.1"
    command[command.index("--port") + 1] = str(port)
    check = healthcheck_command(final)
    check[-1] = check[-1].replace("127.0.0.1:8080/", f"127.0.0.1:{port}/")
    log = tmp_path / "serve.log"
    with (
        log.open("wb") as sink,
        subprocess.Popen(
            [image.which(command[0]), *command[1:]], cwd=image.cwd, env=image.env, stdout=sink, stderr=subprocess.STDOUT
        ) as serve,
    ):
        try:
            deadline = time.monotonic() + 60
            while True:
                assert serve.poll() is None, f"serve exited with {serve.returncode}\n{log.read_text()}"
                try:
                    if _get(f"http://127.0.0.1:{port}/healthz") == 200:
                        break
                except (urllib.error.URLError, ConnectionError):
                    pass
                assert time.monotonic() < deadline, f"no /healthz within 60 s\n{log.read_text()}"
                time.sleep(0.2)
            assert _get(f"http://127.0.0.1:{port}/readyz") == 200
            healthy = image.run(check)
            assert healthy.returncode == 0, healthy.stderr
            _stops_cleanly(serve, log)
        finally:
            if serve.poll() is None:
                serve.kill()
    assert image.run(check).returncode != 0, "the HEALTHCHECK passes with nothing listening"

    # fly.toml's worker: starts on the image's defaults, stays up, stops on SIGTERM
    log = tmp_path / "worker.log"
    worker_command = shlex.split(fly["processes"]["worker"])
    with log.open("wb") as sink, subprocess.Popen(
        [image.which(worker_command[0]), *worker_command[1:]], cwd=image.cwd, env=image.env, stdout=sink,
        stderr=subprocess.STDOUT,
    ) as worker:  # fmt: skip
        try:
            time.sleep(5)
            assert worker.poll() is None, f"worker exited with {worker.returncode}\n{log.read_text()}"
            _stops_cleanly(worker, log)
        finally:
            if worker.poll() is None:
                worker.kill()
