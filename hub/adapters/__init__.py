<<<<<<< HEAD
"""Adapters (适配器): the core's I/O pieces — stores, keys, files, streams (design §3)."""
=======
"""Adapters (适配器): the core's code that touches a store, a key, a file, a spatial index or a process.

Why a package of its own (design §3, issue 16): the domain and the use cases stay free of I/O and
of driver details, so they can be read and tested without a database; everything that talks to the
outside world sits here, at the edge, and ``ops`` wires it together. It grows one adapter at a
time: today only the notification-log follower lives here (``hub.adapters.store.follower``).
"""
>>>>>>> ws-follower
