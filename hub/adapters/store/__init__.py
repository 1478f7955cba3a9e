"""Event-store adapters: code that reads or writes the eventsourcing store's own tables.

Why a sub-package: the store is the system of record, and the pieces that know its SQL and its
drivers (SQLite, PostgreSQL) belong together, apart from the privacy keys or the configuration
files. Importing this package imports nothing: each module is imported by name, so a light reader
(the projector) does not pay for the others.
"""
