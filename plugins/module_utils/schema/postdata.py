# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The post-data stage's statements (pg_schema_copy stage post): what was held back, built from the source
catalog's definitions (_pg/schema.POST_DETAILS_SQL rows) for what the target lacks. Pure.
"""

from __future__ import annotations

from ansible_collections.pgshift.aurora.plugins.module_utils import scope
from ansible_collections.pgshift.aurora.plugins.module_utils.schema.toc import entry_label, freeze

try:
    from psycopg import sql
except ImportError:  # pragma: no cover - the module reports the missing library
    sql = None

# Which detail query serves a held-back entry, by its description.
POST_KIND_BY_DESC = {
    "INDEX": "indexes", "CONSTRAINT": "constraints", "CHECK CONSTRAINT": "constraints",
    "FK CONSTRAINT": "constraints", "TRIGGER": "triggers", "RULE": "rules", "POLICY": "policies",
    "ROW SECURITY": "row_security", "STATISTICS": "statistics", "EVENT TRIGGER": "event_triggers",
}


def post_oids(held):
    """{detail query: [source oids]} for the held-back entries the post stage builds."""
    wanted = {}
    for e in held:
        kind = POST_KIND_BY_DESC.get(e["desc"])
        if kind:
            wanted.setdefault(kind, []).append(e["objid"])
    if "triggers" in wanted:
        wanted["trigger_clones"] = list(wanted["triggers"])
    return wanted


_TRIGGER_STATE = dict(D="DISABLE TRIGGER", A="ENABLE ALWAYS TRIGGER", R="ENABLE REPLICA TRIGGER",
                      O="ENABLE TRIGGER")
_RULE_STATE = dict(D="DISABLE RULE", A="ENABLE ALWAYS RULE", R="ENABLE REPLICA RULE", O="ENABLE RULE")
_EVENT_STATE = dict(D="DISABLE", A="ENABLE ALWAYS", R="ENABLE REPLICA", O="ENABLE")
STATE_NAMES = dict(O="enabled (origin)", D="disabled", A="enabled always", R="enabled replica")
_POLICY_CMD = {"*": "ALL", "r": "SELECT", "a": "INSERT", "w": "UPDATE", "d": "DELETE"}


def _table(schema, name):
    return sql.Identifier(schema, name)


def _step(phase, kind, obj, statement, **extra):
    step = dict(phase=phase, kind=kind, object=obj, sql=statement)
    step.update(extra)
    return step


def _strip_not_valid(definition):
    if definition.endswith(" NOT VALID"):
        return definition[:-len(" NOT VALID")], True
    return definition, False


class Plan:
    """What the builders add to: the steps, the identities the target has, warnings, the held-back entries
    covered (dump ids), the comments to add last and the index attachments to make."""

    def __init__(self, held, target):
        self.held = held
        self.target = target
        self.steps, self.existing, self.warnings = [], [], []
        self.handled = set()
        self.comments = []
        self.attach = []

    def there(self, kind, row, ref="ref"):
        """The target's inventory row of an object of the source (by its names as separate values), or None."""
        return self.target.get((kind, freeze(row.get(ref))))

    def cover(self, desc, oid):
        """Mark the held-back entries of one object (by its description and source oid) as built."""
        self.handled.update(e["dump_id"] for e in self.held if e["desc"] == desc and e["objid"] == oid)

    def comment(self, kind, row, stmt):
        if row.get("description") is not None:
            self.comments.append((kind, row, stmt))


