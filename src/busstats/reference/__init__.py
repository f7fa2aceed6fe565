"""The reference server seen from busstats: its client, its city list, and a bundled simulator
(`sim`)."""
