"""Dockerfile.windows agrees with the crate, the Kubernetes manifests and itself, and
scripts/build-image assembles the multi-version manifest list it documents.

There is no Docker engine in CI, so: the Dockerfile is parsed (hadolint lints it separately),
its build stage's cargo command is run on exactly the files the build context lets in, and
build-image runs against a recording stand-in for the docker CLI.
"""

import json
import os
import re
import shutil
import stat
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile.windows"
CRATE = tomllib.loads((REPO / "Cargo.toml").read_text())["package"]
EXE = f"{CRATE['name']}.exe"
TARGET = "x86_64-pc-windows-gnu"
DAEMONSET_FILE = REPO / "deploy/kubernetes/base/windows-exporter-proxy.yaml"


def stages() -> tuple[dict[str, str], list[list[tuple[str, str]]]]:
    """(global ARG defaults, stages as [(INSTRUCTION, arguments)]), continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    global_args: dict[str, str] = {}
    out: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, rest = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            out.append([])
        if not out:
            assert instruction == "ARG", f"only ARG may precede the first FROM, got {line}"
            name, _, default = rest.partition("=")
            global_args[name] = default
            continue
        out[-1].append((instruction, rest.strip()))
    return global_args, out


def only(stage: list[tuple[str, str]], instruction: str) -> str:
    values = [rest for inst, rest in stage if inst == instruction]
    assert len(values) == 1, f"expected one {instruction} in the stage, found {values}"
    return values[0]


def windows_path(image_path: str) -> str:
    """A COPY destination as the Windows runtime sees it (/a/b -> C:\\a\\b)."""
    assert image_path.startswith("/"), image_path
    return "C:" + image_path.replace("/", "\\")


def default_listen_port() -> int:
    """PROXY_LISTEN's default, from the real binary's --help."""
    help_text = subprocess.run(
        ["cargo", "run", "--quiet", "--locked", "--", "--help"], cwd=REPO, check=True, capture_output=True, text=True
    ).stdout
    line = next(l for l in help_text.splitlines() if l.strip().startswith("PROXY_LISTEN"))
    match = re.search(r"\(default [^)]*:(\d+)\)", line)
    assert match, f"no default port in --help line: {line}"
    return int(match.group(1))


def daemonset() -> dict:
    docs = [d for d in yaml.safe_load_all(DAEMONSET_FILE.read_text()) if d]
    return next(d for d in docs if d["kind"] == "DaemonSet")


def test_runtime_stage_is_nanoserver_of_the_chosen_version_with_no_run():
    args, all_stages = stages()
    assert args.get("WINDOWS_VERSION") == "ltsc2022"
    final = all_stages[-1]
    assert final[0] == ("FROM", "mcr.microsoft.com/windows/nanoserver:${WINDOWS_VERSION}")
    assert not [rest for inst, rest in final if inst in ("RUN", "SHELL")], "nanoserver stage must not RUN anything"


def test_entrypoint_is_the_copied_exe_in_exec_form():
    _, all_stages = stages()
    build, final = all_stages[0], all_stages[-1]
    entrypoint = json.loads(only(final, "ENTRYPOINT"))
    assert isinstance(entrypoint, list) and len(entrypoint) == 1, entrypoint
    copy = only(final, "COPY").split()
    assert copy[0] == "--from=build", copy
    source, destination = copy[1], copy[2]
    assert Path(destination).name == EXE
    assert entrypoint[0] == windows_path(destination)
    # The build stage produces that file from the cargo build of this crate for the mingw target.
    build_run = " ".join(rest for inst, rest in build if inst == "RUN")
    assert f"cargo build --release --locked --target {TARGET}" in build_run
    assert f"cp target/{TARGET}/release/{EXE} {source}" in build_run


def test_port_and_user_agree_with_the_binary_and_the_daemonset():
    _, all_stages = stages()
    final = all_stages[-1]
    port = default_listen_port()
    assert only(final, "EXPOSE").split() == [str(port)]
    assert only(final, "USER") == "ContainerUser"
    pod = daemonset()["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert {p["name"]: p["containerPort"] for p in container["ports"]}["metrics"] == port
    assert pod["securityContext"]["windowsOptions"]["runAsUserName"] == "ContainerUser"
    # The DaemonSet must not move the listener away from the exposed port.
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    assert env.get("PROXY_LISTEN") in (None, f"0.0.0.0:{port}"), env


def test_builder_rust_is_new_enough_for_the_crate():
    args, all_stages = stages()
    assert all_stages[0][0][1].startswith("--platform=$BUILDPLATFORM rust:${RUST_VERSION}-bookworm AS build")
    have = tuple(int(x) for x in args["RUST_VERSION"].split("."))
    need = tuple(int(x) for x in CRATE["rust-version"].split("."))
    assert have >= need, f"RUST_VERSION {args['RUST_VERSION']} < rust-version {CRATE['rust-version']}"


def context_files() -> list[Path]:
    """The files .dockerignore lets into the build context (it is an allow-list: '*', then '!x')."""
    lines = [l.strip() for l in (REPO / ".dockerignore").read_text().splitlines()]
    lines = [l for l in lines if l and not l.startswith("#")]
    assert lines[0] == "*" and all(l.startswith("!") for l in lines[1:]), f".dockerignore is not an allow-list: {lines}"
    files: list[Path] = []
    for entry in (l[1:].rstrip("/") for l in lines[1:]):
        path = REPO / entry
        assert path.exists(), f".dockerignore re-includes {entry}, which does not exist"
        files += sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return files


def test_build_stage_builds_from_the_context_alone(tmp_path):
    """The cargo command of the build stage, on only what .dockerignore and the COPYs let in."""
    _, all_stages = stages()
    copied = [rest.split()[:-1] for inst, rest in all_stages[0] if inst == "COPY"]
    copied_paths = {p for sources in copied for p in sources}
    context = tmp_path / "src"
    for file in context_files():
        relative = file.relative_to(REPO)
        if relative.parts[0] in copied_paths or str(relative) in copied_paths:
            (context / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(file, context / relative)
    assert (context / ".cargo/config.toml").is_file(), "the mingw linker config must reach the build"
    env = dict(os.environ, CARGO_TARGET_DIR=str(REPO / "target/docker-context"))
    subprocess.run(
        ["cargo", "build", "--release", "--locked", "--target", TARGET], cwd=context, env=env, check=True
    )
    assert (REPO / "target/docker-context" / TARGET / "release" / EXE).is_file()


# ---------------------------------------------------------------------------------------------
# scripts/build-image, with a stand-in docker CLI that records its arguments

NANOSERVER_LISTS = {  # what `docker manifest inspect mcr.microsoft.com/windows/nanoserver:<tag>` shows
    "1809": "10.0.17763.7009",
    "ltsc2022": "10.0.20348.3328",
    "ltsc2025": "10.0.26100.3476",
}


@pytest.fixture
def fake_docker(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "docker.log"
    answers = tmp_path / "answers"
    answers.mkdir()
    for tag, version in NANOSERVER_LISTS.items():
        (answers / tag).write_text(json.dumps({
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
            "manifests": [{"digest": "sha256:00", "platform": {"architecture": "amd64", "os": "windows", "os.version": version}}],
        }, indent=3))
    script = bin_dir / "docker"
    script.write_text(f"""#!/usr/bin/env bash
