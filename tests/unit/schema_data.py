"""Real pg_restore -l -v listings and the catalog facts of their entries, shared by the tests of module_utils/schema/.

The archive listings are real ``pg_restore -l -v`` output (PostgreSQL 18's pg_restore on a
schema-only dump of the lab's PostgreSQL 15 dataset); the catalog facts are what
_pg/schema.SOURCE_OBJECTS_SQL returns for those entries.
"""

from __future__ import annotations

from ansible_collections.pgshift.aurora.plugins.module_utils.schema import toc


TOC = """\
;
; Archive created at 2026-11-24 04:24:30 UTC
;     dbname: app
;     Dumped from database version: 15.18 (Debian 15.18-0+deb12u1)
;     Dumped by pg_dump version: 18.6
;
; Selected TOC Entries:
;
3931; 0 0 ENCODING - ENCODING|
3932; 0 0 STDSTRINGS - STDSTRINGS|
3933; 0 0 SEARCHPATH - SEARCHPATH|
3934; 1262 16385 DATABASE - app app_owner
8; 2615 16386 SCHEMA - billing app_owner
3935; 0 0 ACL - SCHEMA billing app_owner
;	depends on: 8
2; 3079 16786 EXTENSION - btree_gist|
3936; 0 0 COMMENT - EXTENSION btree_gist|
;	depends on: 2
1108; 1247 16404 DOMAIN public country_code app_owner
257; 1255 16426 FUNCTION public audit_row() app_owner
252; 1259 16691 TABLE billing invoices app_owner
;	depends on: 250 8
250; 1259 16689 SEQUENCE billing invoice_no_seq app_owner
;	depends on: 8
221; 1259 16428 TABLE public customers app_owner
;	depends on: 1108
3939; 0 0 COMMENT public TABLE customers app_owner
;	depends on: 221
3940; 0 0 ACL public TABLE customers app_owner
;	depends on: 221
3941; 0 0 ACL public COLUMN customers.email app_owner
;	depends on: 221 3940
220; 1259 16427 SEQUENCE public customers_id_seq app_owner
;	depends on: 221
254; 1259 16718 VIEW public open_invoices app_owner
;	depends on: 221 221 252 252 252 252 252
227; 1259 16490 TABLE public shipments app_owner
228; 1259 16500 TABLE public shipments_2025_01 app_owner
;	depends on: 227
3645; 0 0 TABLE ATTACH public shipments_2025_01 app_owner
;	depends on: 228 227
248; 1259 16676 TABLE public session_cache app_owner
3745; 2606 16704 CONSTRAINT billing invoices invoices_invoice_no_key app_owner
;	depends on: 252
3747; 2606 16702 CONSTRAINT billing invoices invoices_pkey app_owner
;	depends on: 252
3687; 2606 16436 CONSTRAINT public customers customers_pkey app_owner
;	depends on: 221
3943; 0 0 COMMENT public CONSTRAINT customers_pkey ON customers app_owner
;	depends on: 3687
3754; 2606 17444 CONSTRAINT public bookings bookings_r_excl postgres
;	depends on: 221
3679; 2606 16785 CHECK CONSTRAINT public documents documents_kind_check app_owner
;	depends on: 221
3698; 2606 16494 CONSTRAINT public shipments shipments_pkey app_owner
;	depends on: 227 227
3701; 2606 16504 CONSTRAINT public shipments_2025_01 shipments_2025_01_pkey app_owner
;	depends on: 228 228 3698 228
3688; 1259 16444 INDEX public customers_referred_by_idx app_owner
;	depends on: 221
3944; 0 0 COMMENT public INDEX customers_referred_by_idx app_owner
;	depends on: 3688
3689; 1259 16458 INDEX public session_cache_lookup app_owner
;	depends on: 248
3696; 1259 16570 INDEX public shipments_parcel_id_idx app_owner
;	depends on: 227
3699; 1259 16571 INDEX public shipments_2025_01_parcel_id_idx app_owner
;	depends on: 228 3696 228
3755; 0 0 INDEX ATTACH public shipments_2025_01_parcel_id_idx app_owner
;	depends on: 3699 3696 228 227
3756; 0 0 INDEX ATTACH public shipments_2025_01_pkey app_owner
;	depends on: 3698 3701 228 3698 228 227
3769; 3381 16746 STATISTICS public parcels_stats postgres
;	depends on: 221 221
3926; 2618 16744 RULE public customers customers_nodelete app_owner
;	depends on: 221 221 221
3779; 2620 16487 TRIGGER public customers customers_audit app_owner
;	depends on: 221 257
3778; 2606 16705 FK CONSTRAINT billing invoices invoices_customer_id_fkey app_owner
;	depends on: 221 3687 252
3800; 2606 16900 CONSTRAINT public customers customers_email_fkey app_owner
;	depends on: 221
3801; 2606 16901 FK CONSTRAINT public customers customers_referrer_pkey app_owner
;	depends on: 221 3687
3927; 0 16446 ROW SECURITY public customers app_owner
;	depends on: 221
3928; 3256 16745 POLICY public customers own_rows app_owner
;	depends on: 221 221
2482; 826 16747 DEFAULT ACL billing DEFAULT PRIVILEGES FOR TABLES app_owner
;	depends on: 8
4000; 0 0 PUBLICATION - pub_app postgres
""".replace("|\n", " \n")  # pg_restore ends the lines of entries without an owner with a space


