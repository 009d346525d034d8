"""One issue, start to finish, and what asm writes on GitHub about it."""
