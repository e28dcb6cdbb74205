# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The execution environment definition (execution-environment.yml) as ansible-builder reads it.

No container engine here: the test builds the collection from this checkout, runs `ansible-builder create` (the
build context only) and then replays, on this machine, the build's introspection step (the Containerfile's
`introspect.py` line) over the collections the galaxy stage would install, so the Python and system requirements
the image would get are checked as ansible-builder would gather them. Nothing reaches the network: the proxies
point at a closed loopback port, so any download attempt fails the test.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VENV_BIN = os.path.join(ROOT, ".venv", "bin")
BUNDLED = os.path.join(ROOT, ".venv", "lib", "python%d.%d" % sys.version_info[:2], "site-packages",
                       "ansible_collections")

# Every PostgreSQL major an Aurora target can run that this collection supports (docs/awx.md): copy_schema needs the
# target's pg_dump/pg_restore, replicate's statistics import 18 or later (module_utils/analyze.py IMPORT_MIN_MAJOR).
TARGET_MAJORS = (14, 15, 16, 17, 18)

OFFLINE = {"http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9",
           "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9", "no_proxy": "", "NO_PROXY": ""}


def tool(name):
    path = os.path.join(VENV_BIN, name)
    return path if os.path.exists(path) else shutil.which(name)


def run(cmd, cwd, env_extra=None):
    env = dict(os.environ, **OFFLINE)
    env.update(ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"))
    env.update(env_extra or {})
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, "%s failed (%d):\n%s\n%s" % (cmd, proc.returncode, proc.stdout, proc.stderr)
    return proc


def load(path):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def lines(path):
    with open(path, encoding="utf-8") as f:
        return [x.strip() for x in f if x.strip() and not x.lstrip().startswith("#")]


@pytest.fixture(scope="module")
def ee():
    return load(os.path.join(ROOT, "execution-environment.yml"))


@pytest.fixture(scope="module")
def galaxy():
    return load(os.path.join(ROOT, "galaxy.yml"))


@pytest.fixture(scope="module")
def context(tmp_path_factory, ee):
    """A build context made by `ansible-builder create` from the repository's definition and a collection tarball
    built from this checkout (where the definition expects it, relative to the definition)."""
    base = tmp_path_factory.mktemp("ee")
    src = base / "src"
    src.mkdir()
    shutil.copy(os.path.join(ROOT, "execution-environment.yml"), src)
    tarballs = [f["src"] for f in ee.get("additional_build_files", []) if f["src"].endswith(".tar.gz")]
    assert len(tarballs) == 1, "additional_build_files must copy exactly one collection tarball: %s" % tarballs
    out = src / os.path.dirname(tarballs[0])
    run([tool("ansible-galaxy"), "collection", "build", "--force", "--output-path", str(out), ROOT], cwd=str(base))
    ctx = base / "context"
    run([tool("ansible-builder"), "create", "-f", "execution-environment.yml", "--context", str(ctx),
         "--output-filename", "Containerfile"], cwd=str(src))
    return dict(base=base, src=src, ctx=ctx, tarball=str(src / tarballs[0]))


@pytest.fixture(scope="module")
def containerfile(context):
    with open(os.path.join(context["ctx"], "Containerfile"), encoding="utf-8") as f:
        return f.read()


@pytest.fixture(scope="module")
def introspected(context, containerfile):
    """The Python and bindep requirement files the image's builder stage would write: the collections of the
    context's requirements.yml installed (this checkout's tarball, its dependencies from the `ansible` bundle
    in .venv, which are the versions the definition pins), then the Containerfile's own introspect command."""
    colls = context["base"] / "collections"
    run([tool("ansible-galaxy"), "collection", "install", "--force", "--no-deps", "--offline", "-p", str(colls),
         context["tarball"]], cwd=str(context["base"]))
    assert os.path.isfile(colls / "ansible_collections" / "pgshift" / "aurora" / "meta" / "execution-environment.yml")
    reqs = load(os.path.join(context["ctx"], "_build", "requirements.yml"))
    for entry in reqs["collections"]:
        if entry.get("type") == "file":
            continue
        namespace, name = entry["name"].split(".")
        shutil.copytree(os.path.join(BUNDLED, namespace, name),
                        colls / "ansible_collections" / namespace / name, symlinks=True)
    match = re.search(r"^RUN \$PYCMD /output/scripts/introspect.py (introspect .*)$", containerfile, re.M)
    assert match, "the Containerfile has no introspect step"
    args = shlex.split(match.group(1))
    work = context["base"] / "builder"
    work.mkdir()
    builder = containerfile.split("FROM base AS builder")[1].split("FROM base AS final")[0]
    for copied in re.findall(r"^COPY _build/(\S+) (\S+)$", builder, re.M):
        shutil.copy(os.path.join(context["ctx"], "_build", copied[0]), work / copied[1])
    out = context["base"] / "out"
    args = [a.replace("/tmp/src/", str(out) + "/") for a in args]
    run([sys.executable, os.path.join(context["ctx"], "_build", "scripts", "introspect.py")] + args[:1] + [str(colls)]
        + args[1:], cwd=str(work))
    return dict(python=lines(out / "requirements.txt"), system=lines(out / "bindep.txt"))


def requirement_names(reqs):
    """Distribution names (lower case, extras kept) of pip requirement lines ('psycopg[binary]>=3.1  # from: x')."""
    return {re.split(r"[<>=!~;\s]", r.split("#")[0].strip(), maxsplit=1)[0].lower() for r in reqs}


def bindep_majors(entries, pattern):
    return sorted(int(m.group(1)) for m in (re.match(pattern, e.split("#")[0].strip()) for e in entries) if m)


def test_containerfile_uses_the_base_image_and_pinned_ansible(ee, containerfile):
    base = ee["images"]["base_image"]["name"]
    assert 'ARG EE_BASE_IMAGE="%s"' % base in containerfile
    assert re.search(r"^FROM \$EE_BASE_IMAGE AS base$", containerfile, re.M)
    pins = dict(line.split("==") for line in lines(os.path.join(ROOT, "requirements.txt")) if "==" in line)
    refs = re.search(r'^ARG ANSIBLE_INSTALL_REFS="(.*)"$', containerfile, re.M).group(1).split()
    assert "ansible-core==%s" % pins["ansible-core"] in refs, refs
    assert "ansible-runner==%s" % pins["ansible-runner"] in refs, refs
    # The controller's Python must be 3.11 or later (ansible-core 2.19, the collection's modules).
    py = re.search(r'^ARG PYCMD="/usr/bin/python3\.(\d+)"$', containerfile, re.M)
    assert py and int(py.group(1)) >= 11


def test_the_collection_built_from_this_checkout_is_in_the_context(galaxy, context):
    reqs = load(os.path.join(context["ctx"], "_build", "requirements.yml"))
    files = [e for e in reqs["collections"] if e.get("type") == "file"]
    expected = "%s-%s-%s.tar.gz" % (galaxy["namespace"], galaxy["name"], galaxy["version"])
    assert [e["name"] for e in files] == [expected], "galaxy.yml's version and the EE's tarball disagree"
    assert os.path.isfile(os.path.join(context["ctx"], "_build", expected))
    with tarfile.open(os.path.join(context["ctx"], "_build", expected)) as tar:
        names = set(tar.getnames())
    for needed in ("meta/execution-environment.yml", "meta/ee-requirements.txt", "meta/ee-bindep.txt",
                   "playbooks/cutover.yml", "plugins/modules/pg_schema_copy.py"):
        assert needed in names, needed
    assert not any(n.startswith("awx/") or n == "execution-environment.yml" for n in names)


def test_collection_dependencies_are_pinned_to_the_tested_bundle(galaxy, context):
    reqs = load(os.path.join(context["ctx"], "_build", "requirements.yml"))
    pinned = {e["name"]: e["version"] for e in reqs["collections"] if e.get("type") != "file"}
    assert set(pinned) == set(galaxy["dependencies"]), "EE collections differ from galaxy.yml dependencies"
    for name, version in pinned.items():
        with open(os.path.join(BUNDLED, *name.split("."), "MANIFEST.json"), encoding="utf-8") as f:
            bundled = json.load(f)["collection_info"]["version"]
        assert version == "==" + bundled, "%s: the EE pins %s, the tests ran with %s" % (name, version, bundled)
        minimum = galaxy["dependencies"][name].lstrip(">=")
        assert tuple(map(int, bundled.split("."))) >= tuple(map(int, minimum.split(".")))


def test_python_requirements_the_build_gathers(introspected):
    names = requirement_names(introspected["python"])
    for needed in ("psycopg[binary]", "boto3", "botocore"):
        assert needed in names, "%s missing from %s" % (needed, sorted(names))
    # community.postgresql's requirements.txt brings psycopg2 and its test tools: excluded.
    # The report's figures are the collection's own SVG: no plotting library either.
    for unwanted in ("psycopg2-binary", "psycopg2", "pytest", "pytest-mock", "molecule", "moto", "selenium",
                     "matplotlib"):
        assert unwanted not in names, unwanted


def test_system_requirements_hold_the_client_tools_of_every_target_major(introspected):
    system = introspected["system"]
    assert bindep_majors(system, r"postgresql(\d+) \[platform:rpm\]") == list(TARGET_MAJORS), system
    assert bindep_majors(system, r"postgresql-client-(\d+) \[platform:dpkg\]") == list(TARGET_MAJORS), system
    # amazon.aws's test-only packages stay out of the image (profile `test`).
    assert all("test" in e for e in system if e.split()[0] in ("gcc", "python3-devel")), system


def test_majors_cover_the_lab_and_the_statistics_import():
    from ansible_collections.pgshift.aurora.plugins.module_utils import analyze
    assert analyze.IMPORT_MIN_MAJOR in TARGET_MAJORS
    with open(os.path.join(ROOT, "docs", "awx.md"), encoding="utf-8") as f:
        doc = f.read()
    listed = re.search(r"PostgreSQL client tools of majors ([\d, and]+)", doc)
    assert listed, "docs/awx.md must say which majors the EE carries"
    assert sorted(int(x) for x in re.findall(r"\d+", listed.group(1))) == list(TARGET_MAJORS)


def test_build_adds_pgdg_before_installing_and_checks_every_major(containerfile):
    base_stage = containerfile.split("FROM base AS galaxy")[0]
    assert "download.postgresql.org/pub/repos/yum/reporpms/EL-9-" in base_stage
    final = containerfile.split("FROM base AS final")[1]
    check = re.search(r"^RUN for major in ([\d ]+); do (.*)$", final, re.M)
    assert check, "the final stage does not check the client tools"
    assert [int(x) for x in check.group(1).split()] == list(TARGET_MAJORS)
    for binary in ("pg_dump", "pg_restore", "psql"):
        assert "/usr/pgsql-$major/bin/%s --version" % binary in check.group(2)
    assert final.index("install-from-bindep") < final.index("RUN for major in")


def third_party_imports():
    found = set()
    for top, _dirs, files in os.walk(os.path.join(ROOT, "plugins")):
        for name in files:
            if name.endswith(".py"):
                with open(os.path.join(top, name), encoding="utf-8") as f:
                    tree = ast.parse(f.read())
                for node in ast.walk(tree):
                    if isinstance(node, ast.Import):
                        found.update(a.name.split(".")[0] for a in node.names)
                    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                        found.add(node.module.split(".")[0])
    return {m for m in found if m not in sys.stdlib_module_names and m not in ("ansible", "ansible_collections")}


def test_every_runtime_import_of_the_plugins_is_a_requirement():
    names = {n.split("[")[0] for n in requirement_names(lines(os.path.join(ROOT, "meta", "ee-requirements.txt")))}
    missing = third_party_imports() - names
    assert not missing, "plugins import %s: add them to meta/ee-requirements.txt" % sorted(missing)
