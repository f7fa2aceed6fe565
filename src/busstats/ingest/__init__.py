"""A city's day from upstream JSON to Parquet: slicing, conversion, the city work unit, the executor
protocol it is run through, and the process-wide limits it consumes."""
