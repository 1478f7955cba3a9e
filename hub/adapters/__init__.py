"""Adapters (适配器): the core's code that touches a store, a key, a file, a spatial index or a process.

Why a package of its own (design §3, issue 16): the domain and the use cases stay free of I/O and
of driver details, so they can be read and tested without a database; everything that talks to the
outside world sits here, at the edge, and ``ops`` wires it together. It grows one adapter at a
time: so far the notification-log follower (``hub.adapters.store.follower``) and the erasure of a
person's raw messages in the streams (``hub.adapters.privacy``) and the processes' start-up
tuning (``hub.adapters.process``).
"""
