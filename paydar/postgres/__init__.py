"""``workload: postgres``: a real PostgreSQL server per (service, region), run jailed, with a Paydar agent beside it."""
