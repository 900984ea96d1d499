"""Command-line converters from public try-on datasets and own photos to try-on records, plus the synthetic set."""
