#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: pgshift.aurora contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

# The work is done by the action plugin of the same name (plugins/action/report_files.py), in the
# controller, without a module run per file; this file documents it.

from __future__ import annotations

DOCUMENTATION = r"""
---
module: report_files
short_description: Write a phase's report files (JSON, Markdown) into the report directory on the controller
version_added: 0.3.0
description:
  - Creates O(dir) with its missing parents, then writes each of O(files) into it, atomically (a temporary file
    in the same directory, then a rename) and only when the file does not hold that content already.
  - One task writes all the files of a report (for example its JSON and its Markdown) in the controller
    process, where M(ansible.builtin.file), M(ansible.builtin.copy) and M(ansible.builtin.template) would run
    a module each.
  - Reports are artifacts, not state; the result is never C(changed), so that a second run (which rewrites
    them with a new time stamp) stays idempotent.
author:
  - pgshift.aurora developers (@pgshift)
options:
  dir:
    description:
      - The directory to write into; created with its missing parents when missing (with O(dir_mode)).
      - A relative path is relative to the directory C(ansible-playbook) runs in.
    type: path
    required: true
  files:
    description:
      - The files to write, in this order.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description:
          - The file's name inside O(dir); no C(/), not C(.) or C(..). Each name once.
        type: str
        required: true
      content:
        description:
          - The file's whole content, written as given (UTF-8; no newline is added).
          - Must be a string; render data and templates first, data with the C(ansible.builtin.to_nice_json) filter
            (add the final newline yourself), a template with the C(ansible.builtin.template) lookup (see the examples).
            A dictionary or a list is refused.
        type: str
        required: true
  mode:
    description:
      - The permissions of the files written, as an octal string (quote it in YAML).
      - Symbolic modes are not supported.
    type: raw
    default: "0644"
  dir_mode:
    description:
      - The permissions of the directories it creates; existing directories are left as they are.
    type: raw
    default: "0755"
  index:
    description:
      - After writing O(files), rebuild the migration report of O(dir) from every phase's JSON report in it
        (C(index.html), self-contained, with its figures, and C(runbook.md), the night's plan), and keep a
        rehearsal's C(rehearsal.json) in O(dir)/C(rehearsals/) as C(rehearsal-<UTC start>-<run id>.json).
      - The figures are SVG drawn by the collection itself (no plotting library on the controller). When the
        report cannot be rebuilt (a report it cannot read) the task warns with what to do and returns
        RV(index_error); it does not fail, since the phase's own O(files) are written and the phase's outcome is
        not the report's.
      - With O(files=[]) the task only rebuilds the report.
    type: bool
    default: true
notes:
  - Runs in the controller (an action plugin) and writes the files on the controller, whatever the task's
    connection; meant for plays on C(localhost) with the local connection, as every phase play is.
  - Supports check mode as builtin modules do (writes nothing and returns the paths it would write); a
    task that must write its report in check mode too sets C(check_mode=false).
  - Never reports a change and has no diff.
"""

EXAMPLES = r"""
- name: Write assessment.json and assessment.md
  pgshift.aurora.report_files:
    dir: "{{ report_dir }}"
    files:
      - name: assessment.json
        content: "{{ assess_report | to_nice_json }}\n"
      - name: assessment.md
        content: "{{ lookup('ansible.builtin.template', 'assessment.md.j2') }}"
  # Written in check mode too: the report is what a dry run is for.
  check_mode: false

- name: Write the plan, in a normal run only
  pgshift.aurora.report_files:
    dir: reports
    files:
      - name: plan.json
        content: "{{ plan | to_nice_json }}\n"
    mode: "0600"

- name: Rebuild index.html and runbook.md only (a module wrote its report itself)
  pgshift.aurora.report_files:
    dir: "{{ report_dir }}"
    files: []
"""

RETURN = r"""
dir:
  description: The directory, as an absolute path.
  returned: always
  type: str
  sample: /home/dba/migration/reports
files:
  description: The absolute paths of the files written or already identical (in check mode, that would be).
  returned: always
  type: list
  elements: path
  sample: [/home/dba/migration/reports/assessment.json, /home/dba/migration/reports/assessment.md]
written:
  description: Those of O(files) whose content was written (in check mode, would be); the others held it already.
  returned: always
  type: list
  elements: path
  sample: [/home/dba/migration/reports/assessment.md]
created_dirs:
  description: The directories created (in check mode, that would be), parents first.
  returned: always
  type: list
  elements: path
  sample: []
index:
  description:
    - The files the report rebuild wrote (in check mode, would write), when O(index=true); none when unchanged.
  returned: when O(index=true)
  type: list
  elements: path
  sample: [/home/dba/migration/reports/index.html, /home/dba/migration/reports/runbook.md]
index_error:
  description: Why the migration report could not be rebuilt (also shown as a warning).
  returned: when O(index=true) and the rebuild failed
  type: str
  sample: "cannot read the reports in /home/dba/migration/reports to build index.html: [Errno 13] Permission denied"
"""
