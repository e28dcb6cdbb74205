"""The login_options filter (plugins/filter/connections.py) and the action groups it feeds (meta/runtime.yml)."""

from __future__ import annotations

import ast
import pathlib

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from ansible_collections.pgshift.aurora.plugins.filter.connections import FilterModule, login_options

ROOT = pathlib.Path(__file__).resolve().parents[2]

HOST = dict(db_host="src.example", db_port=5433, db_name="app", db_user="migrator", db_password="m-secret",
            db_admin_user="master", db_admin_password="a-secret", db_sslmode="verify-full",
            db_sslrootcert="/etc/ssl/rds-bundle.pem")


def test_admin_login_with_every_setting():
    assert login_options(HOST, connect_timeout=7) == dict(
        login_host="src.example", login_port=5433, login_db="app", login_user="master", login_password="a-secret",
        ssl_mode="verify-full", ca_cert="/etc/ssl/rds-bundle.pem", connect_timeout=7)


def test_migration_user_login_ignores_the_admin():
    got = login_options(HOST, admin=False)
    assert (got["login_user"], got["login_password"]) == ("migrator", "m-secret")


def test_prefix_names_the_second_connection():
    assert login_options(HOST, prefix="target_", connect_timeout=3) == dict(
        target_login_host="src.example", target_login_port=5433, target_login_db="app", target_login_user="master",
        target_login_password="a-secret", target_ssl_mode="verify-full", target_ca_cert="/etc/ssl/rds-bundle.pem",
        target_connect_timeout=3)
    assert set(login_options(HOST, prefix="source_")) == set(
        "source_" + k for k in ("login_host", "login_port", "login_db", "login_user", "login_password", "ssl_mode",
                                "ca_cert"))


def test_defaults_of_the_inventory_contract():
    # docs/inventory.md: port 5432, sslmode prefer, no CA, the admin defaulting to the migration user.
    minimal = dict(db_host="h", db_name="d", db_user="u", db_password="p")
    assert login_options(minimal) == dict(login_host="h", login_port=5432, login_db="d", login_user="u",
                                          login_password="p", ssl_mode="prefer")


@pytest.mark.parametrize("empty", ["", None])
def test_an_empty_ca_is_left_out(empty):
    assert "ca_cert" not in login_options(dict(HOST, db_sslrootcert=empty))


def test_admin_user_and_password_default_each_on_their_own():
    # As `db_admin_user | default(db_user)` and `db_admin_password | default(db_password)` did, key by key.
    only_user = dict(HOST)
    del only_user["db_admin_password"]
    got = login_options(only_user)
    assert (got["login_user"], got["login_password"]) == ("master", "m-secret")
    # An admin given without a migration user is enough for an admin login.
    admin_only = dict(HOST)
    del admin_only["db_user"], admin_only["db_password"]
    assert login_options(admin_only)["login_user"] == "master"


@pytest.mark.parametrize("missing,named", [("db_host", "db_host"), ("db_name", "db_name")])
def test_missing_variable_is_named(missing, named):
    host = dict(HOST)
    del host[missing]
    with pytest.raises(AnsibleFilterError, match="has no %s" % named):
        login_options(host)


def test_missing_password_is_named_never_shown():
    host = dict(HOST)
    del host["db_password"]
    with pytest.raises(AnsibleFilterError, match="has no db_password") as exc:
        login_options(host, admin=False)
    assert "a-secret" not in str(exc.value) and "m-secret" not in str(exc.value)


def test_unknown_prefix_is_refused():
    with pytest.raises(AnsibleFilterError, match="prefix must be one of"):
        login_options(HOST, prefix="tgt_")


def test_the_filters_are_registered():
    assert set(FilterModule().filters()) == {"login_options", "replication_connection"}


# The action groups: each module of a group accepts every option login_options gives it (a module_defaults group
# passes its options to every member, and an unknown option fails the task), and every module with those options
# is in the group.

def _doc(path):
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "DOCUMENTATION":
            return yaml.safe_load(node.value.value)
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.Assign) and item.targets[0].id == "DOCUMENTATION":
                    return yaml.safe_load(item.value.value)
    return None


def _documented_options():
    fragments = dict(("pgshift.aurora." + p.stem, _doc(p).get("options") or {})
                     for p in (ROOT / "plugins" / "doc_fragments").glob("*.py"))
    out = {}
    for path in (ROOT / "plugins" / "modules").glob("*.py"):
        doc = _doc(path)
        options = set(doc.get("options") or {})
        for name in doc.get("extends_documentation_fragment") or []:
            options |= set(fragments.get(name, {}))
        out[path.stem] = options
    return out


def test_action_groups_hold_exactly_the_modules_that_take_the_options():
    groups = yaml.safe_load((ROOT / "meta" / "runtime.yml").read_text())["action_groups"]
    options = _documented_options()
    for group, prefix in (("postgres", ""), ("postgres_target", "target_")):
        given = set(login_options(HOST, prefix=prefix, connect_timeout=1))
        takers = sorted(m for m, opts in options.items() if prefix + "login_host" in opts)
        assert sorted(groups[group]) == takers, group
        for module in groups[group]:
            assert given <= options[module], (group, module, given - options[module])
