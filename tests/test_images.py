"""Container image, compose stack and Kubernetes manifests, validated statically (no container
engine runs here): they parse, every file they copy or name exists, every program they run is
installed by the project and every babelforge command they run exists, secrets come from the
environment or Kubernetes secrets, and the Dockerfile installs the way the Makefile (CI) does."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

BIN = Path(sys.executable).parent
SECRET = re.compile(r"(SECRET|PASSWORD|AUTH_TOKEN|API_KEY|ACCESS_KEY)", re.I)  # names of credentials


def _dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) with continuation lines joined."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            op, _, rest = line.partition(" ")
            out.append((op.upper(), rest.strip()))
    return out


def _babelforge_commands() -> set[str]:
    r = subprocess.run([str(BIN / "babelforge"), "--help"], capture_output=True, text=True, timeout=120)
    return set(re.search(r"\{([\w,-]+)\}", r.stdout).group(1).split(","))


def _check_command(argv: list[str], commands: set[str]) -> None:
    """A program the image has (installed by the project), and for babelforge an existing
    subcommand and an existing --config file."""
    program = argv[0]
    assert (BIN / program).exists(), f"{program}: not installed by the project"
    if program == "babelforge" and not argv[1].startswith("-"):
        assert argv[1] in commands, f"babelforge {argv[1]}: no such command"
        if "--config" in argv:
            assert (ROOT / argv[argv.index("--config") + 1]).exists()


def test_the_dockerfile_installs_as_ci_does_and_copies_what_exists():
    steps = _dockerfile()
    assert steps[0][0] == "FROM" and "python:3.11" in steps[0][1]
    args = dict(a.split("=", 1) for op, a in steps if op == "ARG")
    make = (ROOT / "Makefile").read_text()
    assert args["TORCH_SPEC"] == re.search(r"^TORCH_SPEC \?= (\S+)", make, re.M).group(1)
    assert "TORCH_INDEX" in args
    for op, a in steps:
        if op == "COPY":
            for src in a.split()[:-1]:
                assert (ROOT / src).exists(), f"COPY {src}: missing"
    run = " ".join(a for op, a in steps if op == "RUN")
    ci = [l.strip() for l in make.splitlines() if "pip install" in l and "$(BIN)/python" in l][:2]
    assert "--upgrade pip" in ci[0] and "python -m pip install --quiet --upgrade pip" in run
    assert '"$(TORCH_SPEC)" -e ".[dev]"' in ci[1] and '"$TORCH_SPEC" -e ".[dev]"' in run
    assert "--extra-index-url" in ci[1] and '--extra-index-url "$TORCH_INDEX"' in run
    names = [kv.split("=", 1)[0] for op, a in steps if op in ("ENV", "ARG") for kv in a.split() if "=" in kv]
    assert names and not [n for n in names if SECRET.search(n)]  # no credential baked into the image
    cmd = json.loads(next(a for op, a in steps if op == "CMD"))
    _check_command(cmd, _babelforge_commands())
    assert (ROOT / ".dockerignore").exists() and ".venv" in (ROOT / ".dockerignore").read_text()


def test_the_compose_stack():
    spec = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    services = spec["services"]
    assert {"prefect-server", "prefect-worker", "ray-head", "ray-worker", "minio", "mlflow"} <= set(services)
    built = [s for s in services.values() if "build" in s]
    assert built and all((ROOT / "deploy" / s["build"]["context"] / s["build"]["dockerfile"]).exists() for s in built)
    image = built[0]["image"]
    commands = _babelforge_commands()
    pools = {d["work_pool"]["name"] for d in yaml.safe_load((ROOT / "deploy" / "prefect.yaml").read_text())["deployments"]}
    for name, svc in services.items():
        env = svc.get("environment") or {}
        for key, value in (env.items() if isinstance(env, dict) else []):
            if SECRET.search(key):  # never a literal secret: a reference to the env file
                assert re.fullmatch(r"\$\{\w+(:\?[^}]*)?\}", str(value)), f"{name}: {key} is not ${{...}}"
        if svc.get("image") != image:
            continue
        argv = svc["command"]
        _check_command(argv, commands)
        if argv[:3] == ["prefect", "worker", "start"]:
            assert argv[argv.index("--pool") + 1] in pools
        for dep in svc.get("depends_on") or []:
            assert dep in services
    worker_env = services["prefect-worker"]["environment"]
    assert worker_env["PREFECT_API_URL"].startswith("http://prefect-server:")
    assert worker_env["RAY_ADDRESS"].startswith("ray-head:")
    assert "deploy/stack.env" in (ROOT / ".gitignore").read_text()
    example = (ROOT / "deploy" / "stack.env.example").read_text()
    assert all(v == "" for k, v in (l.split("=", 1) for l in example.splitlines() if "=" in l and not l.startswith("#")))


@pytest.mark.parametrize("name", ["rayjob.yaml", "raycluster.yaml"])
def test_the_kuberay_manifests(name):
    spec = yaml.safe_load((ROOT / "deploy" / "k8s" / name).read_text())
    assert spec["apiVersion"] == "ray.io/v1" and spec["kind"] in ("RayJob", "RayCluster")
    cluster = spec["spec"]["rayClusterSpec"] if spec["kind"] == "RayJob" else spec["spec"]
    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    for group in groups:
        assert all(isinstance(v, str) for v in group["rayStartParams"].values())  # KubeRay wants strings
        pod = group["template"]["spec"]
        mounts = {m["name"] for c in pod["containers"] for m in c.get("volumeMounts", [])}
        assert mounts <= {v["name"] for v in pod.get("volumes", [])}
        for c in pod["containers"]:
            assert c["image"].split("/")[-1].startswith("babelforge:")
            assert "command" not in c  # KubeRay's generated `ray start` runs, not the image's CMD
            assert not any(SECRET.search(e["name"]) and "value" in e for e in c.get("env", []))
            assert any("secretRef" in e for e in c.get("envFrom", []))
    gpu_workers = [g for g in cluster["workerGroupSpecs"]
                   if "nvidia.com/gpu" in g["template"]["spec"]["containers"][0]["resources"]["limits"]]
    assert gpu_workers
    if spec["kind"] == "RayJob":
        argv = shlex.split(spec["spec"]["entrypoint"])
        _check_command(argv, _babelforge_commands())
        from pipeline.config import load_config

        sets = [argv[i + 1] for i, a in enumerate(argv) if a == "--set"]
        cfg = load_config(str(ROOT / argv[argv.index("--config") + 1]), sets)
        assert cfg.ray.use_gpu and cfg.ray.num_workers <= sum(g["replicas"] for g in gpu_workers)
        mounted = {m["mountPath"] for c in cluster["headGroupSpec"]["template"]["spec"]["containers"]
                   for m in c.get("volumeMounts", [])}
        assert cfg.output_dir in mounted or "://" in cfg.output_dir


def test_the_prefect_kubernetes_work_pool_template():
    spec = json.loads((ROOT / "deploy" / "k8s" / "prefect-work-pool.json").read_text())
    defined = set(spec["variables"]["properties"])
    used = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", json.dumps(spec["job_configuration"])))
    assert used <= defined, f"undefined template variables: {used - defined}"
    job = spec["job_configuration"]["job_manifest"]
    assert job["kind"] == "Job" and job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    [container] = job["spec"]["template"]["spec"]["containers"]
    assert container["args"] == "{{ command }}" and "command" not in container  # the image has no ENTRYPOINT
    env = spec["variables"]["properties"]["env"]["default"]
    assert not any(SECRET.search(k) for k in env)
    from prefect.utilities.templating import apply_values

    filled = apply_values(spec["job_configuration"], {k: v.get("default") for k, v in
                                                       spec["variables"]["properties"].items()}
                          | {"name": "run-1", "command": "prefect flow-run execute"})
    assert filled["job_manifest"]["spec"]["template"]["spec"]["containers"][0]["image"] == "babelforge:cpu"


def test_the_compose_stack_is_private_by_default():
    """Every published port on loopback; the Ray dashboard (an unauthenticated job API) not
    published, only through the opt-in loopback override; MinIO's root key only in MinIO and
    its init step, every other service with a key of its own (created by deploy/minio-init.sh
    with a policy limited to its bucket); Prefect behind basic auth; the worker's input roots set."""
    deploy = ROOT / "deploy"
    spec = yaml.safe_load((deploy / "compose.yaml").read_text())
    services = spec["services"]
    published = {name: svc.get("ports", []) for name, svc in services.items()}
    assert any(published.values())
    for name, ports in published.items():
        for port in ports:
            host_ip, _, rest = str(port).partition(":")
            assert host_ip == "127.0.0.1" and rest.count(":") == 1, f"{name}: port {port} not bound to loopback"
    assert not published["ray-head"] and "8265" not in json.dumps(published)
    override = yaml.safe_load((deploy / "compose.dashboard.yaml").read_text())
    assert override["services"] == {"ray-head": {"ports": ["127.0.0.1:8265:8265"]}}

    def keys(svc: dict) -> set[str]:
        env = svc.get("environment") or {}
        return {re.fullmatch(r"\$\{(\w+).*\}", str(v)).group(1) for k, v in env.items() if SECRET.search(k)
                or k.startswith(("MINIO_ROOT_", "PREFECT_API_AUTH", "PREFECT_SERVER_API_AUTH"))}

    root = {"MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"}
    for name, svc in services.items():
        if keys(svc) & root:
            assert name in ("minio", "minio-init"), f"{name} gets the object store's root key"
    runs, mlflow = {"RUNS_S3_ACCESS_KEY", "RUNS_S3_SECRET_KEY"}, {"MLFLOW_S3_ACCESS_KEY", "MLFLOW_S3_SECRET_KEY"}
    for name in ("prefect-worker", "ray-head", "ray-worker"):
        assert runs <= keys(services[name]) and not keys(services[name]) & (mlflow | root)
    assert mlflow <= keys(services["mlflow"]) and not keys(services["mlflow"]) & (runs | root)
    assert not keys(services["prefect-server"]) & (runs | mlflow | root)
    init = services["minio-init"]
    [mount] = init["volumes"]
    script_path = deploy / mount.split(":")[0]
    assert init["entrypoint"][-1] == mount.split(":")[1] and script_path.exists()
    script = script_path.read_text()
    for policy, bucket, user in (("babelforge-runs", "babelforge", "RUNS_S3"), ("babelforge-mlflow", "mlflow", "MLFLOW_S3")):
        assert f"policy {policy} {bucket}" in script
        assert f'user "${user}_ACCESS_KEY" "${user}_SECRET_KEY" {policy}' in script
    assert "arn:aws:s3:::$2/*" in script and "s3:*" not in script and "admin:" not in script
    assert services["mlflow"]["depends_on"]["minio-init"]["condition"] == "service_completed_successfully"
    assert "PREFECT_AUTH_STRING" in keys(services["prefect-server"]) & keys(services["prefect-worker"])
    roots = services["prefect-worker"]["environment"]["BABELFORGE_ALLOWED_ROOTS"].split(",")
    assert roots and all(r.startswith(("/opt/babelforge/", "s3://babelforge/")) for r in roots)
    example = {l.split("=", 1)[0] for l in (deploy / "stack.env.example").read_text().splitlines()
               if "=" in l and not l.startswith("#")}
    needed = set(re.findall(r"\$\{(\w+):\?", (deploy / "compose.yaml").read_text()))
    assert needed == example, f"stack.env.example lacks {needed - example} / has unused {example - needed}"
