# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""pg_replication_status's run: one read of the migration's streams on both sides (_pg/status.py). It changes
nothing."""

from __future__ import annotations

import traceback

from ansible_collections.pgshift.aurora.plugins.module_utils._pg.connection import PgConnectError, scrub
from ansible_collections.pgshift.aurora.plugins.module_utils._pg.status import Status, argument_spec, check_params


def module_spec():
    return dict(argument_spec=argument_spec())


def run_module(module):
    problems = check_params(module.params)
    if problems:
        module.fail_json(msg="invalid options: " + "; ".join(problems))
    runner = Status(module.params)
    try:
        result = runner.read_once()
    except PgConnectError as exc:
        module.fail_json(msg=str(exc))
    except Exception as exc:  # pylint: disable=broad-except  # an unexpected database error: said without any secret
        module.fail_json(msg=scrub("pg_replication_status failed: %s" % exc, runner.secrets),
                         exception=scrub(traceback.format_exc(), runner.secrets))
    module.exit_json(changed=False, **result)
