"""Matching: finding profiles that are one person though no identifier says so.

``engine`` scores pairs of records (Fellegi–Sunter, weights learnt per tenant) and knows nothing
of the database. The rest is the product around it: ``records`` reads a customer as a record,
``service`` keeps blocking keys and suggestions, merges (through the customers domain's
reversible ``merge``) and remembers rejected pairs, ``online`` checks new and changed profiles
from the worker, ``batch`` imports CSV files and de-duplicates a whole tenant, ``api`` is the
review queue over HTTP.

The rules it enforces: a pair a person rejected is never suggested or merged again, and no
automatic merge joins two profiles a person rejected through a third; an email or phone held by
more profiles than the tenant's per-identifier limit links nobody (no evidence, no blocking key).
"""
