"""GitHub webhooks in: `asm webhook` verifies each delivery and hands what it tells to the same queue as the scan."""
