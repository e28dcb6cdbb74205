#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

# The work is done by the action plugin of the same name (plugins/action/job_progress.py), in the
# controller, so that progress is printed while it waits; this file documents it.

from __future__ import annotations

DOCUMENTATION = r"""
---
module: job_progress
short_description: Wait for a background module job, printing the progress it writes
version_added: 0.3.0
description:
  - Waits for a task run with C(async) and C(poll=0) (for example M(pgshift.aurora.pg_validate)) and prints,
    every O(interval) seconds, a line from the progress file the module writes (rows done and expected,
    percent, rows per second, ETA).
  - Returns the job's own result once it ends, so the registered variable holds what the module returned
    (its C(failed) and C(msg) included; use C(failed_when) as for the module itself).
author:
  - pgshift.aurora developers (@pgshift)
options:
  job:
    description: The registered result of the async task (it has C(ansible_job_id)).
    type: dict
    required: true
  progress_file:
    description:
      - The JSON file the module rewrites with C(rows), C(rows_expected), C(rows_per_second), C(eta_seconds) and
        C(percent) (M(pgshift.aurora.pg_validate) O(pgshift.aurora.pg_validate#module:progress_file)), and
        optionally C(unit) (what C(rows) counts, for example C(objects) for
        O(pgshift.aurora.pg_schema_copy#module:progress_file)) and C(phase) (what it is doing).
    type: path
  label:
    description: What the printed lines are about.
    type: str
    default: job
  interval:
    description: Seconds between two printed lines (the first after one second).
    type: float
    default: 5
  timeout:
    description: Seconds to wait at most; the job keeps running after a timeout.
    type: int
    default: 86400
notes:
  - Runs in the controller (an action plugin). With the local connection it reads the job file directly,
    otherwise it runs M(ansible.builtin.async_status).
  - Supports check mode only as far as the awaited task ran.
"""

EXAMPLES = r"""
- name: Compare the target with the source, in the background
  pgshift.aurora.pg_validate:
    login_host: source.example.internal
    login_db: app
    target_login_host: target.example.internal
    target_login_db: app
    progress_file: reports/validation-progress.json
  async: 86400
  poll: 0
  register: validation_job

- name: Wait for it, printing rows, rows/s and ETA
  pgshift.aurora.job_progress:
    job: "{{ validation_job }}"
    progress_file: reports/validation-progress.json
    label: validation
    interval: 10
  register: validation
"""

RETURN = r"""
msg:
  description: The awaited module's message, when it has one (every other key of its result is returned too).
  returned: when the module returned one
  type: str
"""
