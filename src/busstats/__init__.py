"""busstats: daily bus data per city into S3, per-country statistics out."""

__version__ = "0.1.0"