def indexes(plan, rows):
    """Secondary indexes: partitioned ones ON ONLY their table, the others in parallel (largest table first); an
    invalid leftover of an interrupted build is dropped and built again; partitions' indexes are attached."""
    index_rows = dict((r["oid"], r) for r in rows)
    for e in plan.held:
        if e["desc"] != "INDEX":
            continue
        r = index_rows.get(e["objid"])
        if r is None:
            continue
        plan.handled.add(e["dump_id"])
        if not r["valid"] and r["index_kind"] == "i":
            plan.warnings.append("index %s is invalid on the source (a failed CREATE INDEX CONCURRENTLY?): not copied"
                                 % r["identity"])
            continue
        tgt = plan.there("index", r)
        if tgt is not None and (tgt.get("valid") or r["index_kind"] == "I"):
            plan.existing.append(r["identity"])
        else:
            if tgt is not None:  # an invalid leftover of an interrupted build: rebuilt
                plan.steps.append(_step("indexes", "drop invalid index", r["identity"],
                                        sql.SQL("DROP INDEX {}").format(_table(r["schema"], r["name"])),
                                        weight=r["table_bytes"] or 0,
                                        table=scope.qualified(r["table_schema"], r["table_name"])))
            phase = "indexes_parent" if r["index_kind"] == "I" else "indexes"
            plan.steps.append(_step(phase, "index", r["identity"], sql.SQL(r["def"]), weight=r["table_bytes"] or 0,
                                    depth=r.get("depth") or 0,
                                    table=scope.qualified(r["table_schema"], r["table_name"])))
        if r.get("parent"):
            plan.attach.append(dict(child=r["identity"], child_ref=r["ref"], child_sql=_table(r["schema"], r["name"]),
                                    parent_sql=_table(r["parent_schema"], r["parent_name"]),
                                    depth=r.get("depth") or 0))
        plan.comment("index", r, sql.SQL("COMMENT ON INDEX {} IS {}").format(
            _table(r["schema"], r["name"]), sql.Literal(r["description"])))


def constraints(plan, rows):
    """Exclusion constraints (built like indexes), foreign keys and NOT VALID checks: added NOT VALID (a plain
    form for a foreign key on a partitioned table, which targets before 18 refuse NOT VALID), then validated
    when they are valid on the source."""
    constraint_rows = dict((r["oid"], r) for r in rows)
    for e in plan.held:
        if e["desc"] not in ("CONSTRAINT", "CHECK CONSTRAINT", "FK CONSTRAINT"):
            continue
        r = constraint_rows.get(e["objid"])
        if r is None:
            continue
        plan.handled.add(e["dump_id"])
        on_domain = r.get("domain_name") is not None
        tgt = plan.target.get((r["type"], freeze(r["ref"])))
        if on_domain:
            owner = sql.SQL("DOMAIN {}").format(_table(r["domain_schema"], r["domain_name"]))
        else:
            owner = _table(r["table_schema"], r["table_name"])
        plan.comment(r["type"], r, sql.SQL("COMMENT ON CONSTRAINT {} ON {} IS {}").format(
            sql.Identifier(r["name"]), owner, sql.Literal(r["description"])))
        if r["contype"] == "x":
            if tgt is not None:
                plan.existing.append(r["identity"])
            else:
                only = sql.SQL("ONLY ") if r["table_kind"] in ("r", "p") else sql.SQL("")
                plan.steps.append(_step("indexes_parent" if r["table_kind"] == "p" else "indexes",
                                        "exclusion constraint", r["identity"],
                                        sql.SQL("ALTER TABLE {}{} ADD CONSTRAINT {} {}").format(
                                            only, owner, sql.Identifier(r["name"]), sql.SQL(r["def"])),
                                        weight=r["table_bytes"] or 0, depth=0,
                                        table=scope.qualified(r["table_schema"], r["table_name"])))
            if r.get("index_parent"):
                plan.attach.append(dict(child=r["index"], child_ref=r["index_ref"],
                                        child_sql=_table(r["table_schema"], r["index_name"]),
                                        parent_sql=_table(r["index_parent_schema"], r["index_parent_name"]),
                                        depth=1))
            continue
        definition, source_not_valid = _strip_not_valid(r["def"])
        if tgt is None:
            if on_domain:
                stmt = sql.SQL("ALTER DOMAIN {} ADD CONSTRAINT {} {} NOT VALID").format(
                    _table(r["domain_schema"], r["domain_name"]), sql.Identifier(r["name"]), sql.SQL(definition))
            else:
                only = sql.SQL("ONLY ") if (r["contype"] == "f" and r["table_kind"] == "r") else sql.SQL("")
                stmt = sql.SQL("ALTER TABLE {}{} ADD CONSTRAINT {} {} NOT VALID").format(
                    only, owner, sql.Identifier(r["name"]), sql.SQL(definition))
            plain = None
            if r["contype"] == "f" and r["table_kind"] == "p" and not source_not_valid:
                # Targets before PostgreSQL 18 refuse NOT VALID foreign keys on partitioned tables.
                plain = sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
                    owner, sql.Identifier(r["name"]), sql.SQL(definition))
            plan.steps.append(_step("constraints", "foreign key" if r["contype"] == "f" else "check constraint",
                                    r["identity"], stmt, plain=plain, validate=not source_not_valid))
        else:
            plan.existing.append(r["identity"])
        if not source_not_valid and (tgt is None or not tgt.get("valid")):
            plan.steps.append(_step("validate", "validate constraint", r["identity"],
                                    sql.SQL("ALTER {} {} VALIDATE CONSTRAINT {}").format(
                                        sql.SQL("DOMAIN") if on_domain else sql.SQL("TABLE"),
                                        _table(r["domain_schema"], r["domain_name"]) if on_domain
                                        else _table(r["table_schema"], r["table_name"]),
                                        sql.Identifier(r["name"])),
                                    weight=r["table_bytes"] or 0))