def ref(*names, args=()):
    """An object's names as separate values, as ref_sql returns them."""
    return [list(names), list(args)]


def key(type_, *names, args=()):
    """An object's key (toc.object_key) from its names."""
    return toc.object_key(dict(type=type_, ref=ref(*names, args=args)))


def info(classid, objid, type_, identity, names, owner="app_owner", **extra):
    """A SOURCE_OBJECTS_SQL row: names are the object's names as separate values (schema first)."""
    nspname = names[0] if classid not in (1262, 3079, 3466) else None
    row = dict(classid=classid, objid=objid, type=type_, identity=identity, ref=ref(*names), nspname=nspname,
               owner=owner)
    row.update(extra)
    return (classid, objid), row


# What SOURCE_OBJECTS_SQL returns for the catalog entries above. Note customers_email_fkey
# (a UNIQUE constraint despite its name) and customers_referrer_pkey (a foreign key despite
# its): the catalog decides, never the name.
CATALOG = dict([
    info(1262, 16385, "database", "app", ["app"]),
    info(2615, 16386, "schema", "billing", ["billing"]),
    info(3079, 16786, "extension", "btree_gist", ["btree_gist"], owner="postgres", extname="btree_gist"),
    info(1247, 16404, "type", "public.country_code", ["public", "country_code"]),
    info(1255, 16426, "function", "public.audit_row()", ["public", "audit_row"]),
    info(1259, 16691, "table", "billing.invoices", ["billing", "invoices"], relkind="r"),
    info(1259, 16689, "sequence", "billing.invoice_no_seq", ["billing", "invoice_no_seq"], relkind="S"),
    info(1259, 16428, "table", "public.customers", ["public", "customers"], relkind="r"),
    info(1259, 16427, "sequence", "public.customers_id_seq", ["public", "customers_id_seq"], relkind="S"),
    info(1259, 16718, "view", "public.open_invoices", ["public", "open_invoices"], relkind="v"),
    info(1259, 16490, "table", "public.shipments", ["public", "shipments"], relkind="p"),
    info(1259, 16500, "table", "public.shipments_2025_01", ["public", "shipments_2025_01"], relkind="r",
         is_partition=True),
    info(1259, 16676, "table", "public.session_cache", ["public", "session_cache"], relkind="r"),
    info(2606, 16704, "table constraint", "invoices_invoice_no_key on billing.invoices",
         ["billing", "invoices", "invoices_invoice_no_key"], contype="u", convalidated=True),
    info(2606, 16702, "table constraint", "invoices_pkey on billing.invoices", ["billing", "invoices", "invoices_pkey"],
         contype="p", convalidated=True),
    info(2606, 16436, "table constraint", "customers_pkey on public.customers",
         ["public", "customers", "customers_pkey"], contype="p", convalidated=True),
    info(2606, 17444, "table constraint", "bookings_r_excl on public.bookings",
         ["public", "bookings", "bookings_r_excl"], owner="postgres", contype="x", convalidated=True),
    info(2606, 16785, "table constraint", "documents_kind_check on public.documents",
         ["public", "documents", "documents_kind_check"], contype="c", convalidated=False),
    info(2606, 16494, "table constraint", "shipments_pkey on public.shipments",
         ["public", "shipments", "shipments_pkey"], contype="p", convalidated=True,
         index_ref=ref("public", "shipments_pkey")),
    info(2606, 16504, "table constraint", "shipments_2025_01_pkey on public.shipments_2025_01",
         ["public", "shipments_2025_01", "shipments_2025_01_pkey"], contype="p", convalidated=True,
         index_ref=ref("public", "shipments_2025_01_pkey"), index_parent=True),
    info(1259, 16444, "index", "public.customers_referred_by_idx", ["public", "customers_referred_by_idx"],
         relkind="i", replident=False),
    info(1259, 16458, "index", "public.session_cache_lookup", ["public", "session_cache_lookup"], relkind="i",
         replident=True),
    info(1259, 16570, "index", "public.shipments_parcel_id_idx", ["public", "shipments_parcel_id_idx"], relkind="I",
         replident=False),
    info(1259, 16571, "index", "public.shipments_2025_01_parcel_id_idx", ["public", "shipments_2025_01_parcel_id_idx"],
         relkind="i", replident=False, parent=True),
    info(3381, 16746, "statistics object", "public.parcels_stats", ["public", "parcels_stats"], owner="postgres"),
    info(2618, 16744, "rule", "customers_nodelete on public.customers", ["public", "customers", "customers_nodelete"]),
    info(2620, 16487, "trigger", "customers_audit on public.customers", ["public", "customers", "customers_audit"]),
    info(2606, 16705, "table constraint", "invoices_customer_id_fkey on billing.invoices",
         ["billing", "invoices", "invoices_customer_id_fkey"], contype="f", convalidated=True),
    info(2606, 16900, "table constraint", "customers_email_fkey on public.customers",
         ["public", "customers", "customers_email_fkey"], contype="u", convalidated=True),
    info(2606, 16901, "table constraint", "customers_referrer_pkey on public.customers",
         ["public", "customers", "customers_referrer_pkey"], contype="f", convalidated=True),
    info(3256, 16745, "policy", "own_rows on public.customers", ["public", "customers", "own_rows"]),
    info(826, 16747, "default acl", "for role app_owner in schema billing on tables", ["app_owner", "billing"]),
])


