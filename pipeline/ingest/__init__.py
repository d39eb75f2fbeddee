"""Feed ingestion: registry -> fetch -> parse -> normalise/dedupe -> store."""
