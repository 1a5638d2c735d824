"""Privacy: the audit log of admin actions, and a customer's data exported or erased.

- ``audit``: ``record`` writes one append-only row of the audit log in the caller's transaction
  (who did what to which thing, with the request id), and the log is read back filtered and
  paginated. Other domains call ``record`` from their own actions (API keys, users, the tenant's
  settings, customer merges and unmerges).
- ``spec``: every table that holds something about a customer, how its rows are found from the
  customer's id, and what an erasure does to them (kept, scrubbed or deleted, and why). A test
  walks every table of ``hilos.models`` and fails when one is missing, so a new domain cannot be
  forgotten by the export or the erasure.
- ``export``: one JSON document with everything Hilos holds about a customer (GDPR article 15).
- ``erase``: personal data removed or anonymised everywhere in one transaction, aggregates kept
  (GDPR article 17).

Unlike other domains, ``export`` and ``erase`` read and rewrite other domains' tables directly,
as ``analytics.kpis`` reads them: an erasure must reach every copy of a person's data in one
transaction, and one list of those tables (``spec``) is what the coverage test can check.
"""