printf '%s\\n' "$*" >> {log}
if [[ "$1 $2" == "manifest inspect" ]]; then cat "{answers}/${{3##*:}}"; fi
if [[ "$1 $2" == "buildx inspect" ]]; then exit 1; fi
exit 0
""")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return bin_dir, log, answers


def run_build_image(bin_dir, **env):
    full = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", **env)
    return subprocess.run([str(REPO / "scripts/build-image")], cwd=REPO, env=full, capture_output=True, text=True)


def test_build_image_pushes_three_variants_and_annotates_each_os_version(fake_docker):
    bin_dir, log, _ = fake_docker
    result = run_build_image(bin_dir, IMAGE="registry.test/wep", TAG="9.9.9")
    assert result.returncode == 0, result.stderr
    calls = log.read_text().splitlines()
    builds = [c for c in calls if c.startswith("buildx build")]
    assert len(builds) == 3
    for tag in NANOSERVER_LISTS:
        (build,) = [b for b in builds if f"WINDOWS_VERSION={tag} " in b]
        for expected in ("--platform windows/amd64", "--file Dockerfile.windows", "--provenance=false",
                         "--sbom=false", f"--tag registry.test/wep:9.9.9-{tag}", "--push"):
            assert expected in build, (expected, build)
    create = [c for c in calls if c.startswith("manifest create")]
    assert create == ["manifest create --amend registry.test/wep:9.9.9 "
                      + " ".join(f"registry.test/wep:9.9.9-{t}" for t in NANOSERVER_LISTS)]
    annotations = [c for c in calls if c.startswith("manifest annotate")]
    assert annotations == [
        f"manifest annotate --os windows --arch amd64 --os-version {v} registry.test/wep:9.9.9 registry.test/wep:9.9.9-{t}"
        for t, v in NANOSERVER_LISTS.items()
    ]
    assert calls[-1] == "manifest push --purge registry.test/wep:9.9.9"
    assert calls.index(create[0]) > max(calls.index(b) for b in builds), "the list is made after every push"


def test_build_image_refuses_an_os_version_of_another_build_before_building(fake_docker):
    bin_dir, log, answers = fake_docker
    (answers / "ltsc2025").write_text((answers / "ltsc2022").read_text())  # a wrong base image answer
    result = run_build_image(bin_dir, IMAGE="registry.test/wep")
    assert result.returncode != 0
    assert "10.0.26100" in result.stderr and "OS_VERSION_ltsc2025" in result.stderr, result.stderr
    assert not [c for c in log.read_text().splitlines() if c.startswith("buildx build")], "built despite the error"


def test_build_image_needs_an_image_name_for_a_registry(fake_docker):
    bin_dir, log, _ = fake_docker
    result = run_build_image(bin_dir)
    assert result.returncode == 64
    assert "IMAGE" in result.stderr
    assert not log.exists() or not log.read_text().strip()
