"""Files, enrichment providers, message senders and report files."""