CATALOG[(826, 16747)].update(nspname="billing", ref=ref("app_owner", "billing", args=["r"]))


ALL_RELATIONS = {16691, 16689, 16428, 16427, 16718, 16490, 16500, 16676}


def scope_(schemas=("public", "billing"), out=()):
    out = set(out)
    return dict(schemas=set(schemas), relations_in=ALL_RELATIONS - out, relations_out=out)


def entries(sc=None):
    es = toc.parse_toc(TOC)
    toc.annotate(es, CATALOG)
    toc.classify(es, sc or scope_())
    return es


def by_label(es):
    return dict((toc.entry_label(e), e) for e in es)


def cls(es, label):
    return by_label(es)[label]["cls"]


# pg_restore -l -v of PostgreSQL 18 on a schema-only dump of 30_hard_names.sql loaded into a
# PostgreSQL 15 database: names with spaces and dots are printed unquoted, so that "Shipping Ops
# Audit Log app_owner" cannot be split into schema, name and owner.
HARD_TOC = '''\
3450; 0 0 ENCODING - ENCODING|
3451; 0 0 STDSTRINGS - STDSTRINGS|
3452; 0 0 SEARCHPATH - SEARCHPATH|
3453; 1262 16879 DATABASE - hn app_owner
6; 2615 16880 SCHEMA - Shipping Ops app_owner
3454; 0 0 ACL - SCHEMA "Shipping Ops" app_owner
;\tdepends on: 6
7; 2615 16881 SCHEMA - eu.west "archive" app_owner
3455; 0 0 ACL - SCHEMA "eu.west ""archive""" app_owner
;\tdepends on: 7
859; 1247 16894 DOMAIN Shipping Ops Gewicht (kg) app_owner
;\tdepends on: 6
856; 1247 16883 TYPE Shipping Ops Parcel State app_owner
;\tdepends on: 6
233; 1255 16949 FUNCTION Shipping Ops Log Änderung() app_owner
;\tdepends on: 6
224; 1259 16942 TABLE Shipping Ops Audit Log app_owner
;\tdepends on: 6
3456; 0 0 ACL Shipping Ops TABLE "Audit Log" app_owner
;\tdepends on: 224
223; 1259 16941 SEQUENCE Shipping Ops Audit Log_Id_seq app_owner
;\tdepends on: 6 224
228; 1259 16970 TABLE eu.west "archive" Events by Month app_owner
;\tdepends on: 7
3457; 0 0 ACL eu.west "archive" TABLE "Events by Month" app_owner
;\tdepends on: 228
230; 1259 16982 TABLE Shipping Ops Events.2025-02 app_owner
;\tdepends on: 228 6
3458; 0 0 ACL Shipping Ops TABLE "Events.2025-02" app_owner
;\tdepends on: 230
216; 1259 16896 SEQUENCE Shipping Ops Global.Ref "No" app_owner
;\tdepends on: 6
221; 1259 16924 TABLE Shipping Ops Notes app_owner
;\tdepends on: 216 6
3459; 0 0 ACL Shipping Ops TABLE "Notes" app_owner
;\tdepends on: 221
222; 1259 16932 TABLE Shipping Ops Notes: Zoll (old) app_owner
;\tdepends on: 6 221
3460; 0 0 ACL Shipping Ops TABLE "Notes: Zoll (old)" app_owner
;\tdepends on: 222
218; 1259 16898 TABLE Shipping Ops order app_owner
;\tdepends on: 216 856 856 859 6
3461; 0 0 ACL Shipping Ops TABLE "order" app_owner
;\tdepends on: 218
3462; 0 0 ACL Shipping Ops COLUMN "order"."CamelCase" app_owner
;\tdepends on: 218 3461
217; 1259 16897 SEQUENCE Shipping Ops order_Order ID_seq app_owner
;\tdepends on: 6 218
219; 1259 16911 TABLE Shipping Ops select app_owner
;\tdepends on: 6
3463; 0 0 ACL Shipping Ops TABLE "select" app_owner
;\tdepends on: 219
220; 1259 16917 SEQUENCE Shipping Ops select_Line No_seq app_owner
;\tdepends on: 6 219
3464; 0 0 SEQUENCE OWNED BY Shipping Ops select_Line No_seq app_owner
;\tdepends on: 220
231; 1259 16989 TABLE eu.west "archive" Events "default" app_owner
;\tdepends on: 228 7
3465; 0 0 ACL eu.west "archive" TABLE "Events ""default""" app_owner
;\tdepends on: 231
229; 1259 16975 TABLE eu.west "archive" Events 2025-01 app_owner
;\tdepends on: 228 7
3466; 0 0 ACL eu.west "archive" TABLE "Events 2025-01" app_owner
;\tdepends on: 229
225; 1259 16951 TABLE eu.west "archive" Zöll_Tarife app_owner
;\tdepends on: 7
3467; 0 0 ACL eu.west "archive" TABLE "Zöll_Tarife" app_owner
;\tdepends on: 225
232; 1259 17000 VIEW eu.west "archive" Order View app_owner
;\tdepends on: 218 225 225 218 7
3468; 0 0 ACL eu.west "archive" TABLE "Order View" app_owner
;\tdepends on: 232
227; 1259 16963 TABLE eu.west "archive" Tracking events per parcel, delivery attempt & depot (63 bytes) app_owner
;\tdepends on: 7
3469; 0 0 ACL eu.west "archive" TABLE "Tracking events per parcel, delivery attempt & depot (63 bytes)" app_owner
;\tdepends on: 227
226; 1259 16962 SEQUENCE eu.west "archive" Tracking events per parcel, delivery attempt & depot (63_Id_seq app_owner
;\tdepends on: 7 227
3256; 0 0 TABLE ATTACH Shipping Ops Events.2025-02 app_owner
;\tdepends on: 230 228
3257; 0 0 TABLE ATTACH eu.west "archive" Events "default" app_owner
;\tdepends on: 231 228
3255; 0 0 TABLE ATTACH eu.west "archive" Events 2025-01 app_owner
;\tdepends on: 229 228
3263; 2604 16935 DEFAULT Shipping Ops Notes: Zoll (old) Note Id app_owner
;\tdepends on: 222 216
3260; 2604 16918 DEFAULT Shipping Ops select Line No app_owner
;\tdepends on: 220 219
3278; 2606 16948 CONSTRAINT Shipping Ops Audit Log Audit Log PK app_owner
;\tdepends on: 224
3285; 2606 16974 CONSTRAINT eu.west "archive" Events by Month Events PK app_owner
;\tdepends on: 228 228
3292; 2606 16986 CONSTRAINT Shipping Ops Events.2025-02 Events.2025-02_pkey app_owner
;\tdepends on: 230 230 3285 230
3274; 2606 16931 CONSTRAINT Shipping Ops Notes Notes PK app_owner
;\tdepends on: 221
3276; 2606 16940 CONSTRAINT Shipping Ops Notes: Zoll (old) Notes: Zoll PK app_owner
;\tdepends on: 222
3268; 2606 16907 CONSTRAINT Shipping Ops order Order PK app_owner
;\tdepends on: 218
3270; 2606 16909 CONSTRAINT Shipping Ops order order.ref unique app_owner
;\tdepends on: 218
3272; 2606 16916 CONSTRAINT Shipping Ops select select pkey "Line" app_owner
;\tdepends on: 219
3295; 2606 16993 CONSTRAINT eu.west "archive" Events "default" Events "default"_pkey app_owner
;\tdepends on: 3285 231 231 231
3289; 2606 16979 CONSTRAINT eu.west "archive" Events 2025-01 Events 2025-01_pkey app_owner
;\tdepends on: 3285 229 229 229
3283; 2606 16969 CONSTRAINT eu.west "archive" Tracking events per parcel, delivery attempt & depot (63 bytes) Tracking 63 PK app_owner
;\tdepends on: 227
3280; 2606 16955 CONSTRAINT eu.west "archive" Zöll_Tarife Zöll PK app_owner
;\tdepends on: 225
3286; 1259 16996 INDEX eu.west "archive" Events: by "What?" app_owner
;\tdepends on: 228
3290; 1259 16998 INDEX Shipping Ops Events.2025-02_What?_idx app_owner
;\tdepends on: 230 3286 230
3266; 1259 16910 INDEX Shipping Ops Idx: order by "State" app_owner
;\tdepends on: 218 218
3293; 1259 16999 INDEX eu.west "archive" Events "default"_What?_idx app_owner
;\tdepends on: 231 3286 231
3287; 1259 16997 INDEX eu.west "archive" Events 2025-01_What?_idx app_owner
;\tdepends on: 3286 229 229
3281; 1259 16961 INDEX eu.west "archive" Zöll: by order app_owner
;\tdepends on: 225
3298; 0 0 INDEX ATTACH Shipping Ops Events.2025-02_What?_idx app_owner
;\tdepends on: 3290 3286 230 228
3299; 0 0 INDEX ATTACH Shipping Ops Events.2025-02_pkey app_owner
;\tdepends on: 3285 230 3292 3285 230 228
3300; 0 0 INDEX ATTACH eu.west "archive" Events "default"_What?_idx app_owner
;\tdepends on: 3293 3286 231 228
3301; 0 0 INDEX ATTACH eu.west "archive" Events "default"_pkey app_owner
;\tdepends on: 3285 3295 231 3285 231 228
3296; 0 0 INDEX ATTACH eu.west "archive" Events 2025-01_What?_idx app_owner
;\tdepends on: 3287 3286 229 228
3297; 0 0 INDEX ATTACH eu.west "archive" Events 2025-01_pkey app_owner
;\tdepends on: 3289 3285 229 3285 229 228
3304; 2620 16950 TRIGGER Shipping Ops order Audit "order" changes app_owner
;\tdepends on: 233 218
3302; 2606 16919 FK CONSTRAINT Shipping Ops select Lines → order app_owner
;\tdepends on: 3268 218 219
3303; 2606 16956 FK CONSTRAINT eu.west "archive" Zöll_Tarife FK Zöll → order app_owner
;\tdepends on: 3268 218 225
'''.replace("|\n", " \n")  # (the trailing space pg_restore writes after an entry without owner)


