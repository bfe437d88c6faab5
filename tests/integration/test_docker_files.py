"""What can be checked of docker/ without a Docker engine (none runs on the CI machines): the
compose file parses (docker-compose config), every image is pinned, every long-running service has
a health check and a restart policy, the Dockerfile installs exactly scripts/packages.txt in its
build stage, and every flag the compose file passes to a playhead program exists in its --help."""

import re
import shutil
import subprocess

import pytest
import yaml

from harness import BUILD_DIR, ROOT

COMPOSE = ROOT / "docker" / "compose.yaml"
DOCKERFILE = ROOT / "docker" / "Dockerfile"


def compose():
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_file_is_valid_for_docker_compose():
    if shutil.which("docker-compose") is None:
        pytest.fail("docker-compose (Debian package) is missing: run scripts/setup.sh")
    r = subprocess.run(["docker-compose", "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True,
                       env={"PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr


def test_every_image_is_pinned():
    images = [s["image"] for s in compose()["services"].values() if "image" in s]
    images += re.findall(r"^FROM\s+(\S+)", DOCKERFILE.read_text(), re.M)
    assert images
    for image in images:
        name, _, tag = image.partition(":")
        assert tag and tag != "latest" and re.search(r"\d", tag), f"{image} is not pinned to a version"


def test_services_have_health_checks_and_restart_policies():
    services = compose()["services"]
    for name in ("kafka", "redis", "ingest", "consumer", "api"):
        assert "healthcheck" in services[name], name
        assert services[name].get("restart") == "unless-stopped", name
    assert services["redis"]["command"][1:3] == ["--appendonly", "yes"]


def test_dockerfile_build_stage_installs_the_setup_package_list():
    text = DOCKERFILE.read_text()
    build_stage = text.split("FROM ", 2)[1]
    assert "COPY scripts/packages.txt" in build_stage
    # no package names written inline in the build stage: the list is scripts/packages.txt alone
    for line in build_stage.splitlines():
        if "apt-get install" in line:
            assert "packages.txt" in line, line
    runtime = text.split("FROM ", 2)[2]
    assert "runtime-packages.txt" in runtime and "USER playhead" in runtime


@pytest.mark.parametrize("program", ["ingest", "consumer", "api"])
def test_compose_flags_exist_in_the_programs(program):
    binary = BUILD_DIR / program / f"playhead-{program}"
    help_text = subprocess.run([str(binary), "--help"], capture_output=True, text=True, check=True).stdout
    command = compose()["services"][program]["command"]
    flags = [a for a in command[1:] if a.startswith("--")]
    assert command[0] == f"playhead-{program}"
    for flag in flags:
        assert f"{flag}=" in help_text or f"{flag}[" in help_text, f"{program}: {flag} not in --help"
    for var in compose()["services"][program]["environment"]:
        opt = var.removeprefix("PLAYHEAD_").lower().replace("_", "-")
        if var != "PLAYHEAD_JWT_SECRET":  # read by ph_auth_init, not an option
            assert f"--{opt}=" in help_text, f"{program}: {var} has no option"
