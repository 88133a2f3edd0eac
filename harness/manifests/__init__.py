"""What the benchmark is made of: tracks, records and tasks from their manifests, the
fetched NanoGPT records, and the checksums that say a fetched file is the one expected."""
