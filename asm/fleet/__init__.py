"""Many workers, exactly once: the scan, the queue, the claim, a worker process's life."""
