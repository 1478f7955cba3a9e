"""Adapters (适配器): the core's I/O pieces — stores, keys, files, streams (design §3)."""