def attachments(plan):
    """ALTER INDEX ... ATTACH PARTITION for the partitions' indexes not attached yet, deepest level first."""
    for e in plan.held:
        if e["desc"] == "INDEX ATTACH":
            plan.handled.add(e["dump_id"])
    for a in sorted(plan.attach, key=lambda x: (-x["depth"], x["child"])):
        tgt = plan.there("index", a, "child_ref")
        if tgt is not None and tgt.get("attached"):
            continue
        plan.steps.append(_step("attach", "attach index", a["child"],
                                sql.SQL("ALTER INDEX {} ATTACH PARTITION {}").format(a["parent_sql"], a["child_sql"])))


def triggers(plan, rows):
    """Triggers with the enabled state they have on the source (ENABLE ALWAYS and REPLICA fire during the apply:
    a warning says so)."""
    for r in rows:
        plan.cover("TRIGGER", r["oid"])
        table = _table(r["table_schema"], r["table_name"])
        tgt = plan.there("trigger", r)
        if tgt is None:
            plan.steps.append(_step("objects", "trigger", r["identity"], sql.SQL(r["def"])))
            current = "O"
        else:
            plan.existing.append(r["identity"])
            current = tgt.get("enabled") or "O"
        if r["enabled"] != current:
            plan.steps.append(_step("objects", "trigger state", r["identity"], sql.SQL("ALTER TABLE {} {} {}").format(
                table, sql.SQL(_TRIGGER_STATE[r["enabled"]]), sql.Identifier(r["name"])),
                state=STATE_NAMES.get(r["enabled"], r["enabled"])))
        if r["enabled"] in ("A", "R"):
            plan.warnings.append("trigger %s is %s: it fires when logical replication applies changes on the target "
                                 "(session_replication_role = replica does not stop it)" % (
                                     r["identity"], STATE_NAMES[r["enabled"]]))
        plan.comment("trigger", r, sql.SQL("COMMENT ON TRIGGER {} ON {} IS {}").format(
            sql.Identifier(r["name"]), table, sql.Literal(r["description"])))


def trigger_clones(plan, rows):
    """A partition's clone of a partitioned table's trigger takes the parent's state when the parent's is set;
    mirror the clones whose state differs from what they will have."""
    for r in rows:
        tgt = plan.there("trigger", r)
        current = (tgt.get("enabled") or "O") if tgt is not None else r["parent_enabled"]
        if r["enabled"] == current:
            continue
        plan.steps.append(_step("objects", "trigger state", r["identity"], sql.SQL("ALTER TABLE {} {} {}").format(
            _table(r["table_schema"], r["table_name"]), sql.SQL(_TRIGGER_STATE[r["enabled"]]),
            sql.Identifier(r["name"])), state=STATE_NAMES.get(r["enabled"], r["enabled"]), clone=True))


