"""The operator library: backups, restore, keys, status and the failover client.

Below both the CLI and the chaos extension, which drive a realization through it."""
