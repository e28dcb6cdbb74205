"""schema/postdata.py: the post stage's statements, one builder per object kind."""

from __future__ import annotations

from ansible_collections.pgshift.aurora.plugins.module_utils.schema import postdata, roles, schedule
from schema_data import key, ref


def held_entry(desc, objid, dump_id=None):
    return dict(desc=desc, objid=objid, dump_id=dump_id or objid, deps=[], cls="held", reason="x", identity=None,
                text="public %d app_owner" % objid, owner="app_owner")


def index_row(oid, name, table, kind="i", parent=None, bytes_=0, depth=0, valid=True, description=None):
    """An index of the public schema on table (a name in public); parent: the parent index's name."""
    row = dict(oid=oid, identity="public.%s" % name, ref=ref("public", name), schema="public", name=name,
               index_kind=kind, valid=valid, def_=None, table_schema="public", table_name=table,
               table_kind="p" if kind == "I" else "r", table_bytes=bytes_,
               parent="public.%s" % parent if parent else None, parent_schema="public" if parent else None,
               parent_name=parent, depth=depth, description=description)
    row["def"] = "CREATE INDEX %s ON %spublic.%s USING btree (x)" % (name, "ONLY " if kind == "I" else "", table)
    return row


def fk_row(oid, name, table, table_kind="r", validated=True, contype="f", bytes_=0):
    definition = "FOREIGN KEY (x) REFERENCES public.parent(id)" if contype == "f" else "CHECK ((x > 0))"
    if not validated:
        definition += " NOT VALID"
    return dict(oid=oid, identity="%s on public.%s" % (name, table), ref=ref("public", table, name),
                type="table constraint", name=name, contype=contype, convalidated=validated, def_=None,
                table_schema="public", table_name=table, table_kind=table_kind, table_bytes=bytes_, domain_schema=None,
                domain_name=None, index=None, index_ref=None, index_parent=None, description=None,
                **{"def": definition})


def test_post_plan_builds_indexes_in_parallel_largest_first_and_attaches_partitions():
    held = [held_entry("INDEX", 1), held_entry("INDEX", 2), held_entry("INDEX", 3), held_entry("INDEX", 4),
            held_entry("INDEX ATTACH", 0, dump_id=99)]
    details = dict(indexes=[
        index_row(1, "ship_idx", "ship", kind="I"),
        index_row(2, "ship_1_idx", "ship_1", parent="ship_idx", bytes_=10, depth=1),
        index_row(3, "big_idx", "big", bytes_=1000, description="lookups"),
        index_row(4, "bad_idx", "bad", valid=False),
    ])
    plan = postdata.build_post_plan(held, details, {})

    def text(phase):
        return [s["sql"].as_string(None) for s in schedule.phase_steps(plan, phase)]
    assert text("indexes_parent") == ["CREATE INDEX ship_idx ON ONLY public.ship USING btree (x)"]
    assert text("indexes") == ["CREATE INDEX big_idx ON public.big USING btree (x)",
                               "CREATE INDEX ship_1_idx ON public.ship_1 USING btree (x)"]
    assert text("attach") == ['ALTER INDEX "public"."ship_idx" ATTACH PARTITION "public"."ship_1_idx"']
    assert text("objects") == ['COMMENT ON INDEX "public"."big_idx" IS \'lookups\'']
    assert "invalid on the source" in plan["warnings"][0]
    assert plan["not_handled"] == []
    assert "indexes" in schedule.PARALLEL_PHASES and "attach" not in schedule.PARALLEL_PHASES


def test_post_plan_skips_what_the_target_has_and_rebuilds_an_invalid_leftover():
    held = [held_entry("INDEX", 1), held_entry("INDEX", 2), held_entry("INDEX", 3)]
    details = dict(indexes=[index_row(1, "a_idx", "a"), index_row(2, "b_idx", "b"),
                            index_row(3, "c_idx", "c", parent="p_idx")])
    target = {key("index", "public", "a_idx"): dict(valid=True), key("index", "public", "b_idx"): dict(valid=False),
              key("index", "public", "c_idx"): dict(valid=True, attached=True)}
    plan = postdata.build_post_plan(held, details, target)
    assert [s["sql"].as_string(None) for s in plan["steps"]] == [
        'DROP INDEX "public"."b_idx"', "CREATE INDEX b_idx ON public.b USING btree (x)"]
    assert plan["existing"] == ["public.a_idx", "public.c_idx"]


