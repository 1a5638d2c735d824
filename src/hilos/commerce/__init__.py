"""Unified commerce: one catalog, prices per sales channel, stock across stores and
warehouses, reservations that never oversell (issue 5)."""
