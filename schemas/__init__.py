"""Table (Parquet) and record (TFRecord) schemas, each versioned, with the
validators every reader and writer uses (import as ``audioscope.schemas``)."""
