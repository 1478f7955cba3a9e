"""Adapters (适配器): the core's code that touches a store, a key, a file, a spatial index or a process.

Why a package of its own (design §3, ADR 0007): the domain and the use cases stay free of I/O and
of driver details, so they can be read and tested without a database; everything that talks to the
outside world sits here, at the edge, and ``ops/bootstrap.py`` wires it together. Here:
``store/`` (the notification-log follower, the stored-state reader, the sealed ledger, the store
writer and its recorder, the audit-chain follower, side tables in the store's database),
``privacy/`` (the privacy policy, the per-person keyring, sealing personal fields, erasure in the
store and in the streams), ``audit/`` (the hash chain, its anchor, the access log,
case history), ``config/`` (configuration files into domain objects), ``geo`` (the shapely grid
index), ``nats`` (the nats-py internals the intake's hot path relies on), ``process`` and ``logs``
(child-process start-up). Adapters import the application's ports, never the entry points.
"""