# What SOURCE_OBJECTS_SQL returned for them (the same source, PostgreSQL 15).
HARD_CATALOG = dict(((r["classid"], r["objid"]), r) for r in [
    dict(classid=1247, objid=16883, type='type', identity='"Shipping Ops"."Parcel State"', nspname='Shipping Ops',
         owner='app_owner', ref=[['Shipping Ops', 'Parcel State'], []]),
    dict(classid=1247, objid=16894, type='type', identity='"Shipping Ops"."Gewicht (kg)"', nspname='Shipping Ops',
         owner='app_owner', ref=[['Shipping Ops', 'Gewicht (kg)'], []]),
    dict(classid=1255, objid=16949, type='function', identity='"Shipping Ops"."Log Änderung"()',
         nspname='Shipping Ops', owner='app_owner', ref=[['Shipping Ops', 'Log Änderung'], []]),
    dict(classid=1259, objid=16896, type='sequence', identity='"Shipping Ops"."Global.Ref ""No"""',
         nspname='Shipping Ops', owner='app_owner', ref=[['Shipping Ops', 'Global.Ref "No"'], []], relkind='S'),
    dict(classid=1259, objid=16897, type='sequence', identity='"Shipping Ops"."order_Order ID_seq"',
         nspname='Shipping Ops', owner='app_owner', ref=[['Shipping Ops', 'order_Order ID_seq'], []], relkind='S'),
    dict(classid=1259, objid=16898, type='table', identity='"Shipping Ops"."order"', nspname='Shipping Ops',
         owner='app_owner', ref=[['Shipping Ops', 'order'], []], relkind='r'),
    dict(classid=1259, objid=16910, type='index', identity='"Shipping Ops"."Idx: order by ""State"""',
         nspname='Shipping Ops', owner='app_owner', ref=[['Shipping Ops', 'Idx: order by "State"'], []], relkind='i'),
    dict(classid=1259, objid=16911, type='table', identity='"Shipping Ops"."select"', nspname='Shipping Ops',
         owner='app_owner', ref=[['Shipping Ops', 'select'], []], relkind='r'),
    dict(classid=1259, objid=16917, type='sequence', identity='"Shipping Ops"."select_Line No_seq"',
         nspname='Shipping Ops', owner='app_owner', ref=[['Shipping Ops', 'select_Line No_seq'], []], relkind='S'),
    dict(classid=1259, objid=16924, type='table', identity='"Shipping Ops"."Notes"', nspname='Shipping Ops',
         owner='app_owner', ref=[['Shipping Ops', 'Notes'], []], relkind='r'),
    dict(classid=1259, objid=16932, type='table', identity='"Shipping Ops"."Notes: Zoll (old)"',
         nspname='Shipping Ops', owner='app_owner', ref=[['Shipping Ops', 'Notes: Zoll (old)'], []], relkind='r'),
    dict(classid=1259, objid=16941, type='sequence', identity='"Shipping Ops"."Audit Log_Id_seq"',
         nspname='Shipping Ops', owner='app_owner', ref=[['Shipping Ops', 'Audit Log_Id_seq'], []], relkind='S'),
    dict(classid=1259, objid=16942, type='table', identity='"Shipping Ops"."Audit Log"', nspname='Shipping Ops',
         owner='app_owner', ref=[['Shipping Ops', 'Audit Log'], []], relkind='r'),
    dict(classid=1259, objid=16951, type='table', identity='"eu.west ""archive"""."Zöll_Tarife"',
         nspname='eu.west "archive"', owner='app_owner', ref=[['eu.west "archive"', 'Zöll_Tarife'], []], relkind='r'),
    dict(classid=1259, objid=16961, type='index', identity='"eu.west ""archive"""."Zöll: by order"',
         nspname='eu.west "archive"', owner='app_owner', ref=[['eu.west "archive"', 'Zöll: by order'], []],
         relkind='i'),
    dict(classid=1259, objid=16962, type='sequence',
         identity='"eu.west ""archive"""."Tracking events per parcel, delivery attempt & depot (63_Id_seq"',
         nspname='eu.west "archive"', owner='app_owner',
         ref=[['eu.west "archive"', 'Tracking events per parcel, delivery attempt & depot (63_Id_seq'], []],
         relkind='S'),
    dict(classid=1259, objid=16963, type='table',
         identity='"eu.west ""archive"""."Tracking events per parcel, delivery attempt & depot (63 bytes)"',
         nspname='eu.west "archive"', owner='app_owner',
         ref=[['eu.west "archive"', 'Tracking events per parcel, delivery attempt & depot (63 bytes)'], []],
         relkind='r'),
    dict(classid=1259, objid=16970, type='table', identity='"eu.west ""archive"""."Events by Month"',
         nspname='eu.west "archive"', owner='app_owner', ref=[['eu.west "archive"', 'Events by Month'], []],
         relkind='p'),
    dict(classid=1259, objid=16975, type='table', identity='"eu.west ""archive"""."Events 2025-01"',
         nspname='eu.west "archive"', owner='app_owner', ref=[['eu.west "archive"', 'Events 2025-01'], []],
         relkind='r', is_partition=True),
    dict(classid=1259, objid=16982, type='table', identity='"Shipping Ops"."Events.2025-02"', nspname='Shipping Ops',
         owner='app_owner', ref=[['Shipping Ops', 'Events.2025-02'], []], relkind='r', is_partition=True),
    dict(classid=1259, objid=16989, type='table', identity='"eu.west ""archive"""."Events ""default"""',
         nspname='eu.west "archive"', owner='app_owner', ref=[['eu.west "archive"', 'Events "default"'], []],
         relkind='r', is_partition=True),
    dict(classid=1259, objid=16996, type='index', identity='"eu.west ""archive"""."Events: by ""What?"""',
         nspname='eu.west "archive"', owner='app_owner', ref=[['eu.west "archive"', 'Events: by "What?"'], []],
         relkind='I'),
    dict(classid=1259, objid=16997, type='index', identity='"eu.west ""archive"""."Events 2025-01_What?_idx"',
         nspname='eu.west "archive"', owner='app_owner', ref=[['eu.west "archive"', 'Events 2025-01_What?_idx'], []],
         relkind='i', is_partition=True, parent=True),
    dict(classid=1259, objid=16998, type='index', identity='"Shipping Ops"."Events.2025-02_What?_idx"',
         nspname='Shipping Ops', owner='app_owner', ref=[['Shipping Ops', 'Events.2025-02_What?_idx'], []],
         relkind='i', is_partition=True, parent=True),
    dict(classid=1259, objid=16999, type='index', identity='"eu.west ""archive"""."Events ""default""_What?_idx"',
         nspname='eu.west "archive"', owner='app_owner',
         ref=[['eu.west "archive"', 'Events "default"_What?_idx'], []], relkind='i', is_partition=True, parent=True),
    dict(classid=1259, objid=17000, type='view', identity='"eu.west ""archive"""."Order View"',
         nspname='eu.west "archive"', owner='app_owner', ref=[['eu.west "archive"', 'Order View'], []], relkind='v'),
    dict(classid=1262, objid=16879, type='database', identity='hn', owner='app_owner', ref=[['hn'], []]),
    dict(classid=2604, objid=16918, type='default value', identity='for "Shipping Ops"."select"."Line No"',
         nspname='Shipping Ops', owner='app_owner', ref=[['Shipping Ops', 'select', 'Line No'], []]),
    dict(classid=2604, objid=16935, type='default value',
         identity='for "Shipping Ops"."Notes: Zoll (old)"."Note Id"', nspname='Shipping Ops', owner='app_owner',
         ref=[['Shipping Ops', 'Notes: Zoll (old)', 'Note Id'], []]),
    dict(classid=2606, objid=16907, type='table constraint', identity='"Order PK" on "Shipping Ops"."order"',
         nspname='Shipping Ops', owner='app_owner', ref=[['Shipping Ops', 'order', 'Order PK'], []], contype='p',
         convalidated=True, index_ref=[['Shipping Ops', 'Order PK'], []]),
    dict(classid=2606, objid=16909, type='table constraint', identity='"order.ref unique" on "Shipping Ops"."order"',
         nspname='Shipping Ops', owner='app_owner', ref=[['Shipping Ops', 'order', 'order.ref unique'], []],
         contype='u', convalidated=True, index_ref=[['Shipping Ops', 'order.ref unique'], []]),
    dict(classid=2606, objid=16916, type='table constraint',
         identity='"select pkey ""Line""" on "Shipping Ops"."select"', nspname='Shipping Ops', owner='app_owner',
         ref=[['Shipping Ops', 'select', 'select pkey "Line"'], []], contype='p', convalidated=True,
         index_ref=[['Shipping Ops', 'select pkey "Line"'], []]),
    dict(classid=2606, objid=16919, type='table constraint', identity='"Lines → order" on "Shipping Ops"."select"',
         nspname='Shipping Ops', owner='app_owner', ref=[['Shipping Ops', 'select', 'Lines → order'], []],
         contype='f', convalidated=True, index_ref=[['Shipping Ops', 'Order PK'], []]),
    dict(classid=2606, objid=16931, type='table constraint', identity='"Notes PK" on "Shipping Ops"."Notes"',
         nspname='Shipping Ops', owner='app_owner', ref=[['Shipping Ops', 'Notes', 'Notes PK'], []], contype='p',
         convalidated=True, index_ref=[['Shipping Ops', 'Notes PK'], []]),
    dict(classid=2606, objid=16940, type='table constraint',
         identity='"Notes: Zoll PK" on "Shipping Ops"."Notes: Zoll (old)"', nspname='Shipping Ops',
         owner='app_owner', ref=[['Shipping Ops', 'Notes: Zoll (old)', 'Notes: Zoll PK'], []], contype='p',
         convalidated=True, index_ref=[['Shipping Ops', 'Notes: Zoll PK'], []]),
    dict(classid=2606, objid=16948, type='table constraint', identity='"Audit Log PK" on "Shipping Ops"."Audit Log"',
         nspname='Shipping Ops', owner='app_owner', ref=[['Shipping Ops', 'Audit Log', 'Audit Log PK'], []],
         contype='p', convalidated=True, index_ref=[['Shipping Ops', 'Audit Log PK'], []]),
    dict(classid=2606, objid=16955, type='table constraint',
         identity='"Zöll PK" on "eu.west ""archive"""."Zöll_Tarife"', nspname='eu.west "archive"', owner='app_owner',
         ref=[['eu.west "archive"', 'Zöll_Tarife', 'Zöll PK'], []], contype='p', convalidated=True,
         index_ref=[['eu.west "archive"', 'Zöll PK'], []]),
    dict(classid=2606, objid=16956, type='table constraint',
         identity='"FK Zöll → order" on "eu.west ""archive"""."Zöll_Tarife"', nspname='eu.west "archive"',
         owner='app_owner', ref=[['eu.west "archive"', 'Zöll_Tarife', 'FK Zöll → order'], []], contype='f',
         convalidated=True, index_ref=[['Shipping Ops', 'Order PK'], []]),
    dict(classid=2606, objid=16969, type='table constraint',
         identity='"Tracking 63 PK" on "eu.west ""archive"""."Tracking events per parcel, delivery attempt & depot (63 bytes)"',
         nspname='eu.west "archive"', owner='app_owner',
         ref=[['eu.west "archive"', 'Tracking events per parcel, delivery attempt & depot (63 bytes)', 'Tracking 63 PK'], []],
         contype='p', convalidated=True, index_ref=[['eu.west "archive"', 'Tracking 63 PK'], []]),
    dict(classid=2606, objid=16974, type='table constraint',
         identity='"Events PK" on "eu.west ""archive"""."Events by Month"', nspname='eu.west "archive"',
         owner='app_owner', ref=[['eu.west "archive"', 'Events by Month', 'Events PK'], []], contype='p',
         convalidated=True, index_ref=[['eu.west "archive"', 'Events PK'], []]),
    dict(classid=2606, objid=16979, type='table constraint',
         identity='"Events 2025-01_pkey" on "eu.west ""archive"""."Events 2025-01"', nspname='eu.west "archive"',
         owner='app_owner', ref=[['eu.west "archive"', 'Events 2025-01', 'Events 2025-01_pkey'], []], contype='p',
         convalidated=True, index_ref=[['eu.west "archive"', 'Events 2025-01_pkey'], []], index_parent=True),
    dict(classid=2606, objid=16986, type='table constraint',
         identity='"Events.2025-02_pkey" on "Shipping Ops"."Events.2025-02"', nspname='Shipping Ops',
         owner='app_owner', ref=[['Shipping Ops', 'Events.2025-02', 'Events.2025-02_pkey'], []], contype='p',
         convalidated=True, index_ref=[['Shipping Ops', 'Events.2025-02_pkey'], []], index_parent=True),
    dict(classid=2606, objid=16993, type='table constraint',
         identity='"Events ""default""_pkey" on "eu.west ""archive"""."Events ""default"""',
         nspname='eu.west "archive"', owner='app_owner',
         ref=[['eu.west "archive"', 'Events "default"', 'Events "default"_pkey'], []], contype='p',
         convalidated=True, index_ref=[['eu.west "archive"', 'Events "default"_pkey'], []], index_parent=True),
    dict(classid=2615, objid=16880, type='schema', identity='"Shipping Ops"', nspname='Shipping Ops',
         owner='app_owner', ref=[['Shipping Ops'], []]),
    dict(classid=2615, objid=16881, type='schema', identity='"eu.west ""archive"""', nspname='eu.west "archive"',
         owner='app_owner', ref=[['eu.west "archive"'], []]),
    dict(classid=2620, objid=16950, type='trigger', identity='"Audit ""order"" changes" on "Shipping Ops"."order"',
         nspname='Shipping Ops', owner='app_owner', ref=[['Shipping Ops', 'order', 'Audit "order" changes'], []]),
])


