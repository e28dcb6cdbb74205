"""Make the checkout importable as ansible_collections.pgshift.aurora (the link `make` creates)."""

import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS = os.path.join(REPO, ".build", "collections")
if not os.path.isdir(os.path.join(COLLECTIONS, "ansible_collections", "pgshift", "aurora")):
    raise RuntimeError("run `make bootstrap` first: %s is missing" % COLLECTIONS)
if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)
