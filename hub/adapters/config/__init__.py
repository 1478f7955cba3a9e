"""配置 Configuration files (TOML, CSV, GeoJSON) read into domain objects.

An adapter because it touches files; the domain receives the parsed objects and never a path.
"""