HARD_SCHEMAS = frozenset({"Shipping Ops", 'eu.west "archive"'})


HARD_RELATIONS = set(objid for (classid, objid), r in HARD_CATALOG.items()
                     if classid == 1259 and r.get("relkind") in ("r", "p", "v"))


def hard_entries(schemas=HARD_SCHEMAS, out=()):
    es = toc.parse_toc(HARD_TOC)
    toc.annotate(es, HARD_CATALOG)
    return toc.classify(es, dict(schemas=set(schemas), relations_in=HARD_RELATIONS - set(out),
                                 relations_out=set(out)))


def hard(es, dump_id):
    return next(e for e in es if e["dump_id"] == dump_id)


# A role whose name needs quoting (30_hard_names.sql) and a source database's properties (_pg/schema.database_sql).
HARD_ROLE = 'Ops "Team" é'
SRC_DB = dict(name="app", encoding="UTF8", collate="en_US.UTF-8", ctype="en_US.UTF-8", locale_provider="i",
              locale="en-US", icu_rules=None, owner="app_owner", connection_limit=-1,
              acl=[dict(grantee=None, privilege="TEMPORARY"), dict(grantee="app_user", privilege="CONNECT"),
                   dict(grantee='Ops "Team" é', privilege="CONNECT"), dict(grantee="PUBLIC", privilege="CREATE")],
              has_acl=True,
              settings=["work_mem=64MB", 'search_path="$user", public'])