def test_foreign_keys_are_added_not_valid_then_validated():
    held = [held_entry("FK CONSTRAINT", 1), held_entry("FK CONSTRAINT", 2), held_entry("FK CONSTRAINT", 3),
            held_entry("CHECK CONSTRAINT", 4), held_entry("FK CONSTRAINT", 5)]
    details = dict(constraints=[
        fk_row(1, "child_fk", "child", bytes_=5),
        fk_row(2, "part_fk", "part", table_kind="p", bytes_=50),
        fk_row(3, "lazy_fk", "lazy", validated=False),
        fk_row(4, "pos_check", "child", contype="c", validated=False),
        fk_row(5, "half_fk", "half"),
    ])
    target = {key("table constraint", "public", "half", "half_fk"): dict(valid=False)}
    plan = postdata.build_post_plan(held, details, target)
    adds = schedule.phase_steps(plan, "constraints")
    assert [s["sql"].as_string(None) for s in adds] == [
        'ALTER TABLE ONLY "public"."child" ADD CONSTRAINT "child_fk" FOREIGN KEY (x) REFERENCES public.parent(id) '
        'NOT VALID',
        'ALTER TABLE "public"."part" ADD CONSTRAINT "part_fk" FOREIGN KEY (x) REFERENCES public.parent(id) NOT VALID',
        'ALTER TABLE ONLY "public"."lazy" ADD CONSTRAINT "lazy_fk" FOREIGN KEY (x) REFERENCES public.parent(id) '
        'NOT VALID',
        'ALTER TABLE "public"."child" ADD CONSTRAINT "pos_check" CHECK ((x > 0)) NOT VALID',
    ]
    # A partitioned table: if the target refuses NOT VALID there (before PostgreSQL 18), the plain form.
    assert adds[1]["plain"].as_string(None) == \
        'ALTER TABLE "public"."part" ADD CONSTRAINT "part_fk" FOREIGN KEY (x) REFERENCES public.parent(id)'
    assert adds[0]["plain"] is None
    # Validated: what is valid on the source, largest table first; the half-done one too. Never the
    # constraints that are NOT VALID on the source.
    assert [s["sql"].as_string(None) for s in schedule.phase_steps(plan, "validate")] == [
        'ALTER TABLE "public"."part" VALIDATE CONSTRAINT "part_fk"',
        'ALTER TABLE "public"."child" VALIDATE CONSTRAINT "child_fk"',
        'ALTER TABLE "public"."half" VALIDATE CONSTRAINT "half_fk"',
    ]
    assert plan["existing"] == ["half_fk on public.half"]


def test_triggers_keep_their_enabled_state_and_clones_theirs():
    held = [held_entry("TRIGGER", 1), held_entry("TRIGGER", 2), held_entry("TRIGGER", 3)]

    def trig(oid, name, enabled):
        definition = "CREATE TRIGGER %s AFTER INSERT ON public.t FOR EACH ROW EXECUTE FUNCTION public.f()" % name
        return dict(oid=oid, identity="%s on public.t" % name, ref=ref("public", "t", name), name=name,
                    enabled=enabled, table_schema="public", table_name="t", description=None, **{"def": definition})
    details = dict(triggers=[trig(1, "audit", "A"), trig(2, "quiet", "D"), trig(3, "plain", "O")],
                   trigger_clones=[dict(name="audit", enabled="D", parent_enabled="A", table_schema="public",
                                        table_name="t_1", identity="audit on public.t_1",
                                        ref=ref("public", "t_1", "audit"))])
    target = {key("trigger", "public", "t", "plain"): dict(enabled="D")}
    plan = postdata.build_post_plan(held, details, target)
    assert [s["sql"].as_string(None) for s in plan["steps"]] == [
        "CREATE TRIGGER audit AFTER INSERT ON public.t FOR EACH ROW EXECUTE FUNCTION public.f()",
        'ALTER TABLE "public"."t" ENABLE ALWAYS TRIGGER "audit"',
        "CREATE TRIGGER quiet AFTER INSERT ON public.t FOR EACH ROW EXECUTE FUNCTION public.f()",
        'ALTER TABLE "public"."t" DISABLE TRIGGER "quiet"',
        'ALTER TABLE "public"."t" ENABLE TRIGGER "plain"',  # exists, but disabled on the target
        'ALTER TABLE "public"."t_1" DISABLE TRIGGER "audit"',
    ]
    assert any("audit on public.t is enabled always" in w for w in plan["warnings"])
    # Once mirrored, nothing more to do.
    target = {key("trigger", "public", "t", n): dict(enabled=e)
              for n, e in (("audit", "A"), ("quiet", "D"), ("plain", "O"))}
    target[key("trigger", "public", "t_1", "audit")] = dict(enabled="D")
    assert postdata.build_post_plan(held, details, target)["steps"] == []