def rules(plan, rows):
    """Rules (pg_get_ruledef) with their enabled state."""
    for r in rows:
        plan.cover("RULE", r["oid"])
        table = _table(r["table_schema"], r["table_name"])
        tgt = plan.there("rule", r)
        if tgt is None:
            plan.steps.append(_step("objects", "rule", r["identity"], sql.SQL(r["def"].rstrip().rstrip(";"))))
            current = "O"
        else:
            plan.existing.append(r["identity"])
            current = tgt.get("enabled") or "O"
        if r["enabled"] != current:
            plan.steps.append(_step("objects", "rule state", r["identity"], sql.SQL("ALTER TABLE {} {} {}").format(
                table, sql.SQL(_RULE_STATE[r["enabled"]]), sql.Identifier(r["name"])),
                state=STATE_NAMES.get(r["enabled"], r["enabled"])))
        plan.comment("rule", r, sql.SQL("COMMENT ON RULE {} ON {} IS {}").format(
            sql.Identifier(r["name"]), table, sql.Literal(r["description"])))


def policies(plan, rows):
    """Row-level security policies (CREATE POLICY from pg_policy's parts)."""
    for r in rows:
        plan.cover("POLICY", r["oid"])
        table = _table(r["table_schema"], r["table_name"])
        if plan.there("policy", r) is None:
            roles = sql.SQL(", ").join(sql.SQL("PUBLIC") if name == "public" else sql.Identifier(name)
                                       for name in r["roles"] or ["public"])
            parts = [sql.SQL("CREATE POLICY {} ON {} AS {} FOR {} TO {}").format(
                sql.Identifier(r["name"]), table, sql.SQL("PERMISSIVE" if r["permissive"] else "RESTRICTIVE"),
                sql.SQL(_POLICY_CMD.get(r["cmd"], "ALL")), roles)]
            if r.get("qual") is not None:
                parts.append(sql.SQL("USING ({})").format(sql.SQL(r["qual"])))
            if r.get("with_check") is not None:
                parts.append(sql.SQL("WITH CHECK ({})").format(sql.SQL(r["with_check"])))
            plan.steps.append(_step("objects", "policy", r["identity"], sql.SQL(" ").join(parts)))
        else:
            plan.existing.append(r["identity"])
        plan.comment("policy", r, sql.SQL("COMMENT ON POLICY {} ON {} IS {}").format(
            sql.Identifier(r["name"]), table, sql.Literal(r["description"])))


def row_security(plan, rows):
    """ENABLE / FORCE ROW LEVEL SECURITY where the source has them and the target not."""
    for r in rows:
        plan.cover("ROW SECURITY", r["oid"])
        table = _table(r["table_schema"], r["table_name"])
        tgt = plan.there("table", r) or plan.there("partitioned table", r) or {}
        state = (tgt.get("enabled") or "").split()
        if r["enabled"] and "rls" not in state:
            plan.steps.append(_step("objects", "row security", r["identity"],
                                    sql.SQL("ALTER TABLE {} ENABLE ROW LEVEL SECURITY").format(table)))
        if r["forced"] and "force" not in state:
            plan.steps.append(_step("objects", "row security", r["identity"],
                                    sql.SQL("ALTER TABLE {} FORCE ROW LEVEL SECURITY").format(table)))


def statistics(plan, rows):
    """Extended statistics (pg_get_statisticsobjdef)."""
    for r in rows:
        plan.cover("STATISTICS", r["oid"])
        if plan.there("statistics object", r) is None:
            plan.steps.append(_step("objects", "statistics", r["identity"], sql.SQL(r["def"])))
        else:
            plan.existing.append(r["identity"])
        plan.comment("statistics object", r, sql.SQL("COMMENT ON STATISTICS {} IS {}").format(
            _table(r["schema"], r["name"]), sql.Literal(r["description"])))


