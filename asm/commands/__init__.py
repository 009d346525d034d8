"""The `asm` command and what it runs: enqueue, scan, status, up, demo, bench."""
