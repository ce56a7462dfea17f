"""The row-by-row ingest before issue #14, kept only as a reference for the parity tests.

Frozen copies of ``churn/stages/ingest.py``, ``churn/validation/rules.py`` and
``churn/validation/coerce.py`` as of commit cc12492 (imports pointed at each other). Every
raw cell is rendered as text and the column rules run through pandera: slow, but the
behaviour the column-wise ingest must reproduce exactly (tests/unit/stages/test_ingest_parity.py).
"""
