"""The evidence vault: encrypted streaming storage, hashes at capture, URL snapshots, chain of
custody, export."""
