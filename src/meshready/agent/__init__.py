"""The per-node agent: the loop (loop), one check (work), health and metrics (server, metrics)."""
