"""Event-store adapters (事件存储): code that knows the eventsourcing store's tables and drivers.

Why a sub-package: the store is the system of record, and the pieces that read or write it belong
together, apart from the privacy keys or the configuration files: the one notification-log follower
(``follower``, PostgreSQL's gap rule), the stored-state reader (``state``: decrypt, decompress,
unseal), the deployed ledger with privacy sealing (``ledger``), the store-writer process family
(``wire`` the pipe protocol, ``writer`` deciding, ``recorder`` committing, ``channel`` and
``remote`` the intake's end) and the audit-chain follower process (``chain_follower``). Importing
this package imports nothing: each module is imported by name, so a light reader (the projector)
does not pay for the others.
"""
