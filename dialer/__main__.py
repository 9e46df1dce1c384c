"""`python -m dialer`: the CLI."""

from dialer.cli import main

main()