def test_rules_policies_row_security_statistics_event_triggers_and_comments():
    held = [held_entry("RULE", 1), held_entry("POLICY", 2), held_entry("ROW SECURITY", 3),
            held_entry("STATISTICS", 4), held_entry("EVENT TRIGGER", 5), held_entry("SECURITY LABEL", 6)]
    details = dict(
        rules=[dict(oid=1, identity="r1 on public.t", ref=ref("public", "t", "r1"), name="r1", enabled="D",
                    table_schema="public", table_name="t", description=None,
                    **{"def": "CREATE RULE r1 AS\n    ON DELETE TO public.t DO INSTEAD NOTHING;"})],
        policies=[dict(oid=2, identity="p1 on public.t", ref=ref("public", "t", "p1"), name="p1", permissive=False,
                       cmd="r", roles=["app_user", "public"], qual="(owner = CURRENT_USER)", with_check=None,
                       table_schema="public", table_name="t", description="own rows")],
        row_security=[dict(oid=3, identity="public.t", ref=ref("public", "t"), table_schema="public", table_name="t",
                           enabled=True, forced=True)],
        statistics=[dict(oid=4, identity="public.st", ref=ref("public", "st"), schema="public", name="st",
                         description=None, **{"def": "CREATE STATISTICS public.st ON a, b FROM public.t"})],
        event_triggers=[dict(oid=5, identity="ddl_log", ref=ref("ddl_log"), name="ddl_log", event="ddl_command_end",
                             tags=["CREATE TABLE"], enabled="R", function_schema="public", function_name="log_ddl",
                             description=None)],
    )
    plan = postdata.build_post_plan(held, details, {key("table", "public", "t"): dict(enabled="rls")})
    assert [s["sql"].as_string(None) for s in plan["steps"]] == [
        "CREATE RULE r1 AS\n    ON DELETE TO public.t DO INSTEAD NOTHING",
        'ALTER TABLE "public"."t" DISABLE RULE "r1"',
        'CREATE POLICY "p1" ON "public"."t" AS RESTRICTIVE FOR SELECT TO "app_user", PUBLIC '
        'USING ((owner = CURRENT_USER))',
        'ALTER TABLE "public"."t" FORCE ROW LEVEL SECURITY',  # already enabled on the target
        "CREATE STATISTICS public.st ON a, b FROM public.t",
        'CREATE EVENT TRIGGER "ddl_log" ON ddl_command_end WHEN TAG IN (\'CREATE TABLE\') '
        'EXECUTE FUNCTION "public"."log_ddl"()',
        'ALTER EVENT TRIGGER "ddl_log" ENABLE REPLICA',
        'COMMENT ON POLICY "p1" ON "public"."t" IS \'own rows\'',
    ]
    assert plan["not_handled"] == [dict(kind="security label", object="public 6", reason="x")]


