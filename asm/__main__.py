"""`python -m asm`: the `asm` command."""

import sys

from asm.commands.cli import main

sys.exit(main())
