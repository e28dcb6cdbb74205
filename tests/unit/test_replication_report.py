"""replication.md (roles/replicate/templates/replication.md.j2) rendered as Ansible renders it (trim_blocks)."""

from __future__ import annotations

import os

import jinja2

ROOT = os.path.join(os.path.dirname(__file__), "..", "..", "roles", "replicate", "templates")


def render(**report):
    env = jinja2.Environment(trim_blocks=True, loader=jinja2.FileSystemLoader(ROOT))
    base = dict(migration_name="m", generated_at="2026-12-08T00:00:00Z", engine="native", check_mode=False,
                plan_error=None, caught_up=dict(status="caught_up", reason="every stream within the limits",
                                                elapsed_seconds=1.5, max_lag_bytes=10),
                load_wait=dict(elapsed_seconds=3.2), final=dict(streams=[]), plan=None)
    base.update(report)
    return env.get_template("replication.md.j2").render(replicate_report=base)


def test_the_plans_warnings_are_in_the_report():
    warning = ("3 streams on 2 vCPUs (the fewer of the source's and the target's): each stream takes a WAL decoder "
               "on the source and an apply worker on the target, and more than 1 compete for the same cores with the "
               "application; plan 1 stream(s), or give the instances more vCPUs")
    text = render(plan=dict(warnings=[warning, "pgshift_m_s3 has no table"], not_replicated=[]))
    assert ("Initial load: 3.2 s for every stream together.\n\n## What the plan warned about\n\n- %s\n"
            "- pgshift_m_s3 has no table\n\n## Streams" % warning) in text


def test_no_warning_no_section():
    for plan in (None, dict(warnings=[], not_replicated=[])):
        text = render(plan=plan)
        assert "warned" not in text
        assert "Initial load: 3.2 s for every stream together.\n\n## Streams" in text
