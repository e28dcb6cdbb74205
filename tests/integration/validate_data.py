"""The demo dataset loaded into a test database (shared by the validation tests)."""

from __future__ import annotations

import os
import subprocess

from modrunner import REPO
from pgcluster import ADMIN_PASSWORD

DATASET = os.path.join(REPO, "roles", "lab", "files", "dataset")


def psql_bin(cluster):
    return os.path.join(cluster.bin_dir, "psql")


HARD_ROLE = 'Ops "Team" é'  # granted SELECT by 30_hard_names.sql (the lab creates it; so does load_demo)


def _roles(cluster):
    with cluster.connect() as conn:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'app_owner'").fetchone()
        if not exists:
            conn.execute("CREATE ROLE app_owner")
        if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (HARD_ROLE,)).fetchone():
            conn.execute('CREATE ROLE "Ops ""Team"" é" LOGIN')


def load_demo(cluster, db):
    """Load 10_schema.sql + 20_data.sql + 30_hard_names.sql (one transaction, as app_owner) into db."""
    _roles(cluster)
    with cluster.connect() as conn:
        conn.execute("GRANT CREATE ON DATABASE %s TO app_owner" % db)
    with cluster.connect(db) as conn:
        conn.execute("GRANT CREATE ON SCHEMA public TO app_owner")
    env = dict(os.environ, PGPASSWORD=ADMIN_PASSWORD)
    subprocess.run([psql_bin(cluster), "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction",
                    "-h", "127.0.0.1", "-p", str(cluster.port), "-U", "postgres", "-d", db,
                    "-f", os.path.join(DATASET, "10_schema.sql"), "-f", os.path.join(DATASET, "20_data.sql"),
                    "-f", os.path.join(DATASET, "30_hard_names.sql")],
                   check=True, env=env, stdout=subprocess.DEVNULL)


def copy_db(src_cluster, src_db, dst_cluster, dst_db):
    """Schema and data of src_db into the empty dst_db (pg_dump | psql), sequences included."""
    _roles(dst_cluster)
    env = dict(os.environ, PGPASSWORD=ADMIN_PASSWORD)
    dump = subprocess.run([os.path.join(dst_cluster.bin_dir, "pg_dump"), "-h", "127.0.0.1", "-p", str(src_cluster.port),
                           "-U", "postgres", "-d", src_db], check=True, env=env, stdout=subprocess.PIPE).stdout
    subprocess.run([psql_bin(dst_cluster), "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction",
                    "-h", "127.0.0.1", "-p", str(dst_cluster.port), "-U", "postgres", "-d", dst_db],
                   input=dump, check=True, env=env, stdout=subprocess.DEVNULL)