def test_post_plan_builds_hard_names_from_separate_values():
    held = [held_entry("FK CONSTRAINT", 1), held_entry("TRIGGER", 2), held_entry("INDEX", 3)]
    details = dict(
        constraints=[dict(oid=1, identity='"FK Zöll → order" on "eu.west ""archive"""."Zöll_Tarife"',
                          ref=ref('eu.west "archive"', "Zöll_Tarife", "FK Zöll → order"), type="table constraint",
                          name="FK Zöll → order", contype="f", convalidated=True, table_schema='eu.west "archive"',
                          table_name="Zöll_Tarife", table_kind="r", table_bytes=8192, domain_schema=None,
                          domain_name=None, index=None, index_ref=None, index_parent=None, description=None,
                          **{"def": 'FOREIGN KEY ("Order ID") REFERENCES "Shipping Ops"."order"("Order ID")'})],
        triggers=[dict(oid=2, identity='"Audit ""order"" changes" on "Shipping Ops"."order"',
                       ref=ref("Shipping Ops", "order", 'Audit "order" changes'), name='Audit "order" changes',
                       enabled="D", table_schema="Shipping Ops", table_name="order", description="who did what",
                       **{"def": 'CREATE TRIGGER "Audit ""order"" changes" AFTER INSERT ON "Shipping Ops"."order" '
                                 'FOR EACH ROW EXECUTE FUNCTION "Shipping Ops"."Log Änderung"()'})],
        indexes=[dict(index_row(3, "x", "y"), identity='"Shipping Ops"."Idx: order by ""State"""',
                      ref=ref("Shipping Ops", 'Idx: order by "State"'), schema="Shipping Ops",
                      name='Idx: order by "State"', table_schema="Shipping Ops", table_name="order",
                      **{"def": 'CREATE INDEX "Idx: order by ""State""" ON "Shipping Ops"."order" ("State")'})],
        trigger_clones=[])
    # The target has the index, invalid (an interrupted build), and a trigger of that name on another table.
    target = {key("index", "Shipping Ops", 'Idx: order by "State"'): dict(valid=False),
              key("trigger", "Shipping Ops", "select", 'Audit "order" changes'): dict(enabled="O")}
    plan = postdata.build_post_plan(held, details, target)
    texts = [s["sql"].as_string(None) for s in plan["steps"]]
    assert texts == [
        'DROP INDEX "Shipping Ops"."Idx: order by ""State"""',
        'CREATE INDEX "Idx: order by ""State""" ON "Shipping Ops"."order" ("State")',
        'ALTER TABLE ONLY "eu.west ""archive"""."Zöll_Tarife" ADD CONSTRAINT "FK Zöll → order" FOREIGN KEY '
        '("Order ID") REFERENCES "Shipping Ops"."order"("Order ID") NOT VALID',
        'ALTER TABLE "eu.west ""archive"""."Zöll_Tarife" VALIDATE CONSTRAINT "FK Zöll → order"',
        'CREATE TRIGGER "Audit ""order"" changes" AFTER INSERT ON "Shipping Ops"."order" FOR EACH ROW EXECUTE '
        'FUNCTION "Shipping Ops"."Log Änderung"()',
        'ALTER TABLE "Shipping Ops"."order" DISABLE TRIGGER "Audit ""order"" changes"',
        'COMMENT ON TRIGGER "Audit ""order"" changes" ON "Shipping Ops"."order" IS \'who did what\'',
    ]
    # The index steps name their table (what a post stage waiting for the loads waits for), quoted for display.
    assert [s["table"] for s in plan["steps"] if s["phase"] == "indexes"] == ['"Shipping Ops"."order"'] * 2


def test_the_steps_done_fill_created_validated_and_states():
    result = dict(created=[], validated=[], states=[])
    postdata.record(result, [
        dict(kind="index", object="i1 on public.t", seconds=0.5),
        dict(kind="foreign key", object="fk1 on public.t", seconds=0.1, validate_done=True),
        dict(kind="foreign key", object="fk2 on public.t", seconds=0.1),
        dict(kind="validate constraint", object="fk2 on public.t", seconds=2.0),
        dict(kind="trigger state", object="tg on public.t", state="enabled always")])
    assert result == dict(
        created=[dict(kind="index", object="i1 on public.t", seconds=0.5),
                 dict(kind="foreign key", object="fk1 on public.t", seconds=0.1),
                 dict(kind="foreign key", object="fk2 on public.t", seconds=0.1)],
        validated=["fk1 on public.t", "fk2 on public.t"],
        states=[dict(kind="trigger", object="tg on public.t", state="enabled always")])
    assert roles.grant_to_login("app_owner", 170000).as_string(None) == \
        'GRANT "app_owner" TO CURRENT_USER WITH INHERIT TRUE, SET TRUE'
