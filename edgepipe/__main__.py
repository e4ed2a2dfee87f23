"""`python -m edgepipe` (what `torchrun -m edgepipe train ...` launches for distributed training)."""

from edgepipe.cli.main import main

main()