def event_triggers(plan, rows):
    """Event triggers with their enabled state."""
    for r in rows:
        plan.cover("EVENT TRIGGER", r["oid"])
        tgt = plan.there("event trigger", r)
        if tgt is None:
            parts = [sql.SQL("CREATE EVENT TRIGGER {} ON {}").format(sql.Identifier(r["name"]), sql.SQL(r["event"]))]
            if r.get("tags"):
                parts.append(sql.SQL("WHEN TAG IN ({})").format(
                    sql.SQL(", ").join(sql.Literal(t) for t in r["tags"])))
            parts.append(sql.SQL("EXECUTE FUNCTION {}()").format(_table(r["function_schema"], r["function_name"])))
            plan.steps.append(_step("objects", "event trigger", r["identity"], sql.SQL(" ").join(parts)))
            current = "O"
        else:
            plan.existing.append(r["identity"])
            current = tgt.get("enabled") or "O"
        if r["enabled"] != current:
            plan.steps.append(_step("objects", "event trigger state", r["identity"],
                                    sql.SQL("ALTER EVENT TRIGGER {} {}").format(
                                        sql.Identifier(r["name"]), sql.SQL(_EVENT_STATE[r["enabled"]])),
                                    state=STATE_NAMES.get(r["enabled"], r["enabled"])))
        plan.comment("event trigger", r, sql.SQL("COMMENT ON EVENT TRIGGER {} IS {}").format(
            sql.Identifier(r["name"]), sql.Literal(r["description"])))


def comments(plan):
    """The comments of the objects built, unless the target's object has one."""
    for kind, row, stmt in plan.comments:
        tgt = plan.there(kind, row)
        if tgt is not None and tgt.get("description") is not None:
            continue
        plan.steps.append(_step("objects", "comment", row["identity"], stmt))


def not_handled(plan):
    """The held-back entries no builder covered (a comment of a covered object is covered)."""
    out = []
    by_id = dict((e["dump_id"], e) for e in plan.held)
    for e in plan.held:
        if e["dump_id"] in plan.handled:
            continue
        if e["desc"] == "COMMENT" and any(by_id.get(d, {}).get("dump_id") in plan.handled for d in e["deps"]):
            continue
        out.append(dict(kind=e["desc"].lower(), object=entry_label(e), reason=e["reason"]))
    return out


def build_post_plan(held, details, target):
    """The post stage's statements for what the target lacks, grouped in phases (schedule.PHASES).

    held: the held-back entries (classify); details: {detail query: rows} read on the
    source (POST_DETAILS_SQL); target: {object_key: inventory row} of the target (inventory_map): objects
    are found there by their names as separate values (each row's ref), never by a formatted identity.
    Returns dict(steps=[...], existing=[identities already there], not_handled=[entries
    no builder covers], warnings=[...]). Each step: phase, kind, object, sql (psycopg
    Composable) and, for the parallel phases, weight (bytes of the table); index and
    exclusion constraint steps also name their table (scope.qualified), which a post
    stage waiting for the initial loads builds as soon as that table is loaded.

    Phases, in order:
      indexes_parent  partitioned indexes, created ON ONLY their table (instant, serial)
      indexes         every other index and exclusion constraint (parallel, largest table first)
      attach          ALTER INDEX ... ATTACH PARTITION, deepest level first (serial)
      constraints     foreign keys NOT VALID, NOT VALID checks (serial: short locks)
      validate        VALIDATE CONSTRAINT of the foreign keys valid on the source (parallel)
      objects         triggers and their enabled state, rules, policies, row security,
                      statistics, event triggers, comments (serial, in this order)
    """
    plan = Plan(held, target)
    indexes(plan, details.get("indexes", []))
    constraints(plan, details.get("constraints", []))
    attachments(plan)
    triggers(plan, details.get("triggers", []))
    trigger_clones(plan, details.get("trigger_clones", []))
    rules(plan, details.get("rules", []))
    policies(plan, details.get("policies", []))
    row_security(plan, details.get("row_security", []))
    statistics(plan, details.get("statistics", []))
    event_triggers(plan, details.get("event_triggers", []))
    comments(plan)
    return dict(steps=plan.steps, existing=sorted(set(plan.existing)), not_handled=not_handled(plan),
                warnings=plan.warnings)


def record(result, done):
    """Add the steps done to the result: validated, states, created (with the seconds each took)."""
    for step in done:
        if step["kind"] == "validate constraint":
            result["validated"].append(step["object"])
        elif step["kind"].endswith(" state"):
            result["states"].append(dict(kind=step["kind"][:-len(" state")], object=step["object"],
                                         state=step.get("state")))
        else:
            result["created"].append(dict(kind=step["kind"], object=step["object"], seconds=step.get("seconds")))
            if step["kind"] == "foreign key" and step.get("validate_done"):
                result["validated"].append(step["object"])
